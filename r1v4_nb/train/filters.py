"""Which trajectories are worth training on, and what a data set looks like before training.

R1V4's report trains on clean trajectories only: a correct final answer, no
tool errors, no repeated crops. `select` applies those rules and says why each
dropped run was dropped; `stats` gives the table to read before a run (counts,
lengths, tools used, images per example).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..records import ToolStep
from ..trajectory import Trajectory

Judge = Callable[[str, str], bool]
MATCHES = ("exact", "normalised")


def normalise(text: str) -> str:
    """Lower case, accents and punctuation removed, articles dropped, spaces collapsed."""
    t = unicodedata.normalize("NFKD", text)
    t = "".join(c for c in t if not unicodedata.combining(c)).lower()
    t = re.sub(r"[^\w\s]", " ", t)
    t = re.sub(r"\b(a|an|the)\b", " ", t)
    return " ".join(t.split())


def answer_matches(answer: str | None, gold: str | Sequence[str], match: str | Judge = "normalised") -> bool:
    """Whether `answer` agrees with the gold answer (or any of several): exact, normalised, or a judge."""
    if answer is None:
        return False
    golds = [gold] if isinstance(gold, str) else list(gold)
    if callable(match):
        return any(match(answer, g) for g in golds)
    if match == "exact":
        return any(answer.strip() == g.strip() for g in golds)
    if match == "normalised":
        return any(normalise(answer) == normalise(g) for g in golds)
    raise UsageError(f"match={match!r}: use exact, normalised or a judge function (answer, gold) -> bool")


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


@dataclass
class Selection:
    kept: list[Trajectory]
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> trajectory names

    def summary(self) -> str:
        parts = [f"kept {len(self.kept)}"] + [f"{reason} {len(v)}" for reason, v in self.dropped.items() if v]
        return ", ".join(parts)


def select(
    trajectories: Sequence[Trajectory],
    *,
    require_correct: bool = True,
    gold: Mapping[str, str | Sequence[str]] | None = None,
    match: str | Judge = "normalised",
    drop_tool_errors: bool = True,
    drop_recrops: bool = True,
    require_answer: bool = True,
) -> Selection:
    """Keep the clean runs. Gold answers come from `gold` (by trajectory id or meta["task"]) or meta["gold"]."""
    sel = Selection([], {"no_answer": [], "no_gold": [], "wrong": [], "tool_error": [], "recrop": []})
    for t in trajectories:
        name = str(t.path or t.header.id)
        answer = t.answer
        if require_answer and answer is None:
            sel.dropped["no_answer"].append(name)
            continue
        if require_correct:
            g = _gold(t, gold)
            if g is None:
                sel.dropped["no_gold"].append(name)
                continue
            if not answer_matches(answer, g, match):
                sel.dropped["wrong"].append(name)
                continue
        if drop_tool_errors and tool_errors(t):
            sel.dropped["tool_error"].append(name)
            continue
        if drop_recrops and recrops(t):
            sel.dropped["recrop"].append(name)
            continue
        sel.kept.append(t)
    return sel


def _gold(t: Trajectory, gold: Mapping[str, Any] | None) -> Any:
    if gold is not None:
        for key in (t.header.id, t.header.meta.get("task"), str(t.path) if t.path else None):
            if key is not None and key in gold:
                return gold[key]
    return t.header.meta.get("gold")


@dataclass
class Stats:
    """Numbers about a data set; `table()` is the plain-text view."""

    rows: list[tuple[str, str]]

    def table(self) -> str:
        w = max(len(k) for k, _ in self.rows)
        return "\n".join(f"{k.ljust(w)}  {v}" for k, v in self.rows)

    def as_dict(self) -> dict[str, str]:
        return dict(self.rows)


def _dist(values: Sequence[int]) -> str:
    if not values:
        return "-"
    v = sorted(values)
    return f"min {v[0]}  median {v[len(v) // 2]}  mean {sum(v) / len(v):.1f}  max {v[-1]}"


def stats(trajectories: Sequence[Trajectory], examples: Sequence[Any] = (), selection: Selection | None = None) -> Stats:
    """Counts, lengths, tools used and images per example of a data set (examples add token lengths)."""
    rows: list[tuple[str, str]] = [("trajectories", str(len(trajectories)))]
    if selection is not None:
        rows.append(("selection", selection.summary()))
    tools = Counter(s.call.name for t in trajectories for s in t.steps if isinstance(s, ToolStep))
    rows.append(("model turns", _dist([len(t.model_steps) for t in trajectories])))
    rows.append(("tool calls", _dist([len(t.tool_steps) for t in trajectories])))
    rows.append(("tools used", ", ".join(f"{k} {v}" for k, v in tools.most_common()) or "-"))
    rows.append(("images / trajectory", _dist([len(t.header.images) + sum(len(s.observation.images)
                                                                           for s in t.tool_steps)
                                               for t in trajectories])))
    rows.append(("characters", _dist([sum(len(s.text) for s in t.model_steps) for t in trajectories])))
    if examples:
        rows.append(("examples", str(len(examples))))
        rows.append(("tokens / example", _dist([e.length for e in examples])))
        rows.append(("loss tokens / example", _dist([e.loss_tokens for e in examples])))
        rows.append(("image tokens / example", _dist([sum(e.image_tokens) for e in examples])))
        rows.append(("images / example", _dist([e.n_images for e in examples])))
        total = sum(e.length for e in examples)
        rows.append(("tokens in loss", f"{sum(e.loss_tokens for e in examples)} of {total}"))
        rows.append(("cut (over-long)", str(sum(1 for e in examples if e.cut))))
    return Stats(rows)
