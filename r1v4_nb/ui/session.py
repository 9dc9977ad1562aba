"""The notebook session: the loaded model, the tool configuration, where runs go, the runs so far.

`api.SESSION` is the one the magics use. Widgets that start runs of their own (the debugger's forks)
are handed a session; one that was not handed any uses the magics' session, which `api` names here
when it is imported (`notebook_session`), so nothing below `api` imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..models.base import Model
from ..modes import MODES, get_mode
from ..runs import is_replay, live_tools, recorded_tools
from ..tools.base import Tool
from ..trajectory import read

__all__ = ["Session", "ToolConfig", "follow_notebook_session", "notebook_session"]


@dataclass
class ToolConfig:
    """Which tools a run gets: the mode's defaults, plus `enabled`, minus `disabled`, built with `settings`.

    `source`: "auto" (recorded observations for a replay model, live tools otherwise), "live" or "replay".
    """

    enabled: set[str] = field(default_factory=set)
    disabled: set[str] = field(default_factory=set)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "auto"

    def names(self, mode: str) -> list[str]:
        base = list(get_mode(mode).tools) if mode in MODES else []
        return [n for n in base + sorted(self.enabled - set(base)) if n not in self.disabled]


@dataclass
class Session:
    model: Model | None = None
    load_args: dict[str, Any] | None = None
    tools: ToolConfig = field(default_factory=ToolConfig)
    runs_dir: Path = Path("runs")
    runs: list[Any] = field(default_factory=list)

    @property
    def last(self) -> Any:
        if not self.runs:
            raise UsageError("no run yet in this session; ask a question first (%%r1v4 ask)")
        return self.runs[-1]

    def live_model(self) -> Model | None:
        """The loaded model when it generates (not a replay): what a fork can go on with."""
        return self.model if self.model is not None and not is_replay(self.model) else None

    def tools_for(self, mode: str, model: Model) -> list[Tool]:
        """The tools of a run in `mode` with `model`, as this session's tool configuration says."""
        cfg = self.tools
        replay_source = getattr(model, "source", None)
        if cfg.source == "replay" or (cfg.source == "auto" and is_replay(model) and replay_source):
            if not replay_source:
                raise UsageError("tool source 'replay' needs a replay model; load one with %r1v4 load replay:FILE")
            return recorded_tools(read(replay_source))
        return live_tools(cfg.names(mode), cfg.settings)


_notebook: Callable[[], Session] | None = None


def follow_notebook_session(current: Callable[[], Session]) -> None:
    """Name the function that returns the magics' session (`api` does, on import)."""
    global _notebook
    _notebook = current


def notebook_session() -> Session:
    """The magics' session; a fresh one when `api` was never imported."""
    return _notebook() if _notebook is not None else Session()
