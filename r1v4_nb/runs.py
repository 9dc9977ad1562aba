"""Setting up a run for every front end: the tool set, a re-run of a recording, a fork of one.

The CLI (`run`, `rerun`, `demo`), the notebook session, the debugger and evaluation all build their
runs from here, so a recorded header turns back into a run one way: its dialect, mode and system
prompt (`Agent.from_header`), its tools rebuilt live by name or replayed from its observations, its
model turns replayed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .agent import Agent
from .errors import UsageError
from .events import Event
from .models.base import Model
from .models.replay import ReplayModel
from .modes import get_mode
from .records import Step
from .tools.base import Tool
from .trajectory import Trajectory, run_file, run_name

__all__ = ["WORLD_TOOLS", "fork", "is_replay", "live_tools", "mode_tools", "recorded_tools", "rerun"]

WORLD_TOOLS = frozenset({"text_search", "image_search", "web_visit"})  # offline, they read the demo world


def is_replay(model: Model | None) -> bool:
    """Whether a model replays a recording (its turns are fixed) rather than generating."""
    return isinstance(model, ReplayModel)


def live_tools(names: Sequence[str], settings: Mapping[str, Mapping[str, Any]] | None = None) -> list[Tool]:
    """Tools built by name, each with its settings (`{"text_search": {"backend": "ddgs"}}`)."""
    from .tools.registry import build_tool

    settings = settings or {}
    return [build_tool(name, **dict(settings.get(name, {}))) for name in names]


def mode_tools(mode: str, settings: Mapping[str, Mapping[str, Any]] | None = None) -> list[Tool]:
    """The live tools of a mode's row in the modes table."""
    return live_tools(get_mode(mode).tools, settings)


def recorded_tools(traj: Trajectory, live: bool = False, start_step: int = 0) -> list[Tool]:
    """The tools a recording ran with: replaying its observations (from `start_step`), or rebuilt live."""
    if live:
        return live_tools([t["name"] for t in traj.header.tools])
    from .tools.replay import replay_tools

    return replay_tools(traj, start_step=start_step)


def rerun(traj: Trajectory, live: bool = False, out: str | Path | None = None,
          runs_dir: str | Path = "runs") -> tuple[Agent, Iterator[Event]]:
    """Run a recording again: its model turns replayed, its tools replayed (or `live`), into a new file.

    The new trajectory's meta names the recording (`replay_of`).
    """
    h = traj.header
    agent = Agent.from_header(h, ReplayModel.from_trajectory(traj), recorded_tools(traj, live), runs_dir=runs_dir)
    if out is None and traj.path is not None:
        out = run_file(runs_dir, f"{run_name(traj.path)}.replay-{int(time.time())}")
    return agent, agent.run(h.question, h.images, out=out, meta={**h.meta, "replay_of": h.id})


def fork(traj: Trajectory, step: int, replacement: Sequence[Step], model: Model | None = None,
         tools: Sequence[Tool] | None = None, runs_dir: str | Path = "runs",
         out: str | Path | None = None) -> tuple[Agent, Iterator[Event]]:
    """Branch a recording at `step` (the steps before it kept, then `replacement`) and go on.

    With `model` (and its `tools`, else the mode's), the model writes what comes next; without one,
    the recording's own turns and observations after the step are replayed. The events start with the
    kept steps, so a view of the branch shows all of it.
    """
    if model is None:
        try:
            model = ReplayModel.from_trajectory(traj, start_step=step + 1, name="replay after the fork")
        except UsageError:  # nothing recorded after the fork: a model turn ends the branch with an error
            model = ReplayModel([], name="replay after the fork (no recorded turns left)", source=str(traj.path))
        tools = recorded_tools(traj, start_step=step + 1)
    elif tools is None:
        tools = mode_tools(traj.header.mode)
    agent = Agent.from_header(traj.header, model, tools, runs_dir=runs_dir)
    return agent, agent.fork(traj, step, replacement, out=out)
