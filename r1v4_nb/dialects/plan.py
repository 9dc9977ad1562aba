"""Plan mode: the model replies with a JSON array of steps (the prompt asks for 2 to 10) and runs nothing.

    [{"description": "...", "tool_name": "image_search", "parameters": {"image_path": "image_1"}},
     ..., {"description": "...", "tool_name": "none", "parameters": {}}]

The parser streams the reply as usual (`think` segments, free `text`) and, at
the end of the stream, adds one segment:

- `plan`: a valid plan; its text is the array normalised with
  `json.dumps(steps, ensure_ascii=False)`, each step reduced to description,
  tool_name and parameters. The agent takes the first one as the run's answer.
- `plan_error`: no valid plan; its text says what is wrong, and its `call` (named
  "plan") carries the same `error`, so the agent reports it like any malformed
  call and the model gets another try.

Fences, prose and `<answer>` tags around the array are tolerated; a plan written
as a numbered list is read with a note on the segment, and a step count outside
2 to 10 is a note (a warning), not an error. The same checks (`validate_plan`:
schema, known tools, `[... from Step k]` references that point back, a final
`none` step) validate the plans that curation extracts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from .. import prompts
from ..errors import UsageError
from ..records import ModelStep, NoteStep, Observation, Segment, Step, ToolCall, ToolStep
from .base import Dialect, Parser, SegmentEvent, text_part
from .context import Context, result_text
from .tags import LENIENT_JSON, Tag, TagParser

PLAN_TOOLS = {"image_search": "image_path", "text_search": "query", "web_visit": "url", "none": None}
MIN_STEPS, MAX_STEPS = 2, 10
_ARRAY_START = re.compile(r"\[\s*\{")
REFERENCE = re.compile(r"\[([^\[\]]+?) from Step (\d+)\]", re.IGNORECASE)
_MAX_CANDIDATES = 20  # arrays tried per reply: bounds the work on a reply full of brackets
EXAMPLE = '[{"description": "...", "tool_name": "text_search", "parameters": {"query": "..."}}, ...]'


def count_note(n: int) -> str:
    """A warning when a plan has fewer or more steps than the prompt's guidance ('' when inside it)."""
    if MIN_STEPS <= n <= MAX_STEPS:
        return ""
    return f"the plan has {n} step(s); the prompt prefers {MIN_STEPS} to {MAX_STEPS}"


def check_steps(steps: list[Any]) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The normalised steps of a decoded array, or None and what is wrong with it.

    "2 to 10 steps" is guidance in R1V4's prompt ("prefer"), not a rule: any count of at least one
    step is a plan, and `count_note` warns outside the range.
    """
    if not steps:
        return None, f"the plan has no steps; write {MIN_STEPS} to {MAX_STEPS}"
    out = []
    for n, step in enumerate(steps, start=1):
        if not isinstance(step, dict):
            return None, f"step {n} is not a JSON object"
        desc, tool, params = step.get("description"), step.get("tool_name"), step.get("parameters", {})
        if not isinstance(desc, str) or not desc.strip():
            return None, f'step {n} has no "description"'
        if tool not in PLAN_TOOLS:
            return None, f'step {n} has tool_name {tool!r}; use one of: {", ".join(PLAN_TOOLS)}'
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return None, f'step {n}: "parameters" must be a JSON object'
        key = PLAN_TOOLS[tool]
        if key is not None and not (isinstance(params.get(key), str) and params[key].strip()):
            return None, f'step {n} ({tool}) needs "parameters": {{"{key}": "..."}}'
        out.append({"description": desc.strip(), "tool_name": tool, "parameters": params})
    error = check_references(out)
    if error is None and out[-1]["tool_name"] != "none":
        error = f'the last step has tool_name {out[-1]["tool_name"]!r}; end with a "none" step that checks the findings'
    return (None, error) if error else (out, None)


def check_references(steps: list[dict[str, Any]]) -> str | None:
    """Every `[... from Step k]` placeholder must point back to an earlier step (None when all do)."""
    for n, step in enumerate(steps, start=1):
        texts = [step.get("description", "")] + [v for v in (step.get("parameters") or {}).values()
                                                 if isinstance(v, str)]
        for text in texts:
            for m in REFERENCE.finditer(text):
                k = int(m.group(2))
                if not 1 <= k < n:
                    return f"step {n} refers to {m.group(0)}, which is not an earlier step"
    return None


def validate_plan(steps: Any) -> list[str]:
    """What is wrong with a plan (schema, known tools, references back, a final "none" step); [] if valid."""
    if not isinstance(steps, list):
        return ["a plan is a JSON array of steps"]
    _, error = check_steps(steps)
    return [error] if error else []


def extract_plan(text: str) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The first valid plan array in `text`, or None and a message for the model."""
    decode_error = check_error = None
    for n, m in enumerate(_ARRAY_START.finditer(text)):
        if n >= _MAX_CANDIDATES:
            break
        try:
            value, _ = LENIENT_JSON.raw_decode(text, m.start())
        except json.JSONDecodeError as exc:
            decode_error = decode_error or f"the plan is not valid JSON ({exc.msg} at line {exc.lineno} " \
                                           f"column {exc.colno})"
            continue
        except (ValueError, RecursionError):
            decode_error = decode_error or "the plan is not valid JSON"
            continue
        if isinstance(value, list):
            steps, error = check_steps(value)
            if steps is not None:
                return steps, None
            check_error = check_error or error
    error = check_error or decode_error or "no JSON array of steps found"
    return None, f"{error}; reply with only the JSON array, like {EXAMPLE}"


_LIST_ITEM = re.compile(r"^\s*(?:step\s*)?(\d+)\s*[.):]\s+(\S.*)$", re.I | re.M)


def numbered_plan(text: str) -> list[dict[str, Any]] | None:
    """A plan written as a numbered list (as the R1V4 report's figure shows it): each item a step
    with its text as the description, `tool_name` named when the item names exactly one tool."""
    items = [m.group(2).strip() for m in _LIST_ITEM.finditer(text)]
    numbers = [int(m.group(1)) for m in _LIST_ITEM.finditer(text)]
    if len(items) < 2 or numbers != list(range(1, len(items) + 1)):
        return None
    steps = []
    for item in items:
        named = [t for t in PLAN_TOOLS if t != "none" and t in item]
        steps.append({"description": item, "tool_name": named[0] if len(named) == 1 else "none", "parameters": {}})
    return steps


class PlanParser(Parser):
    """Think and free text as in the tag dialects; the plan segment is added at the end of the stream."""

    def __init__(self) -> None:
        self._inner = TagParser([Tag("think", "think")])
        self._raw: list[str] = []
        self._extra: list[Segment] = []

    def _watch(self, events: list[SegmentEvent]) -> list[SegmentEvent]:
        self._raw.extend(ev.text for ev in events if ev.kind == "text" and ev.type == "delta")
        return events

    def feed(self, chunk: str | bytes) -> list[SegmentEvent]:
        return self._watch(self._inner.feed(chunk))

    def finish(self) -> list[SegmentEvent]:
        if self._extra:
            return []
        events = self._watch(self._inner.finish())
        raw = "".join(self._raw)
        steps, error = extract_plan(raw)
        note = ""
        if steps is None and (listed := numbered_plan(raw)) is not None:
            steps, note = listed, "a plan written as a numbered list; each item read as a step's description"
        if steps is not None:
            note = "; ".join(n for n in (note, count_note(len(steps))) if n)
            seg = Segment("plan", json.dumps(steps, ensure_ascii=False), note=note)
        else:
            seg = Segment("plan_error", error or "", ToolCall("plan", {}, raw=raw, error=error))
        self._extra.append(seg)
        return [*events, SegmentEvent(seg.kind, "open"), SegmentEvent(seg.kind, "close", segment=seg)]

    def close_for_stop(self) -> str:
        return self._inner.close_for_stop()

    @property
    def segments(self) -> list[Segment]:
        return self._inner.segments + self._extra

    @property
    def open_kind(self) -> str | None:
        return self._inner.open_kind


class PlanDialect(Dialect):
    """Plan mode's reply format. Feedback on an invalid plan goes back as a user message."""

    name = "plan"
    stop: list[str] = []
    answer_kind = "plan"
    tag_names = ("think", "answer")  # a plan is JSON; thinking and an <answer> wrapper are tolerated around it

    def parser(self) -> Parser:
        return PlanParser()

    def system_prompt(self, mode: str, tools: Sequence[dict[str, Any]]) -> str:
        prompts.check_mode(mode)
        if mode != "plan":
            raise UsageError(f"the plan dialect writes plans only; use mode 'plan', or dialect 'r1v4' for {mode!r}")
        return prompts.PLAN_PROMPT

    def render_observation(self, call: ToolCall, observation: Observation) -> list[dict[str, Any]]:
        return [text_part(result_text(observation))]

    def add_step(self, ctx: Context, step: Step) -> None:
        if isinstance(step, ModelStep):
            ctx.model(step.text)
        elif isinstance(step, ToolStep):
            ctx.user(self.render_observation(step.call, step.observation))
        elif isinstance(step, NoteStep):
            ctx.note(step.text, step.reason, step.images)
