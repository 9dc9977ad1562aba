"""Plan extraction: a validated trajectory becomes a Plan-mode training example.

Each search step of the run (image_search, text_search, web_visit; one step per image, query or URL)
becomes a plan step whose description is the last sentence of the thinking that led to it. A value the run learned from
an earlier step's result (a URL listed by a search, a name read on a page and not in the question)
becomes a reference, `[URL from Step 2]`, `[Kelmir from Step 1]`. The plan ends with a `none` step that
checks the findings. The plan dialect's own validator (`dialects.plan.validate_plan`) checks the result,
so an extracted plan is exactly what the plan dialect accepts at run time.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..dialects import get_dialect
from ..dialects.plan import validate_plan
from ..prompts import PLAN_PROMPT
from ..records import ModelStep, ToolStep
from ..trajectory import End, Header, Trajectory, write

CHECK_STEP = "Check that the findings answer the question for this image"
_NAME = re.compile(r"[A-Z][\w'’-]+(?:\s+(?:of\s+|the\s+)?[A-Z][\w'’-]+)*")
_MAX_DESCRIPTION = 200


def _thinking_before(traj: Trajectory, index: int) -> str:
    """The thinking of the model turn that issued the call at step `index`."""
    for s in reversed(traj.steps[:index]):
        if isinstance(s, ModelStep):
            return " ".join(seg.text.strip() for seg in s.segments if seg.kind == "think").strip()
    return ""


def _intent(text: str) -> str:
    """The last sentence of the thinking before a call: where a model says what it will do next."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if s]
    t = sentences[-1] if sentences else ""
    return t if len(t) <= _MAX_DESCRIPTION else t[: _MAX_DESCRIPTION - 1].rstrip() + "…"


def _items(step: ToolStep) -> list[tuple[str, str, str]]:
    """(plan tool, parameter key, value) for each image, query or URL of a search call."""
    a = step.call.arguments
    if step.call.name == "image_search":
        paths = a.get("image_paths") or ([a["image_path"]] if a.get("image_path") else [])
        return [("image_search", "image_path", str(p)) for p in paths]
    if step.call.name == "text_search":
        queries = a.get("queries") or ([a["query"]] if a.get("query") else [])
        return [("text_search", "query", str(q)) for q in queries]
    if step.call.name == "web_visit":
        urls = a.get("urls") or ([a["url"]] if a.get("url") else [])
        return [("web_visit", "url", str(u)) for u in urls]
    return []


def extract_plan(traj: Trajectory) -> tuple[list[dict[str, Any]] | None, str]:
    """The plan a trajectory followed, or None and why it has none."""
    question = traj.header.question.casefold()
    inputs = {f"image_{n}" for n in range(1, len(traj.header.images) + 1)}
    steps: list[dict[str, Any]] = []
    seen_text: list[str] = []  # the observation text behind each plan step so far
    for s in traj.tool_steps:
        items = _items(s)
        if not items or s.observation.error:
            continue
        why = _intent(_thinking_before(traj, s.index))
        for tool, key, value in items:
            if tool == "image_search" and value not in inputs:
                value, why_here = "image_1", (why or "Search by image") + " (on a crop of image_1)"
            else:
                why_here = why
            value = _reference(value, tool, question, seen_text)
            desc = why_here or {"image_search": "Find what the image shows by searching with it",
                                "text_search": f"Search the web for {value}",
                                "web_visit": "Read the page"}[tool]
            steps.append({"description": desc, "tool_name": tool, "parameters": {key: value}})
            seen_text.append(s.observation.text)
    if not steps:
        return None, "no successful search step to plan"
    steps.append({"description": CHECK_STEP, "tool_name": "none", "parameters": {}})
    if len(steps) > 10:
        return None, f"{len(steps)} steps; a plan has at most 10"
    problems = validate_plan(steps)
    if problems:
        return None, problems[0]
    return steps, "ok"


def _reference(value: str, tool: str, question: str, seen: list[str]) -> str:
    """A value that an earlier step's result supplied becomes `[... from Step k]`."""
    if tool == "web_visit":
        for k, text in enumerate(seen, start=1):
            if value in text:
                return f"[URL from Step {k}]"
        return value
    if tool != "text_search":
        return value
    out = value
    for m in _NAME.finditer(value):
        phrase = m.group(0)
        if phrase.casefold() in question or len(phrase) < 3:
            continue
        for k, text in enumerate(seen, start=1):
            if phrase in text:
                out = out.replace(phrase, f"[{phrase} from Step {k}]", 1)
                break
    return out


def plan_example(traj: Trajectory, plan: list[dict[str, Any]]) -> Trajectory:
    """A Plan-mode trajectory: the question and images of `traj`, one model turn that writes `plan`."""
    text = json.dumps(plan, ensure_ascii=False)
    segments = get_dialect("plan").parse(text)
    h = traj.header
    header = Header(question=h.question, images=list(h.images), model={"name": "plan extraction",
                                                                        "source_model": h.model.get("name")},
                    dialect="plan", mode="plan", system_prompt=PLAN_PROMPT, tools=[], settings={},
                    meta={**h.meta, "plan_of": h.id})
    step = ModelStep(0, text, segments, tokens_out=len(text.split()))
    return Trajectory(header, [step], End("answered", segments[-1].text, 0.0, {}), None)


def write_plan_example(traj: Trajectory, out: str | Path) -> tuple[Path | None, str]:
    """Extract, validate and write the plan example of `traj` to `out`; (None, why) when there is none."""
    plan, why = extract_plan(traj)
    if plan is None:
        return None, why
    return write(out, plan_example(traj, plan)), "ok"


__all__ = ["CHECK_STEP", "extract_plan", "plan_example", "write_plan_example"]
