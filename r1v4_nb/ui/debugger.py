"""The step-through debugger of a recorded run (`%r1v4 replay FILE`).

A step list with previous / next / slider / jump; for the selected step, the
exact context the model saw (rebuilt by the dialect: messages, images, token
counts) beside what the step produced (the same card the live view draws);
"fork here" edits the model's text or a tool's observation at that step and
continues into a new branch trajectory, shown side by side with the original.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import ipywidgets as w

from ..errors import UsageError
from ..images import Image
from ..records import ModelStep, NoteStep, Observation, Step, ToolStep
from ..trajectory import Trajectory
from .cards import RunState
from .render import CSS, render_card, render_header, render_run, thumbnail_url
from .sanitize import esc


def step_label(step: Step) -> str:
    if isinstance(step, ModelStep):
        kinds = ",".join(dict.fromkeys(s.kind for s in step.segments if s.text.strip())) or "empty"
        return f"{step.index}: model ({kinds})"
    if isinstance(step, ToolStep):
        return f"{step.index}: tool {step.call.name}" + (" (error)" if step.observation.error else "")
    return f"{step.index}: note {step.reason}"


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


def render_context(messages: list[dict[str, Any]], tokens_in: int = 0) -> str:
    """The messages of a context as HTML: role, text parts in full, image parts as thumbnails."""
    total = 0
    blocks = []
    for n, m in enumerate(messages):
        content = m.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
        html, words = [], 0
        for p in parts:
            if p.get("type") == "text":
                text = str(p.get("text", ""))
                words += len(text.split())
                html.append(f"<pre>{esc(text)}</pre>")
            elif p.get("type") == "image":
                html.append(_image_part(str(p.get("image", ""))))
        total += words
        body = "".join(html)
        if m.get("role") == "system":
            body = f"<details><summary>system prompt</summary>{body}</details>"
        blocks.append(f'<div class="r1v4-card r1v4-ctx"><div class="r1v4-card-title"><span>{n}: '
                      f'{esc(m.get("role", ""))}</span><span>{words} words</span></div>{body}</div>')
    recorded = f", {tokens_in} tokens as the model counted them" if tokens_in else ""
    head = (f'<div class="r1v4-head"><span><b>{len(messages)}</b> messages</span>'
            f'<span><b>{total}</b> words of text{recorded}</span></div>')
    return f'<div class="r1v4-run"><style>{CSS}</style>{head}{"".join(blocks)}</div>'


_IMAGES: dict[str, Image] = {}


def _image_part(path: str) -> str:
    try:
        im = _IMAGES.get(path) or Image.from_file(path)
    except (OSError, ValueError):
        return f'<span class="r1v4-badurl">(image {esc(path)} missing)</span>'
    _IMAGES[path] = im
    return (f'<img class="r1v4-thumb" src="{thumbnail_url(im)}" alt="{esc(Path(path).name)}" '
            f'title="{esc(Path(path).name)} ({im.width}x{im.height})">')


def compare(left: Trajectory | Any, right: Trajectory | Any) -> w.HBox:
    """Two runs side by side (each a trajectory, or a live RunView)."""
    return w.HBox([_pane(left), _pane(right)], layout=w.Layout(width="100%", align_items="flex-start"))


def _pane(x: Any) -> w.Widget:
    if isinstance(x, Trajectory):
        x = w.HTML(render_run(RunState.from_trajectory(x)))
    x.layout.width = "50%"
    return x


class Debugger(w.VBox):
    """Navigate a recorded run step by step, see each step's context, fork and compare."""

    def __init__(self, traj: Trajectory, runs_dir: str | Path | None = None):
        self.traj = traj
        self.state = RunState.from_trajectory(traj)
        self.runs_dir = Path(runs_dir) if runs_dir is not None else None
        self.branches: list[Any] = []
        self._card_of = {card["index"]: c for c, card in enumerate(self.state.cards)
                         if card["type"] in ("model", "tool", "note")}
        n = len(traj.steps)
        last = max(0, n - 1)
        self.header = w.HTML(f'<div class="r1v4-run"><style>{CSS}</style>{render_header(self.state)}'
                             f'{render_card(self.state.cards[0], 0, self.state.images)}</div>')
        self.step_list = w.Select(options=[(step_label(s), s.index) for s in traj.steps], rows=min(10, max(2, n)),
                                  layout=w.Layout(width="260px"))
        self.prev_button = w.Button(description="Previous", icon="arrow-left", layout=w.Layout(width="110px"))
        self.next_button = w.Button(description="Next", icon="arrow-right", layout=w.Layout(width="110px"))
        self.slider = w.IntSlider(value=0, min=0, max=last, description="step", continuous_update=False)
        self.jump = w.BoundedIntText(value=0, min=0, max=last, description="jump to", layout=w.Layout(width="170px"))
        self.context = w.HTML(layout=w.Layout(width="50%", max_height="640px", overflow="auto"))
        self.produced = w.HTML(layout=w.Layout(width="50%", max_height="640px", overflow="auto"))
        self.editor = w.Textarea(layout=w.Layout(width="100%", height="160px"))
        self.fork_button = w.Button(description="Fork here", button_style="warning", icon="code-fork")
        self.fork_status = w.HTML()
        self.branch_box = w.VBox()
        self.prev_button.on_click(lambda _: self.select(self.index - 1))
        self.next_button.on_click(lambda _: self.select(self.index + 1))
        self.fork_button.on_click(lambda _: self._fork_clicked())
        for widget in (self.slider, self.jump, self.step_list):
            widget.observe(lambda ch: self.select(ch["new"]) if ch["new"] is not None else None, names="value")
        nav = w.HBox([self.prev_button, self.next_button, self.slider, self.jump])
        panes = w.HBox([self.context, self.produced], layout=w.Layout(width="100%"))
        fork_panel = w.VBox([w.HTML("<b>Fork here</b>: edit the model's text or the tool's observation at this "
                                    "step, then continue into a new branch"), self.editor,
                             w.HBox([self.fork_button, self.fork_status])])
        super().__init__([self.header, nav, w.HBox([self.step_list, w.VBox([panes], layout=w.Layout(width="100%"))]),
                          fork_panel, self.branch_box])
        self.index = -1
        if n:
            self.select(0)

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
        self.context.value = render_context(self.context_at(index), tokens_in)
        c = self._card_of.get(index)
        card = render_card(self.state.cards[c], c, self.state.images) if c is not None else ""
        self.produced.value = f'<div class="r1v4-run"><style>{CSS}</style>{card}</div>'
        self.editor.value = editable_text(step)

    def context_at(self, index: int) -> list[dict[str, Any]]:
        """The exact messages the model saw before step `index`."""
        return self.traj.context_at(index)

    # -- forking ------------------------------------------------------------------------------------------

    def _fork_clicked(self) -> None:
        try:
            run = self.fork(self.index, self.editor.value)
        except Exception as exc:  # shown in the panel: a button has no cell output to fail into
            self.fork_status.value = f'<span class="r1v4-badge">{esc(exc)}</span>'
            return
        self.fork_status.value = f"branch running: {esc(run.path or '')}"
        run.on_done(lambda r: setattr(self.fork_status, "value", f"branch {esc(r.reason)}: {esc(r.path)}"))

    def fork(self, step: int | None = None, text: str | None = None, model: Any = None, wait: bool = False) -> Any:
        """Branch the run at `step` with its text replaced by `text`, and continue live; returns a LiveRun.

        The branch continues with `model`, else the session's loaded model (with the session's tools), else
        the replay of the recorded turns after the fork (with the recorded observations).
        """
        from ..agent import Agent
        from ..dialects import get_dialect
        from ..models.replay import ReplayModel
        from ..tools.replay import replay_tools
        from .api import SESSION, _build_tools, _is_replay
        from .runner import LiveRun
        from .widget import RunView

        k = self.index if step is None else int(step)
        if not 0 <= k < len(self.traj.steps):
            raise UsageError(f"no step {k} to fork at; the run has steps 0..{len(self.traj.steps) - 1}")
        original = self.traj.steps[k]
        h = self.traj.header
        replacement = edited_step(original, editable_text(original) if text is None else text, get_dialect(h.dialect))
        if model is None and SESSION.model is not None and not _is_replay(SESSION.model):
            model, tools = SESSION.model, _build_tools(h.mode, SESSION.model)
        elif model is None:
            try:
                model = ReplayModel.from_trajectory(self.traj, start_step=k + 1, name="replay after the fork")
            except UsageError:  # nothing recorded after the fork: a model turn ends the branch with an error
                model = ReplayModel([], name="replay after the fork (no recorded turns left)",
                                    source=str(self.traj.path))
            tools = replay_tools(self.traj, start_step=k + 1)
        else:
            tools = _build_tools(h.mode, model)
        runs_dir = self.runs_dir or SESSION.runs_dir
        agent = Agent(model, tools=tools, dialect=h.dialect, mode=h.mode, runs_dir=runs_dir)
        out = runs_dir / f"{h.id}-fork{k}-{uuid.uuid4().hex[:6]}.jsonl"
        view = RunView()
        run = LiveRun(agent, agent.fork(self.traj, k, [replacement], out=out), view)
        self.branches.append(run)
        self.branch_box.children = [w.HTML(f"<b>Branch at step {k}</b> (left: original, right: branch)"),
                                    compare(self.traj, view)]
        run.start()
        if wait:
            run.wait()
        return run
