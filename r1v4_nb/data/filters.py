"""Curation filters: which teacher trajectories are clean enough to train on, and why the rest were dropped.

R1V4's report keeps a trajectory only if it passes format, answer and step-consistency checks. Each
filter here looks at one trajectory and returns the reason to drop it (or None); `apply_filters`
runs them as a funnel and returns the survivors with a table of how many each filter dropped and why.

- `format`: every action (call, code, answer) is preceded by thinking in its turn, every call parses,
  the run ends in an answer, and the model never writes an observation itself;
- `answer`: the final answer is right by the eval scorers (gold from the tasks or `meta.gold`);
- `tool_errors`: no tool call failed;
- `repeats`: no re-crop (the same code, image or box again) and no loop (the same call or turn twice);
- `length`: at most so many turns, tool calls or generated tokens;
- `consistency`: cheap step checks that need no judge: a produced image that is blank or uniform, a
  crop box outside its source image, a produced image the next thinking never refers to;
- `consistency_judge`: a VLM judge (any OpenAI-compatible endpoint) is shown each produced image with the
  thinking that follows it and says whether the thinking is faithful to it; verdicts are cached.

`parse_filters(["format", "length:max_turns=8"])` builds them from the strings a training config holds.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..records import ModelStep, ToolStep
from ..trajectory import Trajectory

ACTIONS = ("tool_call", "code", "answer", "plan")
# Words with which thinking refers to an image it was just shown.
LOOK_WORDS = ("image", "crop", "zoom", "see", "shows", "showing", "visible", "read", "look", "picture", "enlarged",
              "closer", "reveals", "appears", "view", "magnif")


def _name(t: Trajectory) -> str:
    return str(t.path or t.header.id)


def tool_errors(traj: Trajectory) -> int:
    """Tool calls that failed or could not be run."""
    return sum(1 for s in traj.steps if isinstance(s, ToolStep) and (s.observation.error or s.call.error))


def _iou(a: Sequence[int], b: Sequence[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def recrops(traj: Trajectory, iou: float = 0.9) -> int:
    """Code calls that repeat an earlier one: the same code, the same produced image, or the same box again."""
    seen_code: set[str] = set()
    seen_images: set[str] = set()
    boxes: list[tuple[str | None, list[int]]] = []
    count = 0
    for s in traj.steps:
        if not isinstance(s, ToolStep) or s.call.name != "code":
            continue
        code = str(s.call.arguments.get("code", "")).strip()
        repeat = bool(code) and code in seen_code
        seen_code.add(code)
        for im in s.observation.images:
            if im.sha256 in seen_images:
                repeat = True
            seen_images.add(im.sha256)
            box = im.provenance.box
            if box and len(box) == 4:
                if any(src == im.provenance.source and _iou(box, b) >= iou for src, b in boxes):
                    repeat = True
                boxes.append((im.provenance.source, list(box)))
        count += repeat
    return count


class Filter(ABC):
    """One curation rule: `reason(traj)` says why to drop a trajectory, or None to keep it."""

    name = "filter"

    @abstractmethod
    def reason(self, traj: Trajectory) -> str | None:
        """Why `traj` is dropped, or None to keep it."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


class FormatFilter(Filter):
    name = "format"

    def reason(self, traj: Trajectory) -> str | None:
        for step in traj.model_steps:
            thought = False
            for seg in step.segments:
                if seg.kind == "observation":
                    return f"step {step.index}: the model wrote an observation itself"
                if seg.kind == "think" and seg.text.strip():
                    thought = True
                if seg.kind in ACTIONS or seg.call is not None:
                    if not thought:
                        return f"step {step.index}: {seg.kind} without thinking before it"
                    if seg.call is not None and seg.call.error:
                        return f"step {step.index}: a call that does not parse ({seg.call.error[:80]})"
            if "<observation>" in step.text:
                return f"step {step.index}: the model wrote an observation itself"
        if traj.answer is None or (traj.end is not None and traj.end.reason != "answered"):
            return "does not end in an answer" + (f" (ended: {traj.end.reason})" if traj.end else " (no end record)")
        return None


class AnswerFilter(Filter):
    """Right by the eval scorers; gold answers from `tasks` (by meta.task or id) or the header's meta.gold."""

    name = "answer"

    def __init__(self, tasks: Any = None, scorer: str = "auto", judge: Any = None):
        self.tasks = {t.id: t for t in tasks} if tasks is not None else {}
        self.scorer = scorer
        self.judge = judge

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "scorer": self.scorer, "judge": self.judge.describe() if self.judge else None}

    def reason(self, traj: Trajectory) -> str | None:
        from ..eval.scoring import score_answer
        from ..eval.tasks import Task

        meta = traj.header.meta
        task = self.tasks.get(str(meta.get("task") or traj.header.id))
        if task is None:
            gold = meta.get("gold")
            if not gold:
                return "no gold answer (give tasks, or meta.gold in the trajectory)"
            golds = [gold] if isinstance(gold, str) else [str(g) for g in gold]
            task = Task(str(meta.get("task") or traj.header.id), traj.header.question, answers=golds,
                        choices=dict(meta.get("choices") or {}))
        s = score_answer(traj.answer, task, self.scorer, self.judge)
        return None if s.correct else f"wrong answer ({s.reason})"


class ToolErrorFilter(Filter):
    name = "tool_errors"

    def reason(self, traj: Trajectory) -> str | None:
        for s in traj.tool_steps:
            if s.observation.error or s.call.error:
                return f"step {s.index}: {s.call.name} failed ({(s.observation.error or s.call.error or '')[:80]})"
        return None


class RepeatFilter(Filter):
    """Re-crops and loops: the same code, image or box again; the same call or the same turn twice."""

    name = "repeats"

    def __init__(self, iou: float = 0.9):
        self.iou = iou

    def reason(self, traj: Trajectory) -> str | None:
        if recrops(traj, self.iou):
            return "re-crop (the same code, image or box again)"
        calls: set[str] = set()
        for s in traj.tool_steps:
            key = json.dumps([s.call.name, s.call.arguments], sort_keys=True, ensure_ascii=False)
            if key in calls:
                return f"loop: step {s.index} repeats an earlier {s.call.name} call"
            calls.add(key)
        turns: set[str] = set()
        for m in traj.model_steps:
            text = " ".join(m.text.split())
            if text and text in turns:
                return f"loop: step {m.index} repeats an earlier turn"
            turns.add(text)
        return None


class LengthFilter(Filter):
    name = "length"

    def __init__(self, max_turns: int | None = None, max_tool_calls: int | None = None,
                 max_tokens: int | None = None):
        self.max_turns, self.max_tool_calls, self.max_tokens = max_turns, max_tool_calls, max_tokens

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "max_turns": self.max_turns, "max_tool_calls": self.max_tool_calls,
                "max_tokens": self.max_tokens}

    def reason(self, traj: Trajectory) -> str | None:
        turns, calls = len(traj.model_steps), len(traj.tool_steps)
        tokens = sum(s.tokens_out for s in traj.model_steps)
        if self.max_turns is not None and turns > self.max_turns:
            return f"{turns} turns > {self.max_turns}"
        if self.max_tool_calls is not None and calls > self.max_tool_calls:
            return f"{calls} tool calls > {self.max_tool_calls}"
        if self.max_tokens is not None and tokens > self.max_tokens:
            return f"{tokens} generated tokens > {self.max_tokens}"
        return None


def _produced(traj: Trajectory) -> list[tuple[ToolStep, Any, ModelStep | None]]:
    """(tool step, image it produced, the model turn right after it) for every image made by code."""
    out = []
    steps = traj.steps
    for n, s in enumerate(steps):
        if not isinstance(s, ToolStep):
            continue
        after = next((x for x in steps[n + 1:] if isinstance(x, ModelStep)), None)
        for im in s.observation.images:
            if im.provenance.kind == "code":
                out.append((s, im, after))
    return out


def _thinking(step: ModelStep | None) -> str:
    if step is None:
        return ""
    return " ".join(seg.text for seg in step.segments if seg.kind == "think") or step.text


class ConsistencyFilter(Filter):
    """Cheap step-consistency checks on produced images (no judge)."""

    name = "consistency"

    def __init__(self, min_std: float = 2.0):
        self.min_std = min_std

    def reason(self, traj: Trajectory) -> str | None:
        from PIL import Image as PILImage
        from PIL import ImageStat

        sources = {im.sha256: im for im in traj.all_images()}
        for step, im, after in _produced(traj):
            try:
                with PILImage.open(im.path) as pil:
                    std = max(ImageStat.Stat(pil.convert("RGB")).stddev)
            except OSError:
                return f"step {step.index}: produced image {im.path.name} does not open"
            if std < self.min_std:
                return f"step {step.index}: blank or uniform image ({im.provenance.name or im.path.name})"
            box, src = im.provenance.box, sources.get(im.provenance.source or "")
            if box and len(box) == 4 and src is not None:
                x0, y0, x1, y1 = box
                if x1 <= x0 or y1 <= y0 or x0 < 0 or y0 < 0 or x1 > src.width or y1 > src.height:
                    return f"step {step.index}: crop box {box} outside its {src.width}x{src.height} source"
            think = _thinking(after).casefold()
            names = [n.casefold() for n in (im.provenance.name, im.path.stem) if n]
            if not any(w in think for w in LOOK_WORDS) and not any(_stem(n) in think for n in names):
                return f"step {step.index}: the next thinking never refers to the produced image"
        return None


def _stem(name: str) -> str:
    """The stem of a file name the model printed (crop_1.png -> crop_1)."""
    return re.sub(r"\.[a-z0-9]+$", "", name.rsplit("/", 1)[-1])


JUDGE_CONSISTENCY = ("Below is an image produced while answering a question, and the reasoning written right "
                     "after looking at it. Is the reasoning faithful to what the image shows (it describes or "
                     "reads only what is really there)? Reply with one word: YES or NO.\n\nQuestion: {question}"
                     "\n\nReasoning after the image: {thinking}")


class ConsistencyJudgeFilter(Filter):
    """A VLM judge over an OpenAI-compatible endpoint checks each produced image against the thinking after it."""

    name = "consistency_judge"

    def __init__(self, endpoint: str, model: str | None = None, cache: Any = None, cache_mode: str | None = None):
        from ..models.openai import OpenAIModel
        from ..tools.cache import open_cache

        self.client = OpenAIModel(endpoint, model=model, retries=2)
        self.model = model or ""
        self.cache = open_cache(cache, cache_mode)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "endpoint": self.client.endpoint, "model": self.model, **self.cache.settings()}

    def reason(self, traj: Trajectory) -> str | None:
        from ..models.base import GenerationSettings

        for step, im, after in _produced(traj):
            thinking = _thinking(after).strip()
            args = {"image": im.sha256, "thinking": thinking, "question": traj.header.question, "model": self.model}

            def ask(im: Any = im, thinking: str = thinking) -> dict[str, Any]:
                messages = [{"role": "user", "content": [
                    {"type": "image", "image": str(im.path)},
                    {"type": "text", "text": JUDGE_CONSISTENCY.format(question=traj.header.question,
                                                                       thinking=thinking or "(none)")}]}]
                self.client.complete(messages, settings=GenerationSettings(temperature=0.0, max_tokens=8, seed=0))
                return {"reply": self.client.last_raw}

            reply = str(self.cache.fetch("consistency_judge", self.client.endpoint, args, ask).get("reply", ""))
            word = re.match(r"\W*(\w+)", reply)
            if not word or word.group(1).upper() != "YES":
                return f"step {step.index}: the judge finds the thinking unfaithful to the image ({reply.strip()[:30]!r})"
        return None


@dataclass
class FilterReport:
    """The survivors, the funnel table (one row per filter) and every drop with its reason."""

    kept: list[Trajectory]
    table: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{r['filter']} -{r['dropped']}" for r in self.table]
        return f"kept {len(self.kept)} of {self.table[0]['in'] if self.table else len(self.kept)}" + (
            " (" + ", ".join(parts) + ")" if parts else "")

    def markdown(self) -> str:
        lines = ["| filter | in | dropped | kept | why |", "| --- | ---: | ---: | ---: | --- |"]
        for r in self.table:
            why = "; ".join(f"{k} ({v})" for k, v in r["reasons"].items()) or "-"
            lines.append(f"| {r['filter']} | {r['in']} | {r['dropped']} | {r['in'] - r['dropped']} | {why} |")
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {"kept": [_name(t) for t in self.kept], "table": self.table, "dropped": self.dropped}


def _reason_head(reason: str) -> str:
    """A reason without its step number and details, for counting ('step 3: x (y)' -> 'x')."""
    r = re.sub(r"^step \d+: ", "", reason)
    return re.sub(r"\s*\(.*\)$", "", r).strip()


def apply_filters(trajectories: Sequence[Trajectory], filters: Sequence[Filter]) -> FilterReport:
    """Run the filters in order, each on what the previous ones kept."""
    current = list(trajectories)
    report = FilterReport([])
    for f in filters:
        kept, reasons = [], Counter()
        for t in current:
            why = f.reason(t)
            if why is None:
                kept.append(t)
            else:
                reasons[_reason_head(why)] += 1
                report.dropped.append({"trajectory": _name(t), "filter": f.name, "reason": why})
        report.table.append({"filter": f.name, "in": len(current), "dropped": len(current) - len(kept),
                             "reasons": dict(reasons.most_common()), "settings": f.describe()})
        current = kept
    report.kept = current
    return report


FILTERS = {"format": FormatFilter, "answer": AnswerFilter, "tool_errors": ToolErrorFilter, "repeats": RepeatFilter,
           "length": LengthFilter, "consistency": ConsistencyFilter, "consistency_judge": ConsistencyJudgeFilter}
DEFAULT_FILTERS = ("format", "answer", "tool_errors", "repeats", "consistency")


def parse_filters(specs: Sequence[str | Filter], tasks: Any = None, judge: Any = None) -> list[Filter]:
    """Filters from strings: 'format', 'length:max_turns=8,max_tokens=4000', 'consistency_judge:endpoint=URL'."""
    out: list[Filter] = []
    for spec in specs:
        if isinstance(spec, Filter):
            out.append(spec)
            continue
        name, _, rest = str(spec).partition(":")
        name = name.strip().replace("-", "_")
        if name not in FILTERS:
            raise UsageError(f"unknown filter {name!r}; choose from: {', '.join(FILTERS)}")
        kw: dict[str, Any] = {}
        for item in filter(None, (x.strip() for x in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq:
                raise UsageError(f"filter {spec!r}: write settings as key=value")
            kw[key.strip()] = int(value) if re.fullmatch(r"-?\d+", value.strip()) else (
                float(value) if re.fullmatch(r"-?\d+\.\d*", value.strip()) else value.strip())
        if name == "answer":
            kw.setdefault("tasks", tasks)
            kw.setdefault("judge", judge)
        try:
            out.append(FILTERS[name](**kw))
        except TypeError as exc:
            raise UsageError(f"filter {spec!r}: {exc}") from None
    return out


__all__ = ["DEFAULT_FILTERS", "FILTERS", "AnswerFilter", "ConsistencyFilter", "ConsistencyJudgeFilter", "Filter",
           "FilterReport", "FormatFilter", "LengthFilter", "RepeatFilter", "ToolErrorFilter", "apply_filters",
           "parse_filters", "recrops", "tool_errors"]
