"""Two runs step by step: identical steps collapsed, the first divergence marked, the rest side by side.

Used by `debugger.compare` (a branch beside its original) and by the before / after view of a training
run. The result is static HTML (no widget), so a saved notebook shows it as it was, with or without a kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..records import ModelStep, NoteStep, Step, ToolStep
from ..trajectory import Trajectory
from .cards import RunState
from .cardtypes import STEP_CARDS, EndCard, ErrorCard
from .render import CSS, render_card
from .sanitize import esc

__all__ = ["COMPARE_CSS", "BeforeAfter", "Comparison", "render_comparison", "same_step"]

COMPARE_CSS = """
.r1v4-cmp{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:0 10px;max-width:1100px}
.r1v4-cmp>*{min-width:0}
.r1v4-cmp .r1v4-thumb{max-width:100%;height:auto}
.r1v4-cmp-col{font-weight:600;font-size:13px;padding:4px 8px;border-radius:6px;
  background:var(--jp-layout-color2,#f3f4f6);overflow-wrap:anywhere}
.r1v4-cmp-col .r1v4-foot{font-weight:400}
.r1v4-cmp-wide{grid-column:1/-1}
.r1v4-cmp-same{border:1px dashed var(--jp-border-color2,#d0d7de);border-radius:6px;padding:4px 10px;margin:6px 0;
  color:var(--jp-ui-font-color2,#57606a)}
.r1v4-cmp-same summary{cursor:pointer}
.r1v4-cmp-diverge{border-top:2px solid #dc2626;margin-top:8px;padding-top:4px;color:#991b1b;font-weight:600}
.r1v4-cmp-diff>.r1v4-card{box-shadow:inset 3px 0 0 #dc2626}
.r1v4-cmp-none{color:var(--jp-ui-font-color2,#57606a);font-style:italic;padding:8px}
.r1v4-cmp-answers{display:flex;gap:14px;flex-wrap:wrap;margin:4px 0 6px 0}
"""


def same_step(a: Step | None, b: Step | None) -> bool:
    """Whether two steps did the same thing: the same model text, tool call and observation, or note."""
    if a is None or b is None or type(a) is not type(b):
        return False
    if isinstance(a, ModelStep) and isinstance(b, ModelStep):
        return a.text == b.text
    if isinstance(a, ToolStep) and isinstance(b, ToolStep):
        return (a.call.name == b.call.name and a.call.arguments == b.call.arguments
                and a.observation.text == b.observation.text
                and [im.sha256 for im in a.observation.images] == [im.sha256 for im in b.observation.images])
    if isinstance(a, NoteStep) and isinstance(b, NoteStep):
        return a.text == b.text
    return False


def _cards_by_step(state: RunState) -> dict[int, int]:
    return {card.index: c for c, card in enumerate(state.cards) if isinstance(card, STEP_CARDS)}


def _card(state: RunState, by_step: dict[int, int], index: int) -> str:
    c = by_step.get(index)
    if c is None:
        return f'<div class="r1v4-cmp-none">no step {index} in this run</div>'
    return render_card(state.cards[c], c, state.images)


def _end(state: RunState) -> str:
    ends = [c for c, card in enumerate(state.cards) if isinstance(card, (EndCard, ErrorCard))]
    return "".join(render_card(state.cards[c], c, state.images) for c in ends)


def _column_head(title: str, traj: Trajectory) -> str:
    path = f'<div class="r1v4-foot">{esc(traj.path)}</div>' if traj.path else ""
    return f'<div class="r1v4-cmp-col">{esc(title)}{path}</div>'


def render_comparison(left: Trajectory, right: Trajectory, titles: tuple[str, str] = ("", "")) -> str:
    """The two runs as one HTML fragment: a column each, identical steps once, divergence marked."""
    ls, rs = RunState.from_trajectory(left), RunState.from_trajectory(right)
    lc, rc = _cards_by_step(ls), _cards_by_step(rs)
    lsteps = {s.index: s for s in left.steps}
    rsteps = {s.index: s for s in right.steps}
    names = (titles[0] or "Left", titles[1] or "Right")
    rows = [_column_head(names[0], left), _column_head(names[1], right)]
    answers = (f'<div class="r1v4-cmp-wide r1v4-cmp-answers"><span>{esc(names[0])}: <b>{esc(left.answer)}</b></span>'
               f'<span>{esc(names[1])}: <b>{esc(right.answer)}</b></span></div>')
    rows.append(answers)
    if left.header.question == right.header.question and [i.sha256 for i in left.header.images] == [
            i.sha256 for i in right.header.images] and left.header.parent is None and right.header.parent is None:
        rows.append(f'<div class="r1v4-cmp-wide">{render_card(ls.cards[0], 0, ls.images)}</div>')
    else:
        rows += [f"<div>{render_card(ls.cards[0], 0, ls.images)}</div>",
                 f"<div>{render_card(rs.cards[0], 0, rs.images)}</div>"]
    n = max([*lsteps, *rsteps], default=-1) + 1
    k = 0
    diverged = False
    while k < n:
        start = k
        while k < n and same_step(lsteps.get(k), rsteps.get(k)):
            k += 1
        if k > start:
            span = f"Step {start} is" if k - start == 1 else f"Steps {start} to {k - 1} are"
            cards = "".join(_card(ls, lc, i) for i in range(start, k))
            rows.append(f'<details class="r1v4-cmp-wide r1v4-cmp-same"><summary>{span} the same in both runs '
                        f'({k - start} step{"" if k - start == 1 else "s"}; click to show)</summary>{cards}</details>')
        if k >= n:
            break
        if not diverged:
            rows.append(f'<div class="r1v4-cmp-wide r1v4-cmp-diverge">The runs diverge here, at step {k}</div>')
            diverged = True
        rows += [f'<div class="r1v4-cmp-diff">{_card(ls, lc, k)}</div>',
                 f'<div class="r1v4-cmp-diff">{_card(rs, rc, k)}</div>']
        k += 1
    if not diverged:
        rows.append('<div class="r1v4-cmp-wide r1v4-cmp-same">Every step is the same in both runs.</div>')
    rows += [f"<div>{_end(ls)}</div>", f"<div>{_end(rs)}</div>"]
    return (f'<div class="r1v4-run r1v4-compare"><style>{CSS}{COMPARE_CSS}</style>'
            f'<div class="r1v4-cmp">{"".join(rows)}</div></div>')


@dataclass
class Comparison:
    """Two runs compared; shows as static HTML in a notebook (nothing to lose when the kernel goes)."""

    left: Trajectory
    right: Trajectory
    titles: tuple[str, str] = ("", "")

    @property
    def html(self) -> str:
        return render_comparison(self.left, self.right, self.titles)

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return f"<Comparison {self.left.path} | {self.right.path}>"



@dataclass
class BeforeAfter:
    """The before / after view of a training run: per task, the answers, then base and tuned step by step."""

    pairs: list[Any]  # r1v4_nb.train.compare.Pair

    @property
    def html(self) -> str:
        rows = []
        for p in self.pairs:
            b, t = p.correct()

            def mark(ok: bool | None) -> str:
                return "" if ok is None else (" ✓" if ok else " ✗")

            gold = f" · gold: <code>{esc(p.task.gold)}</code>" if p.task.gold else ""
            rows.append(f'<div class="r1v4-run"><div class="r1v4-pane-title">{esc(p.task.name or p.task.question[:60])}'
                        f"</div><div>base: <code>{esc(p.base.answer)}</code>{mark(b)} · tuned: "
                        f"<code>{esc(p.tuned.answer)}</code>{mark(t)}{gold}</div></div>")
            rows.append(render_comparison(p.base.trajectory, p.tuned.trajectory, ("Base model", "Tuned model")))
        return "".join(rows)

    def _repr_html_(self) -> str:
        return self.html
