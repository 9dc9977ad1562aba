"""The step-through debugger of a recorded run (`%r1v4 replay FILE`).

A step list with previous / next / slider / jump; for the selected step, the
exact context the model saw (rebuilt by the dialect: messages, images, token
counts) beside what the step produced (the same card the live view draws);
"fork here" edits the model's text or a tool's observation at that step and
continues into a new branch trajectory, shown side by side with the original.
"""

from __future__ import annotations

import uuid
import weakref
from pathlib import Path
from typing import Any

import ipywidgets as w

from ..dialects import get_dialect
from ..errors import UsageError
from ..images import Image
from ..records import ModelStep, NoteStep, Observation, Step, ToolStep
from ..trajectory import Trajectory, run_file
from .cards import RunState
from .cardtypes import STEP_CARDS
from .compare import Comparison
from .render import (
    CSS,
    hide_snapshot,
    render_card,
    render_context,
    render_header,
    render_run,
    snapshot,
)
from .sanitize import esc
from .session import Session, notebook_session


def step_label(step: Step) -> str:
    """A step as one line of the step list: what kind of step, and what it did."""
    if isinstance(step, ModelStep):
        if step.answer is not None:
            what = "answers"
        elif step.calls:
            what = "calls " + ", ".join(dict.fromkeys(c.name for c in step.calls))
        else:
            what = "writes " + (",".join(dict.fromkeys(s.kind for s in step.segments if s.text.strip())) or "nothing")
        return f"{step.index}: model {what}"
    if isinstance(step, ToolStep):
        return f"{step.index}: tool {step.call.name}" + (" (error)" if step.observation.error else "")
    return f"{step.index}: note {step.reason}"


def edit_hint(step: Step) -> str:
    """What editing this step's text changes, in words for the fork panel."""
    if isinstance(step, ModelStep):
        return "the model's text (tags included; re-parsed as the model's turn)"
    if isinstance(step, ToolStep):
        return f"what {step.call.name} returned: the observation text the model reads next"
    return "the note the model reads next"


def editable_text(step: Step) -> str:
    """What "fork here" lets you edit: the model's text, the observation's text, or the note."""
    if isinstance(step, ModelStep):
        return step.text
    if isinstance(step, ToolStep):
        return step.observation.text
    return step.text


def edited_step(step: Step, text: str, dialect: Any) -> Step:
    """A copy of `step` with its text replaced (segments re-parsed by the run's dialect)."""
    if isinstance(step, ModelStep):
        return ModelStep(step.index, text, dialect.parse(text), finish_reason="stop")
    if isinstance(step, ToolStep):
        obs = step.observation
        return ToolStep(step.index, step.call, Observation(text=text, images=list(obs.images),
                                                           limits_hit=list(obs.limits_hit)))
    return NoteStep(step.index, text, reason="edited")


def trajectory_images(traj: Trajectory) -> dict[str, Image]:
    """Every image of a run (inputs and tool outputs) by its file path, as the dialect puts it in messages."""
    found = {str(im.path): im for im in traj.header.images}
    for step in traj.steps:
        if isinstance(step, ToolStep):
            found.update((str(im.path), im) for im in step.observation.images)
        elif isinstance(step, NoteStep):
            found.update((str(im.path), im) for im in step.images)
    return found


def compare(left: Trajectory | Any, right: Trajectory | Any, titles: tuple[str, str] | None = None) -> Any:
    """Two runs step by step: identical steps collapsed, the first divergence marked, the rest side by side.

    Each side is a trajectory, a path or a finished LiveRun; the result is static HTML (a `Comparison`), so
    a saved notebook keeps it. A live RunView (a branch still running) is drawn beside the other run instead.
    """
    from .runner import trajectory_of
    from .widget import RunView

    names = titles or ("", "")
    if isinstance(left, RunView) or isinstance(right, RunView):
        return w.HBox([_pane(left, names[0]), _pane(right, names[1])],
                      layout=w.Layout(width="100%", align_items="flex-start", grid_gap="10px"))
    return Comparison(trajectory_of(left), trajectory_of(right), (names[0], names[1]))


def _pane(x: Any, title: str) -> w.Widget:
    if isinstance(x, Trajectory):
        x = w.HTML(render_run(RunState.from_trajectory(x)))
    x.layout.width = "100%"
    parts = [w.HTML(f'<div class="r1v4-run"><div class="r1v4-pane-title">{esc(title)}</div></div>'), x] if title else [x]
    pane = w.VBox(parts, layout=w.Layout(flex="1 1 0", min_width="0"))
    pane.add_class("r1v4-pane")
    return pane


OPEN: weakref.WeakSet[Debugger] = weakref.WeakSet()  # debuggers on the page, told when a model is loaded


def _pane_layout() -> w.Layout:
    return w.Layout(flex="1 1 0", min_width="0", max_height="640px", overflow="auto")


class Debugger(w.VBox):
    """Navigate a recorded run step by step, see each step's context, fork and compare.

    A fork goes on with `session`'s loaded model and tools and into its runs folder (or `runs_dir`);
    without a session, the magics' one.
    """

    def __init__(self, traj: Trajectory, runs_dir: str | Path | None = None, session: Session | None = None):
        self.traj = traj
        self._session = session
        self.state = RunState.from_trajectory(traj)
        self.runs_dir = Path(runs_dir) if runs_dir is not None else None
        self.branches: list[Any] = []
        self.comparisons: list[Comparison] = []
        self.images = trajectory_images(traj)
        self.tag_names = get_dialect(traj.header.dialect).tag_names  # marked in the context pane
        self._card_of = {card.index: c for c, card in enumerate(self.state.cards) if isinstance(card, STEP_CARDS)}
        n = len(traj.steps)
        last = max(0, n - 1)
        self.key = uuid.uuid4().hex
        self.display_id: str | None = None  # the static copy under the widget (`api.replay`), kept up to date
        source = f": {esc(traj.path.name)}" if traj.path else ""
        self.header = w.HTML(f'{hide_snapshot(self.key)}<div class="r1v4-run"><style>{CSS}</style>'
                             f'<div class="r1v4-pane-title">Step-through debugger{source}</div>'
                             + f'{render_header(self.state)}'
                             f'{render_card(self.state.cards[0], 0, self.state.images)}</div>')
        self.step_list = w.Select(options=[(step_label(s), s.index) for s in traj.steps], rows=min(12, max(2, n)),
                                  layout=w.Layout(width="230px", flex="0 0 auto"))
        self.prev_button = w.Button(description="Previous", icon="arrow-left", layout=w.Layout(width="110px"))
        self.next_button = w.Button(description="Next", icon="arrow-right", layout=w.Layout(width="110px"))
        self.slider = w.IntSlider(value=0, min=0, max=last, description="step", continuous_update=False,
                                  layout=w.Layout(flex="1 1 auto", min_width="200px"))
        self.jump = w.BoundedIntText(value=0, min=0, max=last, description="jump to",
                                     layout=w.Layout(width="170px", flex="0 0 auto"))
        self.context = w.HTML(layout=_pane_layout())
        self.produced = w.HTML(layout=_pane_layout())
        self.fork_title = w.HTML()
        self.continue_with = w.ToggleButtons(options=[("the recorded turns", "replay")], value="replay",
                                             description="continue with", style={"description_width": "auto"})
        self.continue_with.observe(lambda _ch: self._show_fork_title(), names="value")
        self.editor = w.Textarea(layout=w.Layout(width="100%", height="120px"))
        self.fork_button = w.Button(description="Fork here", button_style="warning", icon="code-fork",
                                    layout=w.Layout(width="auto", flex="0 0 auto"))
        self.fork_status = w.HTML()
        self.branch_box = w.VBox()
        self.prev_button.on_click(lambda _: self.select(self.index - 1))
        self.next_button.on_click(lambda _: self.select(self.index + 1))
        self.fork_button.on_click(lambda _: self._fork_clicked())
        for widget in (self.slider, self.jump, self.step_list):
            widget.observe(lambda ch: self.select(ch["new"]) if ch["new"] is not None else None, names="value")
        nav = w.HBox([self.prev_button, self.next_button, self.slider, self.jump],
                     layout=w.Layout(width="100%", align_items="center"))
        body = w.HBox([self.step_list, self.context, self.produced],
                      layout=w.Layout(width="100%", align_items="flex-start", grid_gap="8px"))
        self.fork_panel = w.VBox([self.fork_title, self.continue_with, self.editor,
                                  w.HBox([self.fork_button, self.fork_status], layout=w.Layout(align_items="center"))])
        super().__init__([self.header, nav, body, self.fork_panel, self.branch_box], layout=w.Layout(width="100%"))
        for widget, name in ((self, "r1v4-dbg"), (self.step_list, "r1v4-dbg-steps"), (self.prev_button, "r1v4-dbg-prev"),
                             (self.next_button, "r1v4-dbg-next"), (self.slider, "r1v4-dbg-slider"),
                             (self.jump, "r1v4-dbg-jump"), (self.context, "r1v4-dbg-context"),
                             (self.produced, "r1v4-dbg-produced"), (self.fork_panel, "r1v4-dbg-forkpanel"),
                             (self.editor, "r1v4-dbg-editor"), (self.fork_button, "r1v4-dbg-fork"),
                             (self.fork_status, "r1v4-dbg-status"), (self.branch_box, "r1v4-dbg-branches"),
                             (self.continue_with, "r1v4-dbg-continue"),
                             (self.header, "r1v4-dbg-static")):
            widget.add_class(name)
        self.index = -1
        if n:
            self.select(0)
        self.refresh_models()
        OPEN.add(self)

    # -- navigation ---------------------------------------------------------------------------------------

    def select(self, index: int) -> None:
        """Show step `index` (clamped to the run)."""
        if not self.traj.steps:
            return
        index = max(0, min(int(index), len(self.traj.steps) - 1))
        if index == self.index:
            return
        self.index = index
        self.slider.value = index
        self.jump.value = index
        self.step_list.value = index
        step = self.traj.steps[index]
        tokens_in = step.tokens_in if isinstance(step, ModelStep) else 0
        self.context.value = render_context(self.context_at(index), tokens_in, self.images,
                                            f"The context before step {index}: what the model had seen",
                                            self.tag_names)
        c = self._card_of.get(index)
        card = render_card(self.state.cards[c], c, self.state.images) if c is not None else ""
        self.produced.value = (f'<div class="r1v4-run"><style>{CSS}</style>'
                               f'<div class="r1v4-pane-title">What step {index} produced</div>{card}</div>')
        self.editor.value = editable_text(step)
        self._show_fork_title()
        self.fork_button.description = f"Fork at step {index} and continue"

    def snapshot_html(self) -> str:
        """The static copy of the debugger for a saved notebook: the run's cards, and each branch's comparison."""
        path = f'<div class="r1v4-path">file: {esc(self.traj.path)}</div>' if self.traj.path else ""
        parts = [f'<div class="r1v4-run"><style>{CSS}</style><div class="r1v4-pane-title">Step-through debugger '
                 f'(static copy: run the cell to step through it)</div>{path}</div>', render_run(self.state)]
        parts += [c.html for c in self.comparisons]
        return snapshot("".join(parts), self.key)

    def update_snapshot(self) -> None:
        """Rewrite the static copy under the widget (when `api.replay` displayed one)."""
        if self.display_id is not None:
            from IPython.display import HTML, update_display

            update_display(HTML(self.snapshot_html()), display_id=self.display_id)

    def context_at(self, index: int) -> list[dict[str, Any]]:
        """The exact messages the model saw before step `index`."""
        return self.traj.context_at(index)

    # -- forking ------------------------------------------------------------------------------------------

    @property
    def session(self) -> Session:
        """Where a fork's model, tools and runs folder come from."""
        return self._session if self._session is not None else notebook_session()

    def refresh_models(self) -> None:
        """Offer the session's loaded model as the branch's continuation (`api.load` calls this)."""
        options: list[tuple[str, str]] = [("the recorded turns", "replay")]
        live = self.session.live_model()
        if live is not None:
            options.append((f"the loaded model: {live.describe().get('name', 'model')}", "model"))
        if options != list(self.continue_with.options):
            self.continue_with.options = options
            self.continue_with.value = "model" if len(options) > 1 else "replay"
        self._show_fork_title()

    def _show_fork_title(self) -> None:
        if not self.traj.steps or self.index < 0:
            return
        index, step = self.index, self.traj.steps[self.index]
        kept = "no step before it" if index == 0 else "step 0" if index == 1 else f"steps 0 to {index - 1}"
        if self.continue_with.value == "model":
            goes_on = "the loaded model and the session's tools: the model reads your edit and writes what comes next"
            warn = ""
        else:
            goes_on = "the recorded turns after this step and the recorded observations"
            warn = ('<div class="r1v4-recording r1v4-dbg-replaywarn">This branch continues with the <b>recorded '
                    "turns</b>: the model's next turns are replayed as they were, so your edit does not change "
                    "what it does next (a call that differs from the recording gets an observation saying so). "
                    "To see what a model makes of your edit, load one (<code>%r1v4 load MODEL</code>) and choose "
                    "<i>the loaded model</i> below.</div>")
        self.fork_title.value = (f'<div class="r1v4-run"><div class="r1v4-pane-title">Fork at step {index}</div>{warn}'
                                 f'<div>Edit {esc(edit_hint(step))}, then <b>Fork here</b>: a new branch keeps {kept}, '
                                 f'takes your edit as step {index} and continues with {esc(goes_on)}. The recorded '
                                 "run stays as it is.</div></div>")

    def _fork_clicked(self) -> None:
        try:
            run = self.fork(self.index, self.editor.value, replay=self.continue_with.value == "replay")
        except Exception as exc:  # shown in the panel: a button has no cell output to fail into
            self.fork_status.value = f'<span class="r1v4-badge">{esc(exc)}</span>'
            return
        self.fork_status.value = f"branch running: {esc(run.path or '')}"
        run.on_done(lambda r: setattr(self.fork_status, "value", f"branch {esc(r.reason)}: {esc(r.path)}"))

    def fork(self, step: int | None = None, text: str | None = None, model: Any = None, wait: bool = False,
             replay: bool | None = None) -> Any:
        """Branch the run at `step` with its text replaced by `text`, and continue live; returns a LiveRun.

        The branch continues with `model`, else the session's loaded model (with the session's tools), else
        (or with `replay=True`) the replay of the recorded turns after the fork (with the recorded observations).
        """
        from ..runs import fork
        from .runner import LiveRun
        from .widget import RunView

        k = self.index if step is None else int(step)
        if not 0 <= k < len(self.traj.steps):
            raise UsageError(f"no step {k} to fork at; the run has steps 0..{len(self.traj.steps) - 1}")
        original = self.traj.steps[k]
        h = self.traj.header
        replacement = edited_step(original, editable_text(original) if text is None else text, get_dialect(h.dialect))
        session = self.session
        if model is None and not replay:
            model = session.live_model()  # None: the recorded turns after the fork
        tools = session.tools_for(h.mode, model) if model is not None else None
        runs_dir = self.runs_dir or session.runs_dir
        out = run_file(runs_dir, f"{h.id}-fork{k}-{uuid.uuid4().hex[:6]}")
        view = RunView()
        agent, events = fork(self.traj, k, [replacement], model=model, tools=tools, runs_dir=runs_dir, out=out)
        run = LiveRun(agent, events, view)
        self.branches.append(run)
        title = w.HTML(f'<div class="r1v4-run"><div class="r1v4-pane-title">Branch at step {k}: the original run '
                       f'(left) and the branch (right, written to {esc(out)})</div></div>')
        titles = ("Original", f"Branch: step {k} edited")
        self.branch_box.children = [title, compare(self.traj, view, titles)]

        def finished(r: Any) -> None:  # the branch is recorded: compare step by step, and keep it in the copy
            if r.path is None or not Path(r.path).is_file():
                return
            from ..trajectory import read

            self.comparisons.append(Comparison(self.traj, read(r.path), titles))
            self.branch_box.children = [title, w.HTML(self.comparisons[-1].html)]
            self.update_snapshot()

        run.on_done(finished)
        run.start()
        if wait:
            run.wait()
        return run
