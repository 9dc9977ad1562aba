"""Typed events of a run, and a tiny bus to fan them out.

The agent loop knows nothing of who listens: the trajectory recorder, the CLI
printer and the notebook widgets are all just subscribers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .records import ModelStep, NoteStep, Segment, ToolCall, ToolStep
from .trajectory import Header


@dataclass(frozen=True)
class RunStarted:
    """A run began: its header (as recorded) and the trajectory file it is written to."""

    header: Header
    path: Path


@dataclass(frozen=True)
class TurnStarted:
    index: int


@dataclass(frozen=True)
class TokenDelta:
    """Streamed model text, tagged with the kind of segment it belongs to (think, tool_call, answer...)."""

    index: int
    kind: str
    text: str


@dataclass(frozen=True)
class SegmentClosed:
    index: int
    segment: Segment


@dataclass(frozen=True)
class TurnFinished:
    step: ModelStep


@dataclass(frozen=True)
class ToolStarted:
    index: int
    call: ToolCall


@dataclass(frozen=True)
class ToolFinished:
    step: ToolStep


@dataclass(frozen=True)
class NoteAdded:
    step: NoteStep


@dataclass(frozen=True)
class Answered:
    index: int
    text: str


@dataclass(frozen=True)
class RunError:
    message: str
    index: int | None = None


@dataclass(frozen=True)
class RunFinished:
    """`reason`: answered, no_answer, budget, cancelled or error."""

    reason: str
    answer: str | None
    elapsed_s: float
    usage: dict[str, int]


Event = (RunStarted | TurnStarted | TokenDelta | SegmentClosed | TurnFinished | ToolStarted | ToolFinished
         | NoteAdded | Answered | RunError | RunFinished)

Subscriber = Callable[[Any], None]


def events_of_step(step: ModelStep | ToolStep | NoteStep) -> list[Event]:
    """The events a live run would have sent for a recorded step (without the token stream)."""
    if isinstance(step, ModelStep):
        return [TurnStarted(step.index), *(SegmentClosed(step.index, s) for s in step.segments),
                TurnFinished(step)]
    if isinstance(step, ToolStep):
        return [ToolStarted(step.index, step.call), ToolFinished(step)]
    return [NoteAdded(step)]


class EventBus:
    """Calls every subscriber with every event, in subscription order."""

    def __init__(self) -> None:
        self._subs: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        self._subs.append(fn)
        return lambda: self._subs.remove(fn) if fn in self._subs else None

    def emit(self, event: Any) -> None:
        for fn in list(self._subs):
            fn(event)
