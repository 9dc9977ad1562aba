"""Tools that give back the observations of a recorded run, so a replay needs no sandbox or network."""

from __future__ import annotations

from typing import Any

from ..records import Observation, ToolStep
from .base import Tool, ToolContext


class ReplayTool(Tool):
    """One tool name; answers each call with the next recorded observation of that tool.

    A call whose arguments differ from the recording (a fork went another way) gets an error
    observation saying so, rather than a result that belongs to another call.
    """

    def __init__(self, name: str, steps: list[ToolStep], description: str = "", parameters: dict | None = None):
        self.name = name
        self.description = description or f"{name} (replayed from a recorded run)"
        self.parameters = parameters or {"type": "object"}
        self._steps = list(steps)
        self._next = 0

    def settings(self) -> dict[str, Any]:
        return {"backend": "replay", "recorded_calls": len(self._steps)}

    def run(self, arguments: dict[str, Any], ctx: ToolContext) -> Observation:
        if self._next >= len(self._steps):
            return _miss(f"replay: no more recorded {self.name} results")
        step = self._steps[self._next]
        if step.call.arguments != arguments:
            return _miss(f"replay: this {self.name} call differs from the recorded one, so there is no "
                         "recorded result for it; run the tools live to go on")
        self._next += 1
        obs = step.observation
        return Observation(obs.text, list(obs.images), obs.error, dict(obs.data), list(obs.limits_hit))


def _miss(message: str) -> Observation:
    return Observation(text=message, error=message)


def replay_tools(trajectory: Any, start_step: int = 0) -> list[Tool]:
    """One ReplayTool per tool the trajectory used or declared (steps before `start_step` are skipped)."""
    by_name: dict[str, list[ToolStep]] = {}
    for t in trajectory.header.tools:
        by_name.setdefault(t["name"], [])
    for s in trajectory.tool_steps:
        if s.index >= start_step and not s.call.error:
            by_name.setdefault(s.call.name, []).append(s)
    return [ReplayTool(name, steps) for name, steps in by_name.items() if name]
