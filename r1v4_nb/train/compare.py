"""Before / after: the base and the tuned model run on the same held-out tasks, side by side.

A task is a question with its input images and, when known, the gold answer;
held-out trajectories work as tasks too (their header has all three). Both
models get fresh tools of the same kind, and both runs are ordinary
trajectories, so any view of a run (the debugger's side-by-side view in a
notebook, `r1v4-nb show` in a terminal) can show them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..images import Image
from ..trajectory import Trajectory, input_image
from .filters import answer_matches


@dataclass
class Task:
    question: str
    images: list[Image] = field(default_factory=list)
    gold: str | None = None
    name: str = ""

    @classmethod
    def from_trajectory(cls, traj: Trajectory) -> Task:
        h = traj.header
        return cls(h.question, list(h.images), h.meta.get("gold"), str(h.meta.get("task") or h.id))


@dataclass
class Pair:
    task: Task
    base: Any  # RunResult
    tuned: Any  # RunResult

    def correct(self) -> tuple[bool | None, bool | None]:
        if self.task.gold is None:
            return None, None
        return (answer_matches(self.base.answer, self.task.gold), answer_matches(self.tuned.answer, self.task.gold))


def _task(x: Any) -> Task:
    if isinstance(x, Task):
        return x
    if isinstance(x, Trajectory):
        return Task.from_trajectory(x)
    if isinstance(x, str):
        return Task(x)
    question, images = x[0], x[1] if len(x) > 1 else []
    return Task(question, [im if isinstance(im, Image) else input_image(im) for im in images],
                x[2] if len(x) > 2 else None)


def before_after(
    base: Any,
    tuned: Any,
    tasks: Sequence[Any],
    *,
    tools: Callable[[], list[Any]] | None = None,
    dialect: str = "r1v4",
    mode: str = "general",
    budgets: Any = None,
    runs_dir: str | Path = "runs/compare",
    system_prompt: str | None = None,
) -> list[Pair]:
    """Run `base` and `tuned` (Model backends) on each task; `tools()` makes a fresh tool list per run."""
    from ..agent import Agent, Budgets
    from ..models.base import GenerationSettings

    budgets = budgets or Budgets(max_steps=4, max_tool_calls=3, max_tokens_per_turn=128)
    settings = GenerationSettings(temperature=0.0, max_tokens=budgets.max_tokens_per_turn, seed=0)
    out = []
    for k, t in enumerate(_task(x) for x in tasks):
        results = []
        for label, model in (("base", base), ("tuned", tuned)):
            agent = Agent(model, tools=tools() if tools else None, dialect=dialect, mode=mode, budgets=budgets,
                          settings=settings, system_prompt=system_prompt, runs_dir=runs_dir)
            path = Path(runs_dir) / f"{k:03d}-{label}.jsonl"
            results.append(agent.ask(t.question, images=t.images, out=path))
        out.append(Pair(t, results[0], results[1]))
    return out


def summary(pairs: Sequence[Pair]) -> str:
    """One line per task: the two answers and whether each matches the gold answer."""
    def mark(ok: bool | None) -> str:
        return "" if ok is None else (" ✓" if ok else " ✗")

    lines = []
    for p in pairs:
        b, t = p.correct()
        lines.append(f"{p.task.name or p.task.question[:40]}: base {p.base.answer!r}{mark(b)} | "
                     f"tuned {p.tuned.answer!r}{mark(t)}" + (f" | gold {p.task.gold!r}" if p.task.gold else ""))
    return "\n".join(lines)
