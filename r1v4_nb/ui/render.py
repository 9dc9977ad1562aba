"""The one renderer: cards (from `cards.RunState`, holding the run's records) to HTML.

The live widget, the debugger and the static export all draw cards with these
functions, so a run looks the same everywhere. Everything that came from a
model, a tool or the web is escaped (`sanitize.esc`); links are kept only for
http(s) URLs; images are thumbnails we encode ourselves as data: URLs.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..images import Image
from ..paths import cache_root, write_once
from ..records import Observation, Segment
from .cardtypes import (
    STEP_CARDS,
    Card,
    EndCard,
    ErrorCard,
    LiveSegment,
    ModelCard,
    NoteCard,
    QuestionCard,
    Recording,
    ToolCard,
)
from .highlight import highlight_python
from .sanitize import esc, link

THUMB_SIDE = 320
CONTEXT_THUMB = 160  # images inside a debugger's context view: small, the text is what matters there
FULL_SIDE = 2048
MAX_TEXT = 6000  # characters of tool output or page text shown in a card before "... (N more)"

_thumbs: dict[tuple[str, int], str] = {}
_thumb_lock = threading.Lock()
_THUMB_FORMAT = 1  # bump when thumbnails are made differently: old files on disk are then not read
_cards: OrderedDict[tuple[int, str], str] = OrderedDict()  # finished cards' HTML, by position and content
_CARDS_KEPT = 4096
_PLACEHOLDER = re.compile(r"\[[^\[\]\n]{1,80}? from [Ss]tep \d+\]")
_STATUS = {"waiting", "running", "answered", "no_answer", "budget", "cancelled", "error", "unfinished"}

CSS = """
.r1v4-run{font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:13px;line-height:1.45;
  color:var(--jp-ui-font-color1,#1f2328);max-width:1100px}
.r1v4-run pre{white-space:pre-wrap;word-break:break-word;margin:0;font-family:var(--jp-code-font-family,
  ui-monospace,Menlo,monospace);font-size:12px}
.r1v4-head{display:flex;gap:14px;align-items:center;flex-wrap:wrap;padding:6px 10px;border-radius:6px;
  background:var(--jp-layout-color2,#f3f4f6);margin-bottom:8px;position:sticky;top:0;z-index:1}
.r1v4-head b{font-weight:600}
.r1v4-status{padding:1px 8px;border-radius:10px;background:#dbeafe;color:#1e3a8a;font-weight:600}
.r1v4-st-answered{background:#dcfce7;color:#14532d}.r1v4-st-cancelled,.r1v4-st-budget,.r1v4-st-no_answer,
.r1v4-st-unfinished{background:#fef3c7;color:#78350f}.r1v4-st-error{background:#fee2e2;color:#7f1d1d}
.r1v4-stop{margin-left:auto;padding:2px 14px;border:1px solid #b91c1c;background:#fff;color:#b91c1c;
  border-radius:4px;cursor:pointer;font-weight:600}
.r1v4-stop:hover{background:#fee2e2}.r1v4-stop[disabled]{opacity:.5;cursor:default}
.r1v4-card{border:1px solid var(--jp-border-color2,#d0d7de);border-radius:6px;margin:6px 0;padding:8px 10px;
  background:var(--jp-layout-color0,#fff)}
.r1v4-card-title{font-weight:600;font-size:12px;color:var(--jp-ui-font-color2,#57606a);margin-bottom:4px;
  display:flex;gap:8px;flex-wrap:wrap}
.r1v4-question .r1v4-q{font-size:14px;font-weight:500}
.r1v4-model{border-left:3px solid #6366f1}.r1v4-tool{border-left:3px solid #0ea5e9}
.r1v4-note{border-left:3px solid #f59e0b;background:#fffbeb}.r1v4-error{border-left:3px solid #dc2626;
  background:#fef2f2}.r1v4-end{border-left:3px solid #16a34a}
.r1v4-seg{margin:4px 0}.r1v4-blank{display:none}
.r1v4-k-think pre{color:var(--jp-ui-font-color2,#57606a);font-style:italic}
.r1v4-k-think summary{cursor:pointer;font-size:12px;color:var(--jp-ui-font-color2,#57606a)}
.r1v4-label{font-size:11px;text-transform:uppercase;letter-spacing:.04em;color:var(--jp-ui-font-color2,#57606a)}
.r1v4-code{background:var(--jp-cell-editor-background,#f6f8fa);padding:6px 8px;border-radius:4px}
.r1v4-code r-k{color:#8250df;font-weight:600}.r1v4-code r-s{color:#0a3069}.r1v4-code r-c{color:#6e7781;
  font-style:italic}.r1v4-code r-m{color:#0550ae}.r1v4-code r-b{color:#953800}.r1v4-code r-f{color:#6639ba}
.r1v4-open>.r1v4-body::after,.r1v4-open .r1v4-body::after{content:"\\258D";color:#6366f1}
.r1v4-answer,.r1v4-final{background:#ecfdf5;border:1px solid #34d399;border-radius:6px;padding:6px 10px;
  font-size:14px}
.r1v4-answer pre,.r1v4-final pre{font-family:inherit;font-size:14px;font-weight:600;color:#065f46}
.r1v4-out{background:var(--jp-layout-color2,#f6f8fa);padding:6px 8px;border-radius:4px;max-height:360px;
  overflow:auto}
.r1v4-err{background:#fef2f2;color:#991b1b;padding:6px 8px;border-radius:4px}
.r1v4-imgs{display:flex;gap:10px;flex-wrap:wrap;margin-top:6px;align-items:flex-start}
.r1v4-thumb{max-width:320px;max-height:320px;border:1px solid var(--jp-border-color2,#d0d7de);
  border-radius:4px;cursor:zoom-in;display:block}
.r1v4-fig{margin:0;font-size:11px;color:var(--jp-ui-font-color2,#57606a)}
.r1v4-crop{display:flex;gap:8px;align-items:center;flex-wrap:wrap}
.r1v4-src{position:relative;display:inline-block}
.r1v4-box{position:absolute;box-sizing:border-box;border:2px solid #ef4444;box-shadow:0 0 0 1px #fff;pointer-events:none}
.r1v4-arrow{font-size:20px;color:#ef4444}
.r1v4-results{margin:4px 0 0 0;padding:0;list-style:none}
.r1v4-results li{margin:4px 0;padding:4px 8px;border:1px solid var(--jp-border-color3,#eaeef2);border-radius:4px}
.r1v4-url{color:#1a7f37;font-size:11px;word-break:break-all}
.r1v4-snippet{color:var(--jp-ui-font-color1,#1f2328)}
.r1v4-badurl{color:#6e7781}
.r1v4-matches{display:flex;gap:10px;flex-wrap:wrap}
.r1v4-match{width:170px;font-size:11px}.r1v4-match .r1v4-thumb{max-width:160px;max-height:120px}
.r1v4-sim{font-weight:600;color:#0550ae}
.r1v4-page{border:1px solid var(--jp-border-color3,#eaeef2);border-radius:4px;padding:6px 8px;margin:4px 0}
.r1v4-plan{margin:4px 0;padding-left:22px}.r1v4-plan li{margin:3px 0}
.r1v4-tool-badge{display:inline-block;padding:0 6px;border-radius:8px;background:#e0f2fe;color:#075985;
  font-size:11px;margin-left:6px}
.r1v4-ph{background:#fef3c7;border-radius:3px;padding:0 2px}
.r1v4-foot{font-size:11px;color:var(--jp-ui-font-color2,#57606a);margin-top:4px}
.r1v4-badge{display:inline-block;padding:0 6px;border-radius:8px;background:#fee2e2;color:#7f1d1d;font-size:11px}
.r1v4-overlay{position:fixed;inset:0;background:rgba(0,0,0,.75);display:flex;align-items:center;
  justify-content:center;z-index:10000;cursor:zoom-out}
.r1v4-overlay img{max-width:95vw;max-height:95vh;background:#fff}
.r1v4-edited{outline:2px solid #f59e0b;outline-offset:1px}
.r1v4-edit-badge{display:inline-block;margin-bottom:4px;padding:0 8px;border-radius:8px;background:#fef3c7;
  color:#78350f;font-size:11px;font-weight:600}
.r1v4-dbg-static .r1v4-thumb{max-width:200px;max-height:160px}
.r1v4-pane-title{font-weight:600;font-size:13px;margin:2px 0 6px 0;color:var(--jp-ui-font-color1,#1f2328)}
.r1v4-head .r1v4-pane-title{margin:0;flex-basis:100%}
.r1v4-tag{color:#8250df;font-weight:600}
.r1v4-ctx .r1v4-thumb{max-width:160px;max-height:160px}
.r1v4-role-assistant{border-left:3px solid #6366f1}.r1v4-role-user{border-left:3px solid #0ea5e9}
.r1v4-role-system{border-left:3px solid #9ca3af}
.r1v4-dbg-static .r1v4-thumb,.r1v4-dbg-context .r1v4-thumb,.r1v4-dbg-produced .r1v4-thumb,
.r1v4-dbg-branches .widget-html .r1v4-thumb{cursor:default}
.r1v4-dbg-context,.r1v4-dbg-produced{border:1px solid var(--jp-border-color2,#d0d7de);border-radius:6px;
  padding:6px 8px;background:var(--jp-layout-color1,#fff)}
.r1v4-dbg-context .r1v4-run,.r1v4-dbg-produced .r1v4-run{max-width:none}
.r1v4-dbg-forkpanel{border:1px solid #f59e0b;border-radius:6px;padding:8px 10px;margin:10px 0;
  background:#fffbeb;box-sizing:border-box;width:100%}
.r1v4-dbg-editor textarea{font-family:var(--jp-code-font-family,ui-monospace,monospace);font-size:12px}
.r1v4-recording{border:1px solid #a855f7;background:#faf5ff;color:#581c87;border-radius:6px;padding:6px 10px;
  margin:4px 0 6px 0;font-weight:500}
.r1v4-recorded,.r1v4-answer.r1v4-recorded{background:#f5f3ff;border-color:#c4b5fd}
.r1v4-recorded pre,.r1v4-answer.r1v4-recorded pre{color:#4c1d95}
.r1v4-path{font-size:11px;color:var(--jp-ui-font-color2,#57606a);word-break:break-all}
.r1v4-hint{font-size:11px;color:var(--jp-ui-font-color2,#57606a)}
.r1v4-src{overflow:hidden}
"""

# A saved notebook reopened without the kernel that drew it: JupyterLab draws each widget output as one line,
# "Error displaying widget: model not found"; only then does the renderer's own node get the class
# `jupyter-widgets` (a live widget's node does not). Where the static snapshot of the same view follows in the
# cell's outputs, that line says nothing the snapshot does not show better, so the snapshot hides it.
# (`:has()` cannot be nested, so the test is on that class, not on the node having no elements.)
DEAD_WIDGET_CSS = (".jp-OutputArea-child:has(> .jp-OutputArea-output.jupyter-widgets):has(~ .jp-OutputArea-child "
                   "[data-r1v4-snapshot]){display:none}")


# -- images ---------------------------------------------------------------------------------------------

def _thumb_dir() -> Path:
    """Where encoded thumbnails are kept between processes, named by the image's hash and the size."""
    return cache_root() / "thumbs" / f"v{_THUMB_FORMAT}"


def _thumb_bytes(im: Image, side: int) -> tuple[str, bytes] | None:
    """(mime, encoded thumbnail): from the disk cache, else made from the image file and kept there."""
    stem = _thumb_dir() / im.sha256[:2] / f"{im.sha256}-{side}"
    for ext, mime in ((".jpg", "image/jpeg"), (".png", "image/png")):
        try:
            return mime, stem.with_suffix(ext).read_bytes()
        except OSError:
            continue
    try:
        pil = im.open()
    except (OSError, ValueError):
        return None
    if max(pil.size) > side:
        pil.thumbnail((side, side))
    buf = io.BytesIO()
    if pil.mode in ("RGBA", "LA", "P"):
        pil.save(buf, format="PNG", optimize=True)
        mime, ext = "image/png", ".png"
    else:
        pil.convert("RGB").save(buf, format="JPEG", quality=82)
        mime, ext = "image/jpeg", ".jpg"
    data = buf.getvalue()
    try:
        write_once(stem.with_suffix(ext), data)
    except OSError:
        pass  # a read-only cache only costs the next process the encoding again
    return mime, data


def thumbnail_url(im: Image, side: int = THUMB_SIDE) -> str:
    """A data: URL of the image scaled to fit `side` pixels, cached per image and size in memory and on
    disk (`$R1V4_CACHE/thumbs`), so a replay in a fresh kernel does not decode and resize every image again."""
    key = (im.sha256, side)
    with _thumb_lock:
        if key in _thumbs:
            return _thumbs[key]
    made = _thumb_bytes(im, side)
    if made is None:
        return ""
    url = f"data:{made[0]};base64,{base64.b64encode(made[1]).decode('ascii')}"
    with _thumb_lock:
        _thumbs[key] = url
    return url


def full_url(im: Image) -> str:
    """The image at full resolution (capped at FULL_SIDE), sent only when asked for."""
    return thumbnail_url(im, FULL_SIDE)


def _img(im: Image, images: dict[str, Image], side: int = THUMB_SIDE, cls: str = "r1v4-thumb") -> str:
    """A thumbnail of `im` when the view holds its image (`images`: the ones it may show), else a note."""
    if im.sha256 not in images:
        return '<span class="r1v4-badurl">(image missing)</span>'
    url = thumbnail_url(images[im.sha256], side)
    if not url:
        return '<span class="r1v4-badurl">(image unreadable)</span>'
    title = f"{im.provenance.name or im.sha256[:12]} ({im.width}x{im.height})"
    return f'<img class="{cls}" src="{url}" data-sha="{esc(im.sha256)}" alt="{esc(title)}" title="{esc(title)}">'


def image_figure(im: Image, side: int = THUMB_SIDE) -> str:
    """One image record as a captioned thumbnail (the name the user or the model gave it, and its size)."""
    return (f'<figure class="r1v4-fig">{_img(im, {im.sha256: im}, side)}'
            f'<figcaption>{esc(im.provenance.name or "")} {im.width}x{im.height}</figcaption></figure>')


def _figure(im: Image, images: dict[str, Image]) -> str:
    """An image; a crop is drawn beside its source with the box marked on it."""
    caption = esc(im.provenance.name or "") + f" {im.width}x{im.height}"
    src, box = im.provenance.source, im.provenance.box
    if src in images and box and len(box) == 4:
        s = images[src]
        try:
            x0, y0, x1, y1 = (float(v) for v in box)
        except (TypeError, ValueError):
            x0 = y0 = x1 = y1 = 0.0
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        # drawn clipped to the source: a box past the edge marks only the part of it that is in the picture
        cx0, cx1 = (min(max(v, 0.0), float(s.width)) for v in (x0, x1))
        cy0, cy1 = (min(max(v, 0.0), float(s.height)) for v in (y0, y1))
        left, top = 100 * cx0 / max(1, s.width), 100 * cy0 / max(1, s.height)
        width, height = 100 * (cx1 - cx0) / max(1, s.width), 100 * (cy1 - cy0) / max(1, s.height)
        box_style = f"left:{left:.2f}%;top:{top:.2f}%;width:{width:.2f}%;height:{height:.2f}%"
        return (f'<figure class="r1v4-fig r1v4-crop"><div class="r1v4-src">{_img(s, images, 240)}'
                f'<div class="r1v4-box" style="{box_style}"></div></div><span class="r1v4-arrow">&#8594;</span>'
                f'<div>{_img(im, images)}<figcaption>crop [{int(x0)}, {int(y0)}, {int(x1)}, {int(y1)}] '
                f'{caption}</figcaption></div></figure>')
    return f'<figure class="r1v4-fig">{_img(im, images)}<figcaption>{caption}</figcaption></figure>'


# -- text helpers ---------------------------------------------------------------------------------------

def _clip(text: str, limit: int = MAX_TEXT) -> str:
    if len(text) <= limit:
        return esc(text)
    return esc(text[:limit]) + f'<span class="r1v4-badurl"> ... ({len(text) - limit} more characters)</span>'


def _json(value: Any, limit: int = 600) -> str:
    return _clip(json.dumps(value, ensure_ascii=False, indent=None), limit)


def _num(x: Any, fmt: str = "{:.1f}") -> str:
    try:
        return fmt.format(float(x))
    except (TypeError, ValueError):
        return "?"


# -- segments -------------------------------------------------------------------------------------------

_LABELS = {"code": "Code", "tool_call": "Tool call", "answer": "Answer", "plan": "Plan", "observation": "Observation"}


def render_segment(seg: Segment | LiveSegment, s: int, recorded: bool = False) -> str:
    """One segment of a model turn. Open (streaming) segments get a body the front end appends to.

    `recorded`: the turn is replayed from a recording, so an answer in it is labelled as recorded.
    A parsed segment that is not `closed` is one the stream ended inside: it is marked "cut off".
    """
    kind, text = seg.kind, seg.text
    closed = isinstance(seg, Segment)
    cls = f"r1v4-seg r1v4-k-{re.sub(r'[^a-z_]', '', kind)}" + ("" if closed else " r1v4-open")
    cut = ' <span class="r1v4-badge">cut off</span>' if isinstance(seg, Segment) and not seg.closed else ""
    call = seg.call if isinstance(seg, Segment) else None
    if kind == "think":
        return (f'<div class="{cls}" data-s="{s}"><details open><summary>Thinking{cut}</summary>'
                f'<pre class="r1v4-body">{esc(text)}</pre></details></div>')
    if kind == "text":
        blank = " r1v4-blank" if closed and not text.strip() else ""
        return f'<div class="{cls}{blank}" data-s="{s}"><pre class="r1v4-body">{esc(text)}</pre></div>'
    if kind == "answer":
        label = "Recorded answer" if recorded else "Answer"
        return (f'<div class="{cls} r1v4-answer{" r1v4-recorded" if recorded else ""}" data-s="{s}">'
                f'<div class="r1v4-label">{label}{cut}</div>'
                f'<pre class="r1v4-body">{esc(text)}</pre></div>')
    if kind == "plan" and closed:
        steps = plan_steps(text)
        if steps is not None:
            return f'<div class="{cls}" data-s="{s}"><div class="r1v4-label">Plan</div>{render_plan(steps)}</div>'
    if kind == "tool_call" and not closed:
        return (f'<div class="{cls}" data-s="{s}"><div class="r1v4-label">Tool call</div>'
                f'<pre class="r1v4-body r1v4-code">{esc(text)}</pre></div>')
    err = f'<div class="r1v4-err">{esc(call.error)}</div>' if call is not None and call.error else ""
    if kind == "tool_call" and call is not None:
        args = call.arguments
        if call.name == "code" and isinstance(args.get("code"), str):  # the arguments are the model's JSON
            body = f'<pre class="r1v4-body r1v4-code">{highlight_python(args["code"])}</pre>'
            return f'<div class="{cls}" data-s="{s}"><div class="r1v4-label">Code{cut}</div>{body}{err}</div>'
        return (f'<div class="{cls}" data-s="{s}"><div class="r1v4-label">Calls <b>{esc(call.name)}</b>'
                f'{cut}</div><pre class="r1v4-body r1v4-out">{_json(args, 2000)}</pre>{err}</div>')
    if kind == "code":
        code = call.arguments.get("code", text) if call is not None else text
        body = highlight_python(code) if closed else esc(code)
        return (f'<div class="{cls}" data-s="{s}"><div class="r1v4-label">Code{cut}</div>'
                f'<pre class="r1v4-body r1v4-code">{body}</pre>{err}</div>')
    label = _LABELS.get(kind, kind)
    return (f'<div class="{cls}" data-s="{s}"><div class="r1v4-label">{esc(label)}{cut}</div>'
            f'<pre class="r1v4-body r1v4-out">{esc(text)}</pre></div>')


def plan_steps(text: str) -> list[dict[str, Any]] | None:
    """A Plan-mode plan (a JSON array of steps) or None if the text is not one."""
    t = text.strip()
    if t.startswith("```"):
        t = t.strip("`")
        t = t[t.find("\n") + 1:] if "\n" in t else t
    try:
        value = json.loads(t)
    except (json.JSONDecodeError, ValueError):
        return None
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    return None


def render_plan(steps: list[dict[str, Any]]) -> str:
    """A Plan-mode plan as a numbered list: description (placeholders marked), tool, parameters."""
    items = []
    for st in steps:
        desc = _PLACEHOLDER.sub(lambda m: f'<span class="r1v4-ph">{m.group(0)}</span>', esc(st.get("description", "")))
        tool = st.get("tool_name") or "none"
        params = st.get("parameters") or {}
        shown = "" if not params else f' <code>{_PLACEHOLDER.sub(lambda m: f"<span class=r1v4-ph>{m.group(0)}</span>", _json(params, 300))}</code>'
        items.append(f'<li>{desc}<span class="r1v4-tool-badge">{esc(tool)}</span>{shown}</li>')
    return f'<ol class="r1v4-plan">{"".join(items)}</ol>'


# -- cards ----------------------------------------------------------------------------------------------

def render_footer(card: ModelCard) -> str:
    step = card.step
    if step is None:
        return '<div class="r1v4-foot">writing...</div>'
    bits = [f"{step.tokens_out} tokens out"]
    if step.tokens_in:  # a turn cancelled before the backend counted its prompt has no figure
        bits.append(f"{step.tokens_in} in context")
    bits.append(f"{_num(step.elapsed_s)} s")
    if step.finish_reason not in (None, "stop"):
        bits.append(f"finish: {esc(step.finish_reason)}")
    return f'<div class="r1v4-foot">{" &#183; ".join(bits)}</div>'


def _card_images(card: Card) -> list[Image]:
    """The images a card draws (its own, and the sources its crops are drawn beside, by hash)."""
    if isinstance(card, QuestionCard):
        return card.header.images
    if isinstance(card, ToolCard) and card.step is not None:
        return card.step.observation.images
    return []


def render_card(card: Card, c: int, images: dict[str, Image]) -> str:
    """One card (question, model turn, tool call, note, error, end) as HTML. A finished card's HTML is
    kept (keyed by its position and content, and by which of its images the view holds), so the widget's
    reset, the static snapshot and a second view of the same run render it once."""
    if isinstance(card, (ModelCard, ToolCard)) and card.step is None:
        return _render_card(card, c, images)
    shas = [h for im in _card_images(card) for h in (im.sha256, im.provenance.source) if h]
    shown = "".join("1" if sha in images else "0" for sha in shas)  # a missing image draws nothing
    key = (c, hashlib.sha1(f"{card!r}{shown}".encode()).hexdigest())
    with _thumb_lock:
        html = _cards.get(key)
        if html is not None:
            _cards.move_to_end(key)
            return html
    html = _render_card(card, c, images)
    with _thumb_lock:
        _cards[key] = html
        while len(_cards) > _CARDS_KEPT:
            _cards.popitem(last=False)
    return html


def _render_card(card: Card, c: int, images: dict[str, Image]) -> str:
    kind = card.type
    body = _render_body(card, images)
    if isinstance(card, STEP_CARDS) and card.edited:  # the step a branch was forked at, with the text a person gave it
        return (f'<div class="r1v4-card r1v4-{esc(kind)} r1v4-edited" data-c="{c}"><div class="r1v4-edit-badge">'
                f'edited: this branch was forked here</div>{body}</div>')
    return f'<div class="r1v4-card r1v4-{esc(kind)}" data-c="{c}">{body}</div>'


def _title(*parts: str) -> str:
    return f'<div class="r1v4-card-title">{"".join(f"<span>{p}</span>" for p in parts if p)}</div>'


def _render_body(card: Card, images: dict[str, Image]) -> str:
    if isinstance(card, QuestionCard):
        return _render_question(card, images)
    if isinstance(card, ModelCard):
        return _render_model(card)
    if isinstance(card, ToolCard):
        return _render_tool(card, images)
    if isinstance(card, NoteCard):
        return (_title(f"Step {card.index}", "note", esc(card.step.reason))
                + f'<pre>{esc(card.step.text)}</pre>')
    if isinstance(card, ErrorCard):
        return _title("Error") + f'<pre class="r1v4-err">{esc(card.text)}</pre>'
    return _render_end(card)


def _render_question(card: QuestionCard, images: dict[str, Image]) -> str:
    h = card.header
    parent = h.parent  # {"id", "path", "step"} as the header recorded it
    fork = f"branch of {esc(parent.get('id'))} at step {esc(parent.get('step'))}" if parent else ""
    imgs = "".join(_figure(im, images) for im in h.images)
    path = f'<div class="r1v4-path">file: {esc(card.path)}</div>' if card.path else ""
    model = (h.model or {}).get("name", "")
    return (_title("Question", f"mode: {esc(h.mode)}", f"model: {esc(model)}", fork)
            + _recording_banner(card.recording)
            + f'<div class="r1v4-q"><pre>{esc(h.question)}</pre></div>'
            + (f'<div class="r1v4-imgs">{imgs}</div>' if imgs else "") + path)


def _recording_banner(rec: Recording | None) -> str:
    """The banner of a run whose model is a recording: its turns are replayed, not generated."""
    if rec is None:
        return ""
    text = (f"Recording: every model turn of this run is replayed from {esc(rec.source or 'a recorded run')}, "
            "not generated.")
    if rec.asked:
        imgs = ", ".join(esc(x) for x in rec.asked_images)
        text += (f" You asked <b>{esc(rec.asked)}</b>{f' about {imgs}' if imgs else ''}; a recording cannot answer "
                 "that, so this replays the question it recorded (below). Its answer is not an answer to yours.")
    return f'<div class="r1v4-recording">{text}</div>'



def _render_model(card: ModelCard) -> str:
    segs = "".join(render_segment(seg, s, card.recorded) for s, seg in enumerate(card.segments))
    return (_title(f"Step {card.index}", "model")
            + f'<div class="r1v4-segs">{segs}</div>' + render_footer(card))


def _render_tool(card: ToolCard, images: dict[str, Image]) -> str:
    name = card.call.name
    shown_args = "" if name == "code" else f"<code>{_json(card.call.arguments, 300)}</code>"
    elapsed = f"{_num(card.step.elapsed_s, '{:.2f}')} s" if card.step is not None else "running..."
    head = _title(f"Step {card.index}", f"tool <b>{esc(name)}</b>", shown_args, elapsed)
    if card.step is None:
        return head + ('<div class="r1v4-err">' + esc(card.call.error) + "</div>" if card.call.error else "")
    return head + render_observation(card.step.observation, images)


def render_observation(obs: Observation, images: dict[str, Image]) -> str:
    """A tool's result: structured views for search, image search and visits; stdout, errors and images.

    `data` is JSON a tool or a recording gave: its parts are checked before they are drawn."""
    data = obs.data
    parts: list[str] = []
    used: set[int] = set()
    structured = False
    if isinstance(data.get("queries"), list):
        parts.append(_search_results(data["queries"]))
        structured = True
    if isinstance(data.get("matches"), list):
        parts.append(_image_matches(data["matches"], obs.images, images, used))
        structured = True
    if isinstance(data.get("pages"), list):
        parts.append(_pages(data["pages"]))
        structured = True
    text = obs.text
    if obs.error:
        parts.append(f'<pre class="r1v4-err">{_clip(obs.error)}</pre>')
        if text.strip() == obs.error.strip():
            text = ""
    if text.strip():
        if structured:
            parts.append(f'<details><summary class="r1v4-label">What the model read</summary>'
                         f'<pre class="r1v4-out">{_clip(text)}</pre></details>')
        else:
            parts.append(f'<pre class="r1v4-out">{_clip(text)}</pre>')
    figs = [_figure(im, images) for n, im in enumerate(obs.images) if n not in used]
    if figs:
        parts.append(f'<div class="r1v4-imgs">{"".join(figs)}</div>')
    if obs.limits_hit:
        parts.append("".join(f'<span class="r1v4-badge">limit: {esc(x)}</span> ' for x in obs.limits_hit))
    return "".join(parts)


def _search_results(queries: list[Any]) -> str:
    out = []
    for q in queries:
        if not isinstance(q, dict):
            continue
        items = []
        for r in q.get("results") or []:
            if not isinstance(r, dict):
                continue
            items.append(f'<li><div>{link(r.get("url"), r.get("title") or r.get("url"))}</div>'
                         f'<div class="r1v4-url">{esc(r.get("url", ""))}</div>'
                         f'<div class="r1v4-snippet">{_clip(str(r.get("snippet", "")), 600)}</div></li>')
        empty = "" if items else "<li>no results</li>"
        out.append(f'<div class="r1v4-label">Search: {esc(q.get("query", ""))}</div>'
                   f'<ul class="r1v4-results">{"".join(items)}{empty}</ul>')
    return "".join(out)


def _image_matches(matches: list[Any], obs_images: list[Image], images: dict[str, Image],
                   used: set[int]) -> str:
    cells = []
    for m in matches:
        if not isinstance(m, dict):
            continue
        thumb = ""
        t = m.get("thumbnail")
        if isinstance(t, int) and 0 <= t < len(obs_images):
            used.add(t)
            thumb = _img(obs_images[t], images, 160)
        sim = f'<span class="r1v4-sim">{_num(m.get("similarity"), "{:.2f}")}</span> ' if m.get("similarity") is not None else ""
        cells.append(f'<div class="r1v4-match">{thumb}<div>{sim}{link(m.get("url"), m.get("title") or m.get("url"))}'
                     f'</div><div class="r1v4-url">{esc(m.get("url", ""))}</div></div>')
    return f'<div class="r1v4-label">Image matches</div><div class="r1v4-matches">{"".join(cells) or "none"}</div>'


def _pages(pages: list[Any]) -> str:
    out = []
    for p in pages:
        if not isinstance(p, dict):
            continue
        links = p.get("links") or []
        out.append(f'<div class="r1v4-page"><div><b>{link(p.get("url"), p.get("title") or p.get("url"))}</b></div>'
                   f'<div class="r1v4-url">{esc(p.get("url", ""))}</div>'
                   f'<pre class="r1v4-out">{_clip(str(p.get("text", "")), 2000)}</pre>'
                   f'<div class="r1v4-foot">{len(links) if isinstance(links, list) else 0} links</div></div>')
    return f'<div class="r1v4-label">Visited</div>{"".join(out)}'


def _render_end(card: EndCard) -> str:
    end = card.end
    usage = end.usage
    head = _title("End", f"reason: <b>{esc(end.reason)}</b>", f"{_num(end.elapsed_s)} s",
                  f"{int(usage.get('completion_tokens', 0))} tokens out, {int(usage.get('prompt_tokens', 0))} in")
    answer = end.answer
    if answer is None:
        return head + '<div class="r1v4-foot">no answer</div>'
    if card.recorded:
        return head + (f'<div class="r1v4-final r1v4-recorded"><div class="r1v4-label">Recorded answer (replayed, '
                       f'to the recorded question)</div><pre>{esc(answer)}</pre></div>')
    return head + f'<div class="r1v4-final"><div class="r1v4-label">Final answer</div><pre>{esc(answer)}</pre></div>'


# -- whole runs -----------------------------------------------------------------------------------------

def render_header(state: Any, live: bool = False) -> str:
    """Step count, tokens, elapsed time, tokens/s; a Stop button while a live run that can be stopped goes on.

    While a run goes on, the clock carries its seconds in `data-s`: the front end counts on from there,
    so the time moves during a long tool call when the kernel has nothing new to send.
    """
    status = state.status if state.status in _STATUS else "running"
    secs = state.seconds
    rate = (f"<span><b>{_num(state.tokens / secs)}</b> tok/s</span>" if state.tokens and secs >= 0.05
            else "")  # no rate until there is something to divide
    going = live and status == "running"
    if going and getattr(state, "stoppable", True):
        stop = '<button class="r1v4-stop" title="Stop this run">Stop</button>'
    elif going:
        stop = '<span class="r1v4-hint r1v4-nostop">--wait run: interrupt the kernel (&#9632;) to stop it</span>'
    else:
        stop = ""
    clock = (f'<span class="r1v4-clock" data-s="{secs:.3f}"><b>{_num(secs)}</b> s</span>' if going
             else f"<span><b>{_num(secs)}</b> s</span>")
    return (f'<div class="r1v4-head"><span class="r1v4-status r1v4-st-{status}">{status.replace("_", " ")}</span>'
            f'<span><b>{state.step_count}</b> step{"" if state.step_count == 1 else "s"}</span><span><b>{state.tokens}</b> tokens</span>'
            f'{clock}{rate}{stop}</div>')


def render_run(state: Any, mark: str | None = None) -> str:
    """A whole run as one self-contained HTML fragment (its own <style>), for saved notebooks and exports.

    `mark` (the live view's key) goes into `data-r1v4-snapshot`: the live view of the same run hides the
    fragment, so a notebook with a kernel shows the widget only, and one without shows this.
    """
    cards = "".join(render_card(card, c, state.images) for c, card in enumerate(state.cards))
    body = f'<div class="r1v4-run"><style>{CSS}</style>{state.header_html(live=False)}{cards}</div>'
    return snapshot(body, mark) if mark else body


def snapshot(body: str, key: str) -> str:
    """`body` as the static copy of the live view `key`: hidden by that view while it is on the page, and
    hiding the dead widget line a reopened notebook draws in its place (`DEAD_WIDGET_CSS`)."""
    return f'<div data-r1v4-snapshot="{esc(key)}"><style>{DEAD_WIDGET_CSS}</style>{body}</div>'


def hide_snapshot(key: str) -> str:
    """The style a live view carries to hide its own static copy (`snapshot`) while it is on the page."""
    return f'<style>[data-r1v4-snapshot="{esc(key)}"]{{display:none}}</style>'


def export_page(state: Any, title: str = "r1v4 run") -> str:
    """A standalone HTML page of a run (no script at all)."""
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\">"
            f"<title>{esc(title)}</title></head><body>{render_run(state)}</body></html>\n")


# -- the context a model saw (the debugger's left pane) ----------------------------------------------

_CALL = re.compile(r"(<tool_call>)(.*?)(</tool_call>)", re.S)


@lru_cache(maxsize=16)
def _tag_pattern(tags: tuple[str, ...]) -> re.Pattern[str] | None:
    """The escaped opening and closing tags of a dialect, to mark them in a context's text."""
    if not tags:
        return None
    return re.compile(r"&lt;(/?(?:" + "|".join(re.escape(t) for t in tags) + r"))&gt;")


def _text_part(text: str, tags: tuple[str, ...]) -> str:
    """A text part of a context message: protocol tags marked, and a code call's code shown as code.

    The model wrote the code as a JSON string (newlines as \\n); what it means is the code, so that is shown.
    """
    out, last = [], 0
    for m in _CALL.finditer(text):
        code = _code_of(m.group(2))
        if code is None:
            continue
        out.append(f"<pre>{_mark_tags(esc(text[last:m.start()] + m.group(1)), tags)}</pre>")
        out.append(f'<pre class="r1v4-code">{highlight_python(code)}</pre>')
        last = m.start(3)
    out.append(f"<pre>{_mark_tags(esc(text[last:]), tags)}</pre>")
    return "".join(out)


def _code_of(body: str) -> str | None:
    try:
        call = json.loads(body)
    except (json.JSONDecodeError, ValueError):
        return None
    if isinstance(call, dict) and call.get("name") == "code":
        code = (call.get("arguments") or {}).get("code")
        return code if isinstance(code, str) else None
    return None


def render_context(messages: list[dict[str, Any]], tokens_in: int = 0, images: dict[str, Image] | None = None,
                   title: str = "", tags: Sequence[str] = ()) -> str:
    """The messages of a context as HTML: role, text parts in full (the dialect's `tags` marked), images as
    thumbnails.

    `images` maps image file paths to their records, so an image is captioned with the name the user or the
    model gave it rather than its hash.
    """
    tags = tuple(tags)
    total = 0
    blocks = []
    for n, m in enumerate(messages):
        content = m.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
        html, words = [], 0
        for p in parts:
            if p.get("type") == "text":
                text = str(p.get("text", ""))
                words += len(text.split())
                html.append(_text_part(text, tags))
            elif p.get("type") == "image":
                html.append(_image_part(str(p.get("image", "")), images or {}))
        total += words
        body = "".join(html)
        if m.get("role") == "system":
            body = f"<details><summary>system prompt (click to show)</summary>{body}</details>"
        blocks.append(f'<div class="r1v4-card r1v4-ctx r1v4-role-{esc(m.get("role", ""))}"><div class="r1v4-card-title">'
                      f'<span>{esc(m.get("role", ""))}</span><span>message {n}</span><span>{words} words</span>'
                      f'</div>{body}</div>')
    recorded = f"<span><b>{tokens_in}</b> tokens as the model counted them</span>" if tokens_in else ""
    heading = f'<span class="r1v4-pane-title">{esc(title)}</span>' if title else ""
    head = (f'<div class="r1v4-head">{heading}<span><b>{len(messages)}</b> messages</span>'
            f'<span><b>{total}</b> words of text</span>{recorded}</div>')
    return f'<div class="r1v4-run"><style>{CSS}</style>{head}{"".join(blocks)}</div>'


def _mark_tags(escaped: str, tags: tuple[str, ...]) -> str:
    pattern = _tag_pattern(tags)
    if pattern is None:
        return escaped
    return pattern.sub(lambda m: f'<span class="r1v4-tag">&lt;{m.group(1)}&gt;</span>', escaped)


def _image_part(path: str, known: dict[str, Image]) -> str:
    """An image of a context: its record from the run when known (named as given), else read from its file."""
    im = known.get(path)
    if im is None:
        try:
            im = Image.from_file(path)
        except (OSError, ValueError):
            return f'<span class="r1v4-badurl">(image {esc(Path(path).name)} missing)</span>'
    return image_figure(im, CONTEXT_THUMB)
