"""The model protocol every backend implements.

Messages are chat messages in the Hugging Face shape, with images as local file
paths::

    {"role": "user", "content": [{"type": "image", "image": "/path/a.png"},
                                 {"type": "text", "text": "What is this?"}]}

When the last message has role "assistant", the backend continues that message
(no new generation prompt): a turn cut by the token limit, or by a stop string
inside a segment, goes on. `r1v4_nb.messages` has how a run maps onto messages.

A backend stops at any of the `stop` strings and does not include the stop
string in its output (OpenAI semantics); the agent asks the dialect to close
whatever tag the stop string cut.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from ..errors import R1V4Error, UsageError


class ModelError(R1V4Error):
    """A backend failed in a way the user can act on (server down, bad path, out of memory)."""


@dataclass
class GenerationSettings:
    temperature: float = 0.2
    max_tokens: int = 2048
    top_p: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise UsageError(f"temperature must be a number >= 0, got {self.temperature}")
        if self.max_tokens < 1:
            raise UsageError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.top_p is not None and not (0 < self.top_p <= 1):
            raise UsageError(f"top_p must be in (0, 1], got {self.top_p}")

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Delta:
    """A piece of streamed output. The last one has `finish_reason` (stop, length, cancelled) and `usage`.

    `prompted` marks text the prompt wrote, not the model: the opening of the turn that a chat
    template's generation prompt puts there (`<think>\\n`). It is part of the turn's recorded text.
    """

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    prompted: bool = False


@runtime_checkable
class Model(Protocol):
    name: str

    def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        stop: list[str],
        settings: GenerationSettings,
        cancel: threading.Event | None = None,
    ) -> Iterator[Delta]: ...

    def describe(self) -> dict[str, Any]:
        """What to record in a trajectory header about this model (name, backend, settings)."""
        ...


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """Text up to the first stop string (excluded) and whether one was found."""
    first = -1
    for s in stop:
        if not s:
            continue
        i = text.find(s)
        if i != -1 and (first == -1 or i < first):
            first = i
    return (text, False) if first == -1 else (text[:first], True)
