"""Which trajectories are worth training on, and what a data set looks like before training.

R1V4's report trains on clean trajectories only: a correct final answer, no
tool errors, no repeated crops. `select` applies those rules and says why each
dropped run was dropped; `stats` gives the table to read before a run (counts,
lengths, tools used, images per example). The full curation filters (format,
step consistency, judges) are r1v4_nb.data.filters, whose checks `select` shares;
a config's `filters` list applies them too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..data.filters import recrops, tool_errors
from ..errors import UsageError
from ..eval.scoring import normalise
from ..records import ToolStep
from ..trajectory import Trajectory

Judge = Callable[[str, str], bool]
MATCHES = ("exact", "normalised")
__all__ = ["MATCHES", "Selection", "Stats", "answer_matches", "normalise", "recrops", "select", "stats", "tool_errors"]


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
