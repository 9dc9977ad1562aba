"""Import a reply of the hosted Skywork-R1V4 API as a trajectory.

The hosted API runs the tools on its side and returns the whole run as one
assistant string (an OpenAI-style chat completion)::

    <think>...</think><tool_call>{"name": "code", ...}</tool_call>
    <observation>{"result": "...", "type": "code"} data:image/png;base64,...</observation>
    <think>...</think><answer>...</answer>

The text between observations becomes the model steps (exactly as sent, parsed
by the R1V4 dialect); each observation becomes a tool step for the call before
it, its `{"result", "type"}` JSON unpacked to text and its base64 images written
as files into the trajectory's image store.

Accepted inputs: a chat completion; `{"request": ..., "response": ...}` (the
question, images, model and settings then come from the request); or a line of
the public batch scripts' output, `{"image", "question", "response":
{"full_response", "raw_response"}}`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..images import Image, Provenance
from ..records import ModelStep, Observation, Step, ToolCall, ToolStep
from ..trajectory import End, Header, Trajectory, images_dir, input_image, new_id, read, write
from ._common import load_dialect, provenance_for

# The official parser allows whitespace and line breaks inside the base64: the payload runs on across
# whitespace; `_payload` decides where it really ends.
DATA_URL = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,\s*([A-Za-z0-9+/]+(?:\s+[A-Za-z0-9+/]+)*(?:\s*=){0,2})")
_OBS_OPEN, _OBS_CLOSE = "<observation>", "</observation>"
_SEARCH_TOOLS = {"image_search", "text_search", "web_visit"}


def import_reply(source: str | Path | dict[str, Any], out: str | Path, question: str | None = None,
                 images: Sequence[str | Path] = ()) -> Trajectory:
    """Turn a hosted R1V4 reply (a file or its parsed JSON) into a trajectory written at `out`.

    `question` and `images` override what the request (if any) says; the returned trajectory's
    `warnings` list what could not be recovered (an image URL that was not inline, say).
    """
    base = Path(source).parent if isinstance(source, (str, Path)) else Path.cwd()
    doc = _load(source)
    request, response, extra = _split(doc)
    content = _content(response)
    store = images_dir(out)
    warnings: list[str] = []

    req_question, req_images, system = _from_request(request, store, warnings)
    if extra.get("question") and not req_question:
        req_question = str(extra["question"])
    if extra.get("image") and not req_images:
        req_images = _image_files([extra["image"]], base, warnings)
    if question is not None:
        req_question = question
    if images:
        req_images = [input_image(p) for p in _check_files(images)]
    if not req_question:
        warnings.append("the reply comes without its question; pass --question to record it")

    steps = _steps(content, store, warnings)
    used = sorted({s.call.name for s in steps if isinstance(s, ToolStep) and s.call.name})
    model = str(request.get("model") or response.get("model") or "skywork/r1v4")
    search = request.get("enable_search")
    mode = "deepresearch" if search is True or (search is None and _SEARCH_TOOLS & set(used)) else "general"
    choice = (response.get("choices") or [{}])[0]
    meta: dict[str, Any] = {"imported_from": "skywork-r1v4-api", "response_id": response.get("id"),
                            "finish_reason": choice.get("finish_reason") if isinstance(choice, dict) else None}
    if warnings:
        meta["import_warnings"] = list(warnings)
    header = Header(
        question=req_question or "", images=req_images,
        model={"name": model, "backend": "skywork-api"}, dialect="r1v4", mode=mode, system_prompt=system,
        tools=[{"name": n, "settings": {"hosted": True}} for n in used],
        settings={k: request[k] for k in ("temperature", "max_tokens", "top_p", "enable_search") if k in request},
        meta=meta, id=str(response.get("id") or new_id()),
    )
    answer = next((s.answer for s in reversed(steps) if isinstance(s, ModelStep) and s.answer is not None), None)
    usage = {k: v for k, v in (response.get("usage") or {}).items() if isinstance(v, int)}
    end = End("answered" if answer is not None else "no_answer", answer and answer.strip(), usage=usage)
    traj = read(write(out, Trajectory(header, steps, end)))
    traj.warnings.extend(warnings)
    return traj


def _load(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    if isinstance(source, dict):
        return source
    p = Path(source)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{p}: not JSON ({exc.msg} at line {exc.lineno}); save the API's reply as JSON") from None
    except UnicodeDecodeError:
        raise UsageError(f"{p}: not UTF-8 text; save the API's reply as JSON") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{p}: expected a JSON object (a chat completion), got {type(doc).__name__}")
    return doc


def _split(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(request, chat completion, other fields) of any accepted input shape."""
    if "choices" in doc:
        return {}, doc, {}
    if "response" in doc:
        req = doc.get("request") if isinstance(doc.get("request"), dict) else {}
        resp = doc["response"]
        if isinstance(resp, dict) and "choices" not in resp:  # the batch scripts' {"full_response", ...}
            if resp.get("error") and "full_response" not in resp:
                raise UsageError(f"the saved reply is an error, not a run: {str(resp['error'])[:200]}")
            raw = resp.get("raw_response") if isinstance(resp.get("raw_response"), dict) else {}
            if "full_response" in resp:
                raw = {**raw, "choices": [{"message": {"content": resp["full_response"]}}]}
            resp = raw
        if isinstance(resp, dict) and "choices" in resp:
            return req, resp, doc
    raise UsageError("no chat completion found: expected 'choices', or 'response' holding one")


def _content(response: dict[str, Any]) -> str:
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise UsageError("the reply has no choices[0].message.content to import") from None
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str) or not content.strip():
        raise UsageError("the reply's assistant content is empty")
    return content


def _from_request(request: dict[str, Any], store: Path,
                  warnings: list[str]) -> tuple[str, list[Image], str]:
    """The question, input images and system prompt of a chat completions request."""
    question: list[str] = []
    images: list[Image] = []
    system = ""
    for msg in request.get("messages") or []:
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        texts = [p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text"]
        if msg.get("role") == "system":
            system = "\n".join(texts)
        elif msg.get("role") == "user":
            question.extend(texts)
            for p in parts:
                if isinstance(p, dict) and p.get("type") == "image_url":
                    url = (p.get("image_url") or {}).get("url", "")
                    im = _data_image(url, store, Provenance("input", name=f"image_{len(images) + 1}"), warnings)
                    if im is not None:
                        images.append(im)
    return "\n".join(t for t in question if t), images, system


def _data_image(url: str, store: Path, provenance: Provenance, warnings: list[str]) -> Image | None:
    m = DATA_URL.fullmatch(url.strip())
    m = m if m is not None else DATA_URL.fullmatch("".join(url.split()))
    if not m:
        warnings.append(f"image {url[:60]!r} is not an inline data URL; it was not fetched")
        return None
    return _decode(m.group(1), store, provenance, warnings)


def _payload_ends(b64: str) -> list[str]:
    """Candidate payloads of a base64 run wrapped across lines, longest first.

    Wrapped base64 has lines of one width and a shorter last line (or `=` padding); a word after
    that is text, not image. Every shorter cut is offered too, for `_decode` to test.
    """
    pieces = b64.split()
    if not pieces:
        return []
    n = 1
    while n < len(pieces) and len(pieces[n - 1]) == len(pieces[0]) and "=" not in pieces[n - 1]:
        n += 1
    return ["".join(pieces[:k]).replace("=", "") for k in range(n, 0, -1)]


def _decode(b64: str, store: Path, provenance: Provenance, warnings: list[str], where: str = "") -> Image | None:
    """The whole image of a (possibly line-wrapped) base64 payload, verified to decode."""
    error = "no base64 payload"
    for candidate in _payload_ends(b64):
        try:
            data = base64.b64decode(candidate + "=" * (-len(candidate) % 4))
            return Image.from_bytes(data, store, provenance)
        except (binascii.Error, ValueError) as exc:
            error = str(exc)
    warnings.append(f"{where + ': ' if where else ''}an inline image could not be decoded ({error}); left out")
    return None


def _url_text(text: str) -> str:
    """`text` with each inline image URL removed: the whole wrapped payload, and no word after it."""
    out, pos = [], 0
    for m in DATA_URL.finditer(text):
        pieces = list(re.finditer(r"[^\s=]+=*|=+", m.group(1)))
        n = 1
        while n < len(pieces) and len(pieces[n - 1].group()) == len(pieces[0].group()) \
                and "=" not in pieces[n - 1].group():
            n += 1
        end = m.start(1) + pieces[n - 1].end() if pieces else m.end()
        while end < m.end(1) and (text[end] == "=" or (text[end].isspace() and text[end:m.end(1)].strip() == "=")):
            end += 1
        out.append(text[pos:m.start()])
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _image_files(paths: Sequence[Any], base: Path, warnings: list[str]) -> list[Image]:
    found = []
    for p in paths:
        for cand in (Path(str(p)), base / str(p)):
            if cand.is_file():
                found.append(input_image(cand))
                break
        else:
            warnings.append(f"input image {p} not found; pass --image to record it")
    return found


def _check_files(paths: Sequence[str | Path]) -> list[Path]:
    for p in paths:
        if not Path(p).is_file():
            raise UsageError(f"image not found: {p}")
    return [Path(p) for p in paths]


def transcript_steps(content: str, store: str | Path, start: int = 0) -> tuple[list[Step], list[str]]:
    """The steps of a hosted transcript (indices from `start`, images written into `store`) and what could
    not be recovered; what `import_reply` and a live hosted run share."""
    warnings: list[str] = []
    steps = _steps(content, Path(store), warnings)
    for s in steps:
        s.index += start
        if isinstance(s, ModelStep):
            for n, call in enumerate(s.calls):
                call.id = f"call_{s.index}_{n}"
    return steps, warnings


def _steps(content: str, store: Path, warnings: list[str]) -> list[Step]:
    """Model steps from the text between observations; a tool step from each observation."""
    steps: list[Step] = []
    dialect = load_dialect("r1v4")
    pending: list[ToolCall] = []
    pos = 0
    while True:
        start = content.find(_OBS_OPEN, pos)
        text = content[pos:] if start == -1 else content[pos:start]
        if text.strip():
            step = ModelStep(len(steps), text, dialect.parse(text))
            for n, call in enumerate(step.calls):
                call.id = call.id or f"call_{step.index}_{n}"
            steps.append(step)
            pending = list(step.calls)
        if start == -1:
            return steps
        stop = content.find(_OBS_CLOSE, start)
        if stop == -1:
            warnings.append("the last observation is not closed (the reply was cut off)")
            body, pos = content[start + len(_OBS_OPEN):], len(content)
        else:
            body, pos = content[start + len(_OBS_OPEN):stop], stop + len(_OBS_CLOSE)
        steps.append(_tool_step(len(steps), body, pending.pop(0) if pending else None, store, warnings))


def _tool_step(index: int, body: str, call: ToolCall | None, store: Path, warnings: list[str]) -> ToolStep:
    text, urls, kind = _unpack(body)
    if call is None:
        call = ToolCall(kind or "", {}, error="the reply has an observation without a tool call before it")
    images = []
    for b64 in urls:
        im = _decode(b64, store, provenance_for(call.name or kind or "", index), warnings, f"step {index}")
        if im is not None:
            images.append(im)
    return ToolStep(index, call, Observation(text, images))


def _unpack(body: str) -> tuple[str, list[str], str | None]:
    """(text, base64 payloads in order, result type) of an observation's body."""
    stripped = body.strip()
    try:
        obj, end = json.JSONDecoder().raw_decode(stripped)
    except json.JSONDecodeError:
        obj, end = None, 0
    if not isinstance(obj, dict):
        urls = DATA_URL.findall(body)
        return _url_text(body).strip(), urls, None
    urls: list[str] = []
    cleaned = _strip_urls(obj, urls)
    rest = stripped[end:]
    urls.extend(DATA_URL.findall(rest))
    kind = obj.get("type") if isinstance(obj.get("type"), str) else None
    if "result" in cleaned:
        result = cleaned["result"]
        text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
    else:
        text = json.dumps({k: v for k, v in cleaned.items() if k != "type"}, ensure_ascii=False)
    leftover = _url_text(rest).strip()
    return (f"{text}\n{leftover}" if leftover else text).strip(), urls, kind


def _strip_urls(value: Any, urls: list[str]) -> Any:
    """`value` with every inline image URL cut out (collected into `urls`, in document order)."""
    if isinstance(value, str):
        urls.extend(DATA_URL.findall(value))
        return _url_text(value).strip() if DATA_URL.search(value) else value
    if isinstance(value, list):
        items = [_strip_urls(v, urls) for v in value]
        return [v for v, orig in zip(items, value, strict=True) if not (v == "" and isinstance(orig, str) and orig)]
    if isinstance(value, dict):
        return {k: _strip_urls(v, urls) for k, v in value.items()}
    return value
