"""A scripted expert that solves generated tasks with the real tools, writing short R1V4 turns.

The expert is a `Model`: the agent runs it like any backend, executes its calls with the real
tools (the sandboxed code tool, the offline image_search and web_visit) and records the run as
a trajectory, which then goes through the curation filters and the SFT data path like any other.

What it knows beforehand is what a task generator knows: for zoom, the plaque's colour and code
(it cannot read glyphs; the answer filter and the crop check below keep it honest: a crop that does
not show the plaque's colour ends the run without an answer). Plaques and insets are found by the
code it writes, not by what it knows; URLs and facts are read from what the search tools return.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from typing import Any

from ..models.base import Delta, GenerationSettings, Usage
from .tasks import PLAQUE_COLOURS

__all__ = ["ExpertModel", "expert_turns_zoom", "find_code", "inset_code", "locate_code"]

FACT_LABELS = {"material": "Material", "made": "Made"}


def find_code(colour: str) -> str:
    """The code call that finds the named plaque by its colour and crops its text at full resolution.

    The plaque is located by the code, not guessed from the 128 px view of the whole scene: a mask of
    the pixels within 40 of the plaque's colour in every channel, its median point, and a 64x32 box
    around it, shown at the scene's own resolution (8x the scale of the model's view of the whole
    scene, where the glyphs are 2-3 px tall). The model learns which colour values to write from the
    colour the question names.
    """
    return _median_point(colour) + "c = show(helpers.crop(image_1, (x - 32, y - 16, x + 32, y + 16)))"


def inset_code() -> str:
    """The code call that finds a picture pasted into one cell of a 4x4 grid and crops that cell.

    A pasted picture breaks with what surrounds it at the cell's edges. Every cell has at least one
    side on an inner vertical grid line and one on an inner horizontal line, so the inset's row is the
    row of cells with the largest mean colour jump across the inner vertical lines, and its column the
    same across the horizontal lines (right on 99.7% of 1000 generated scenes; the filters drop the
    rest). The same call fits every interleaved task, so the model learns it once.
    """
    return ("import numpy as np; a = np.asarray(image_1, float); n = len(a) // 4; "
            "f = lambda b: abs(np.diff(b, axis=1)[:, n - 1::n]).reshape(4, -1).mean(1).argmax(); "
            "i, j = f(a), f(a.transpose(1, 0, 2)); "
            "c = show(helpers.crop(image_1, (j * n, i * n, j * n + n, i * n + n)))")


def locate_code(colour: str) -> str:
    """The code call that finds the named plaque by its colour and names its grid cell ("C2")."""
    return _median_point(colour) + '"ABCD"[int(x) * 4 // image_1.width] + str(int(y) * 4 // image_1.height + 1)'


def _median_point(colour: str) -> str:
    r, g, b = PLAQUE_COLOURS[colour]
    return (f"import numpy as np; y, x = np.median(np.nonzero((abs(np.asarray(image_1, int) - ({r}, {g}, {b}))"
            ".max(2) < 40)), 1); ")


def _call(name: str, arguments: dict[str, Any]) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}</tool_call>"


def expert_turns_zoom(colour: str, code: str) -> tuple[str, str]:
    """The two turns of a zoom solution: find the named plaque by its colour and crop it, then read it."""
    first = f"<think> I find the {colour} plaque by its colour and crop it. </think><code>{find_code(colour)}</code>"
    second = f"<think> It reads {code}. </think><answer>{code}</answer>"
    return first, second


def _last_images(messages: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            out += [str(p.get("image")) for p in content if p.get("type") == "image"]
    return out


def _texts(messages: list[dict[str, Any]]) -> str:
    parts = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [str(p.get("text", "")) for p in content if p.get("type") == "text"]
    return "\n".join(parts).replace("\\n", "\n")  # observation payloads are JSON strings


def _shows_colour(path: str, colour: str, min_pixels: int = 200) -> bool:
    """Whether an image holds a patch of the plaque colour (the crop check)."""
    import numpy as np
    from PIL import Image

    arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.int32)
    ref = np.array(PLAQUE_COLOURS[colour], dtype=np.int32)
    close = (np.abs(arr - ref).max(axis=2) <= 30).sum()
    return int(close) >= min_pixels


class ExpertModel:
    """Plays one task: each `stream` call writes the next turn from what the tools returned so far."""

    def __init__(self, task: dict[str, Any], mode: str = "tools"):
        self.task = task
        self.mode = mode  # "tools" or "direct" (no tools: answers from the full view)
        self.name = "expert"
        self.turn = 0
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {"name": "expert", "backend": "scripted expert (r1v4_nb.world.expert)", "task": self.task["id"]}

    def stream(self, messages: list[dict[str, Any]], *, stop: list[str], settings: GenerationSettings,
               cancel: threading.Event | None = None) -> Iterator[Delta]:
        with self._lock:
            text = self._next(messages)
            self.turn += 1
        for cut in stop:  # like a backend: the stop string is not sent
            if cut and cut in text:
                text = text[:text.index(cut)]
        yield Delta(text)
        yield Delta(finish_reason="stop", usage=Usage(0, max(1, len(text.split()))))

    def _next(self, messages: list[dict[str, Any]]) -> str:
        kind = self.task["meta"].get("kind", self.task.get("category"))
        if kind == "zoom":
            return self._zoom(messages)
        if kind == "locate":
            return self._locate(messages)
        if kind == "search":
            return self._search(messages, first_call=1)
        return self._interleaved(messages)

    def _zoom(self, messages: list[dict[str, Any]]) -> str:
        meta = self.task["meta"]
        colour, code = meta["colour"], self.task["answer"]
        if self.mode == "direct":
            return f"<think> The {colour} plaque is too small to read here; a guess. </think><answer>{code}</answer>"
        first, second = expert_turns_zoom(colour, code)
        if self.turn == 0:
            return first
        images = _last_images(messages)
        if len(images) < 2 or not _shows_colour(images[-1], colour):
            return "<think> The crop does not show the plaque. </think>"
        return second

    def _locate(self, messages: list[dict[str, Any]]) -> str:
        """Find the plaque by its colour in code, then answer the cell the code printed (if it is the right one)."""
        meta = self.task["meta"]
        if self.turn == 0:
            return (f"<think> I find the {meta['colour']} plaque by its colour and work out its cell. </think>"
                    f"<code>{locate_code(meta['colour'])}</code>")
        if f"'{meta['cell']}'" not in _texts(messages):
            return "<think> The code did not give the cell. </think>"
        return f"<think> It is in cell {meta['cell']}. </think><answer>{meta['cell']}</answer>"

    def _search(self, messages: list[dict[str, Any]], first_call: int) -> str:
        """Turns from `first_call` on: image search, visit the best match, read the fact."""
        meta = self.task["meta"]
        step = self.turn - (first_call - 1)
        query = "image_1" if first_call == 1 else _shown_path(messages)
        if step == 0:
            what = "this picture" if first_call == 1 else "the inset"
            return (f"<think> I search the web for {what} to find what it shows. </think>"
                    + _call("image_search", {"image_paths": [query]}))
        text = _texts(messages)
        if step == 1:
            url = _top_url(text)
            if not url:
                return "<think> The image search found nothing. </think>"
            return ("<think> I open the page of the best match. </think>"
                    + _call("web_visit", {"urls": [url]}))
        label = FACT_LABELS[meta["fact"]]
        value = _fact(text, label)
        if value is None:
            return "<think> The page does not say. </think>"
        return f"<think> The page says: {label} {value}. </think><answer>{value}</answer>"

    def _interleaved(self, messages: list[dict[str, Any]]) -> str:
        if self.turn == 0:
            return f"<think> I find the inset by its sharp edges and crop it. </think><code>{inset_code()}</code>"
        return self._search(messages, first_call=2)


def _shown_path(messages: list[dict[str, Any]]) -> str:
    m = re.findall(r"\[image \d+: ([^\s\]]+) \(", _texts(messages))
    return m[-1] if m else "show_1.png"


_MATCH = re.compile(r'\[\d+\.1\] .+? \(similarity [\d.]+\)\s+(https?://[^\s"\\]+)')


def _top_url(text: str) -> str | None:
    """The page URL of the best match of the last image search."""
    found = _MATCH.findall(text)
    return found[-1] if found else None


def _fact(text: str, label: str) -> str | None:
    """A fact from the infobox rows of the last page web_visit returned ("| Material | copper")."""
    m = re.findall(rf"\| {re.escape(label)} \| ([^\n|\"\\]+)", text)
    return m[-1].strip() if m else None
