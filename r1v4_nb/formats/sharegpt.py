"""Trajectory <-> LLaMA-Factory ShareGPT, both ways.

A record is what LLaMA-Factory's `sharegpt` formatting reads::

    {"id": ..., "dialect": "r1v4", "mode": "general", "system": "...",
     "conversations": [{"from": "human", "value": "<image>question"},
                       {"from": "function_call", "value": "<think>\\n...\\n</think>\\n\\n<tool_call>{...}</tool_call>"},
                       {"from": "observation", "value": "result text<image>"},
                       {"from": "gpt", "value": "<think>...</think><answer>...</answer>"}],
     "images": ["run.images/ab12....png", ...]}

- human: the input images as `<image>` placeholders, then the question. A note
  (budget notice, a person's edit) that follows a model turn is a human turn too;
  a later user turn of a chat (a note of reason `user`) carries its own images.
- function_call: a model turn that calls tools, in the shape LLaMA-Factory's
  function formatter parses (its Qwen templates): the thinking in its thought
  words `<think>\\n...\\n</think>\\n\\n`, then the call as JSON inside one
  `<tool_call>...</tool_call>` (a list for several calls), `</` inside strings
  written `<\\/` so its non-greedy match cannot end inside code.
- tools: the header's tool specs that carry parameters, as LLaMA-Factory's
  `tools` column (a JSON string); imported back into the header.
- observation: the tool result text the model saw (with `Error: ...` when the
  call failed), then one `<image>` per image it returned. Results of several
  calls in one turn are joined by `</tool_response>` / `<tool_response>` lines,
  as LLaMA-Factory joins them.
- gpt: a model turn without calls, its text exactly as generated.
- images: every image in placeholder order, as paths relative to the file's folder.

Conversations alternate user side (human, observation) and assistant side
(gpt, function_call), as LLaMA-Factory requires; a note that follows a user-side
message is appended to it (after a blank line) and listed in that message's
`notes`. Optional hints keep the round trip exact where LLaMA-Factory's shape is
lossy: `raw` (a tool-calling turn's text as generated), `notes`, `errors` (the
error of each result). LLaMA-Factory ignores them; the importer uses a hint only
when it agrees with the message's value, so an edited value wins. Token counts,
timings and tool `data` do not travel, and a literal `<image>` inside a text is
written as `< image>` so that it cannot shift the images after it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..dialects import Dialect
from ..dialects.context import result_text
from ..errors import UsageError, read_text_file
from ..images import Image, Provenance
from ..records import ModelStep, NoteStep, Observation, Step, ToolCall, ToolStep
from ..trajectory import End, Header, Trajectory, new_id, read, write
from ._common import load_dialect, provenance_for

IMAGE = "<image>"
ESCAPED_IMAGE = "< image>"  # a literal "<image>" in a text would shift every image after it
JOIN = "\n</tool_response>\n<tool_response>\n"
USER_SIDE = ("human", "observation")
ASSISTANT_SIDE = ("gpt", "function_call")
# role names of the OpenAI-style variant (role/content) that LLaMA-Factory also reads
_ROLE_ALIASES = {"user": "human", "assistant": "gpt", "tool": "observation", "function": "function_call"}
_THINK = re.compile(r"<think>(.*)</think>", re.DOTALL)
_TOOL_CALL = re.compile(r"<tool_call>(.*)</tool_call>", re.DOTALL)


def to_sharegpt(traj: Trajectory, root: str | Path | None = None) -> dict[str, Any]:
    """One ShareGPT record; image paths relative to `root` (the output file's folder), else absolute."""
    h = traj.header
    images: list[str] = []

    def placeholders(ims: Sequence[Image]) -> str:
        images.extend(_image_path(im, root) for im in ims)
        return IMAGE * len(ims)

    conv: list[dict[str, Any]] = [{"from": "human", "value": placeholders(h.images) + _escape(h.question)}]
    steps = traj.steps
    i = 0
    while i < len(steps):
        s = steps[i]
        i += 1
        if isinstance(s, ModelStep) and s.calls:
            conv.append({"from": "function_call", "value": _call_value(s), "raw": s.text})
            results: list[ToolStep] = []
            while i < len(steps) and isinstance(steps[i], ToolStep) and len(results) < len(s.calls):
                results.append(steps[i])  # type: ignore[arg-type]
                i += 1
            if results:
                conv.append(_observation(results, placeholders))
        elif isinstance(s, ModelStep):
            conv.append({"from": "gpt", "value": _escape(s.text)})
        elif isinstance(s, ToolStep):  # a result without its call before it: kept, though unusual
            conv.append(_observation([s], placeholders))
        elif isinstance(s, NoteStep):
            text = placeholders(s.images) + _escape(s.text)
            if conv[-1]["from"] in USER_SIDE:
                conv[-1]["value"] += "\n\n" + text
                conv[-1].setdefault("notes", []).append(text)
            else:
                conv.append({"from": "human", "value": text})
    record = {"id": h.id, "dialect": h.dialect, "mode": h.mode, "system": h.system_prompt,
              "conversations": conv, "images": images}
    specs = [{k: t[k] for k in ("name", "description", "parameters") if k in t} for t in h.tools if t.get("parameters")]
    if specs:
        record["tools"] = json.dumps(specs, ensure_ascii=False)  # LLaMA-Factory's tools column: a JSON string
    return record


def llamafactory_problems(record: dict[str, Any]) -> list[str]:
    """Why LLaMA-Factory would skip this record (empty if it would train on it)."""
    problems = []
    conv = record.get("conversations") or []
    for n, msg in enumerate(conv):
        side = USER_SIDE if n % 2 == 0 else ASSISTANT_SIDE
        if msg.get("from") not in side:
            problems.append(f"message {n} is {msg.get('from')!r} where {' or '.join(side)} must be")
            break
    if len(conv) % 2:
        problems.append("it does not end with a model turn (an odd number of messages)")
    count = sum(str(m.get("value", "")).count(IMAGE) for m in conv)
    if count != len(record.get("images") or []):
        problems.append(f"{count} <image> placeholders but {len(record.get('images') or [])} images")
    for n, msg in enumerate(conv):
        if msg.get("from") == "function_call" and (why := _function_problem(str(msg.get("value", "")))):
            problems.append(f"message {n}: {why}")
    return problems


def _function_problem(value: str) -> str:
    """Why LLaMA-Factory's function formatter (Qwen templates) would fail on a function_call value ('' if not).

    It takes the first `<tool_call>(.*?)</tool_call>` (else the value without its `<think>\\n...\\n</think>\\n\\n`)
    and json.loads it: a call object or a list of them, each with "name" and "arguments".
    """
    m = re.search(r"<tool_call>(.*?)</tool_call>", value, re.DOTALL)
    body = m.group(1) if m else re.sub(r"<think>\n(.*?)\n</think>\n\n", "", value, count=1, flags=re.DOTALL)
    try:
        calls = json.loads(body)
    except json.JSONDecodeError:
        return "Invalid JSON format in function message (LLaMA-Factory's error)"
    calls = calls if isinstance(calls, list) else [calls]
    if not all(isinstance(c, dict) and "name" in c and "arguments" in c for c in calls):
        return 'a function call needs "name" and "arguments"'
    return ""


def from_sharegpt(record: dict[str, Any], out: str | Path, base: str | Path | None = None,
                  dialect: str | Dialect | None = None, mode: str | None = None) -> Trajectory:
    """Rebuild a trajectory from a ShareGPT record and write it to `out` (images copied into its store).

    `base` is the folder relative image paths start from (the ShareGPT file's folder). Model turns are
    parsed by the dialect (the record's own, else r1v4); a tool-calling turn without a usable `raw`
    hint is rebuilt in that dialect's tag syntax.
    """
    if not isinstance(record, dict) or not isinstance(record.get("conversations", record.get("messages")), list):
        raise UsageError("not a ShareGPT record: it needs a 'conversations' list")
    d = load_dialect(dialect or record.get("dialect") or "r1v4")
    conv = [_normalise(m, n) for n, m in enumerate(record.get("conversations", record.get("messages")))]
    system = str(record.get("system") or "")
    if conv and conv[0]["from"] == "system":
        system, conv = conv[0]["value"], conv[1:]
    if not conv or conv[0]["from"] != "human":
        raise UsageError("the ShareGPT record must start with a human message (the question)")
    pool = _ImagePool(record.get("images") or [], Path(base) if base else Path.cwd())

    first = conv[0]
    question_text, notes = _split_notes(first)
    inputs = [pool.take(Provenance("input")) for _ in range(question_text.count(IMAGE))]
    steps: list[Step] = []
    _add_notes(steps, notes)
    pending: list[ToolCall] = []
    for msg in conv[1:]:
        role = msg["from"]
        if role in ASSISTANT_SIDE:
            raw = _model_text(msg, d) if role == "function_call" else msg["value"]
            step = ModelStep(len(steps), raw, d.parse(raw))
            for n, call in enumerate(step.calls):
                call.id = call.id or f"call_{step.index}_{n}"
            steps.append(step)
            pending = list(step.calls)
        elif role == "observation":
            value, notes = _split_notes(msg)
            parts = value.split(JOIN) if len(pending) > 1 and value.count(JOIN) == len(pending) - 1 else [value]
            errors = msg.get("errors") or []
            for k, part in enumerate(parts):
                call = pending[k] if k < len(pending) else None
                steps.append(_tool_step(len(steps), part, call, errors[k] if k < len(errors) else "", pool))
            pending = []
            _add_notes(steps, notes)
        else:  # a human message after the question: a later user turn, with its images
            value, notes = _split_notes(msg)
            turn = [pool.take(Provenance("input")) for _ in range(value.count(IMAGE))]
            steps.append(NoteStep(len(steps), value.replace(IMAGE, ""), "user", turn))
            _add_notes(steps, notes)
            pending = []
    pool.check_used()
    question = question_text.replace(IMAGE, "")
    used = sorted({s.call.name for s in steps if isinstance(s, ToolStep) and s.call.name})
    specs = _tool_specs(record.get("tools"))
    tools = specs + [{"name": n, "settings": {}} for n in used if n not in {t["name"] for t in specs}]
    header = Header(question=question, images=inputs, model={"name": str(record.get("model") or "unknown")},
                    dialect=d.name, mode=mode or str(record.get("mode") or "general"), system_prompt=system,
                    tools=tools,
                    meta={"imported_from": "sharegpt"}, id=str(record.get("id") or new_id()))
    answer = next((s.answer for s in reversed(steps) if isinstance(s, ModelStep) and s.answer is not None), None)
    end = End("answered" if answer is not None else "no_answer", answer)
    return read(write(out, Trajectory(header, steps, end)))


def _tool_specs(tools: Any) -> list[dict[str, Any]]:
    """LLaMA-Factory's `tools` column (a JSON string or a list of function specs) as header tool entries."""
    if isinstance(tools, str):
        if not tools.strip():
            return []
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as exc:
            raise UsageError(f"the record's 'tools' is not JSON ({exc.msg}); give a list of function specs") from None
    if not isinstance(tools, list):
        return []
    out = []
    for t in tools:
        spec = t.get("function", t) if isinstance(t, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            out.append({**{k: spec[k] for k in ("name", "description", "parameters") if k in spec}, "settings": {}})
    return out


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ShareGPT file: a JSON list, one JSON object, or JSONL."""
    p = Path(path)
    text = read_text_file(p, "a ShareGPT JSON or JSONL file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise UsageError(f"{p}: neither JSON nor JSONL ({exc.msg} at line {exc.lineno})") from None
    return data if isinstance(data, list) else [data]


def import_file(path: str | Path, out_dir: str | Path, dialect: str | None = None) -> list[Path]:
    """Import every record of a ShareGPT file into `out_dir/<id>.jsonl` (or `<n>.jsonl` without ids)."""
    p = Path(path)
    written: list[Path] = []
    names: set[str] = set()
    for n, record in enumerate(load_records(p)):
        name = re.sub(r"[^A-Za-z0-9._-]", "_", str(record.get("id") or n)) if isinstance(record, dict) else str(n)
        name = name if name not in names else f"{name}-{n}"  # repeated ids must not overwrite each other
        names.add(name)
        try:
            traj = from_sharegpt(record, Path(out_dir) / f"{name}.jsonl", base=p.parent, dialect=dialect)
        except UsageError as exc:
            raise UsageError(f"{p} record {n}: {exc}") from None
        written.append(traj.path)
    return written


def _image_path(im: Image, root: str | Path | None) -> str:
    path = im.path.resolve()
    if root is None:
        return str(path)
    return os.path.relpath(path, Path(root).resolve())


def _escape(text: str) -> str:
    return text.replace(IMAGE, ESCAPED_IMAGE)


def _call_value(step: ModelStep) -> str:
    """A tool-calling turn as LLaMA-Factory's function formatter reads it: the thinking in its thought words
    (`<think>\\n...\\n</think>\\n\\n`), then the call(s) as JSON inside one `<tool_call>` (its tool-call
    words; a list for several calls). Its formatter re-renders the call in the template's own shape."""
    thinks = [s.text for s in step.segments if s.kind == "think"]
    calls = [{"name": c.name, "arguments": c.arguments} for c in step.calls]
    # "</" only occurs inside JSON strings; written "<\\/" (the same string) so that the formatter's
    # non-greedy <tool_call>(.*?)</tool_call> cannot end inside the code of a call
    body = json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False).replace("</", "<\\/")
    prefix = f"<think>\n{chr(10).join(thinks)}\n</think>\n\n" if thinks else ""
    return _escape(f"{prefix}<tool_call>{body}</tool_call>")


def _observation(results: Sequence[ToolStep], placeholders: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "from": "observation",
        "value": JOIN.join(_escape(result_text(t.observation)) + placeholders(t.observation.images)
                           for t in results),
    }
    if any(t.observation.error for t in results):
        msg["errors"] = [t.observation.error or "" for t in results]
    return msg


def _normalise(msg: Any, n: int) -> dict[str, Any]:
    if not isinstance(msg, dict):
        raise UsageError(f"conversation message {n} is not an object")
    role = msg.get("from", msg.get("role"))
    value = msg.get("value", msg.get("content"))
    role = _ROLE_ALIASES.get(role, role)
    if role not in (*USER_SIDE, *ASSISTANT_SIDE, "system") or not isinstance(value, str):
        raise UsageError(f"conversation message {n} needs 'from' (human, gpt, function_call, observation) "
                         f"and a string 'value'")
    return {**msg, "from": role, "value": value}


def _split_notes(msg: dict[str, Any]) -> tuple[str, list[str]]:
    """A message's own value and the notes appended to it (per its `notes` hint, when they are there)."""
    value = msg["value"]
    notes = [n for n in (msg.get("notes") or []) if isinstance(n, str)]
    kept: list[str] = []
    for note in reversed(notes):
        if not value.endswith("\n\n" + note):
            break
        value = value[:-len(note) - 2]
        kept.insert(0, note)
    return value, kept


def _add_notes(steps: list[Step], notes: Sequence[str]) -> None:
    for text in notes:
        steps.append(NoteStep(len(steps), text, "imported"))


def _parse_call_value(value: str) -> tuple[str, list[tuple[str, dict[str, Any]]]] | None:
    """(thinking, [(name, arguments)]) of a function_call value in LLaMA-Factory's shape, or None."""
    m = _THINK.search(value)
    think = m.group(1).strip() if m else ""
    rest = (value.replace(m.group(0), "") if m else value).strip()
    wrapped = _TOOL_CALL.fullmatch(rest)
    rest = wrapped.group(1) if wrapped else rest
    try:
        obj = json.loads(rest)
    except json.JSONDecodeError:
        return None
    calls = []
    for c in obj if isinstance(obj, list) else [obj]:
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            return None
        args = c.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                return None
        if not isinstance(args, dict):
            return None
        calls.append((c["name"], args))
    return (think, calls) if calls else None


def _model_text(msg: dict[str, Any], d: Dialect) -> str:
    """The text of a tool-calling turn: the `raw` hint when it says the same as the value, else rebuilt."""
    value = msg["value"]
    parsed = _parse_call_value(value)
    if parsed is None:  # not LLaMA-Factory's shape: take it as the model's own text
        return value
    think, calls = parsed
    raw = msg.get("raw")
    if isinstance(raw, str):
        segs = d.parse(raw)
        raw_think = "\n".join(s.text for s in segs if s.kind == "think")
        raw_calls = [(s.call.name, s.call.arguments) for s in segs if s.call is not None]
        if raw_think == think and raw_calls == calls:
            return raw
    text = f"<think>\n{think}\n</think>\n" if think else ""
    for name, args in calls:
        text += "<tool_call>" + json.dumps({"name": name, "arguments": args}, ensure_ascii=False) + "</tool_call>"
    return text


def _tool_step(index: int, part: str, call: ToolCall | None, error: str, pool: _ImagePool) -> ToolStep:
    count = part.count(IMAGE)
    text = part.replace(IMAGE, "")
    kind = None
    if not error:
        text, kind = _unpack(text)
    elif text == f"Error: {error}":
        text = ""
    elif text.endswith(f"\nError: {error}"):
        text = text[:-len(error) - 8]
    if call is None:
        call = ToolCall(kind or "", {}, error="the record has a tool result without a tool call before it")
    images = [pool.take(provenance_for(call.name, index)) for _ in range(count)]
    return ToolStep(index, call, Observation(text, images, error or None))


def _unpack(text: str) -> tuple[str, str | None]:
    """A result written as R1V4's `{"result": ..., "type": ...}` JSON gives its result text and type."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return text, None
    if isinstance(obj, dict) and set(obj) <= {"result", "type"} and "result" in obj:
        result = obj["result"]
        kind = obj.get("type")
        return (result if isinstance(result, str) else json.dumps(result, ensure_ascii=False),
                kind if isinstance(kind, str) else None)
    return text, None


class _ImagePool:
    """The record's images, handed out in placeholder order."""

    def __init__(self, paths: Sequence[Any], base: Path):
        self.paths = [Path(str(p)) for p in paths]
        self.base = base
        self.next = 0

    def take(self, provenance: Provenance) -> Image:
        if self.next >= len(self.paths):
            raise UsageError(f"the record has more <image> placeholders than images ({len(self.paths)})")
        p = self.paths[self.next]
        self.next += 1
        path = p if p.is_absolute() else self.base / p
        if provenance.kind == "input" and provenance.name is None:
            provenance.name = p.name
        if not path.is_file():
            raise UsageError(f"image {p} not found (looked in {self.base}); pass the folder it is relative to")
        try:
            return Image.from_file(path, provenance)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def check_used(self) -> None:
        if self.next != len(self.paths):
            raise UsageError(f"the record lists {len(self.paths)} images but has {self.next} <image> placeholders")
