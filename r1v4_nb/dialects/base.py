"""The Dialect protocol: how a model writes actions and how results go back to it.

A dialect owns everything about a model's text format, in one place:

- `parser()`: an incremental parser. `feed(chunk)` returns `SegmentEvent`s as
  text streams in; the result never depends on how the stream was chunked and
  no input makes it raise. Malformed tool calls become segments whose
  `call.error` says what is wrong, so the agent can tell the model.
- `stop`: the strings that end a turn after a tool call.
- `system_prompt(mode, tools)`: the instructions for a mode.
- `build_messages(...)`: the exact context the model sees after a list of
  steps. Runs, the debugger and SFT all call this one function, so train-time
  and run-time contexts cannot drift apart. It is the loop over `add_step(ctx,
  step)`, which the agent also calls to grow one run's context a step at a time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..images import Image
from ..messages import Message, image_part, text_part
from ..records import Observation, Segment, Step, ToolCall
from .context import Context


@dataclass(frozen=True)
class SegmentEvent:
    """`type` is open, delta or close; `text` is the new text of a delta; `segment` is set on close."""

    kind: str
    type: str
    text: str = ""
    segment: Segment | None = None


class Parser(ABC):
    @abstractmethod
    def feed(self, chunk: str | bytes) -> list[SegmentEvent]:
        """Consume more model output (bytes are decoded incrementally as UTF-8)."""

    @abstractmethod
    def finish(self) -> list[SegmentEvent]:
        """End of stream: flush held-back text and close open segments (marked `closed=False`)."""

    @abstractmethod
    def close_for_stop(self) -> str:
        """The text that closes a segment which a stop string cut off ('' if none is open)."""

    @property
    @abstractmethod
    def segments(self) -> list[Segment]:
        """The segments completed so far."""

    @property
    @abstractmethod
    def open_kind(self) -> str | None:
        """The kind of the segment being written now, or None between segments.

        After a stop string cut the stream and `close_for_stop()` was fed, a segment that is still open
        means the stop string was inside it (e.g. `</tool_call>` inside a JSON string of code): the agent
        then lets the model continue the same turn.
        """


class Dialect(ABC):
    name: str = ""
    stop: list[str] = []
    answer_kind: str = "answer"  # the segment that ends a run with its result (plan mode's: "plan")
    tag_names: tuple[str, ...] = ()  # the tags the format writes, for views that mark them in a context

    @abstractmethod
    def parser(self) -> Parser: ...

    def parse(self, text: str) -> list[Segment]:
        p = self.parser()
        p.feed(text)
        p.finish()
        return p.segments

    @abstractmethod
    def system_prompt(self, mode: str, tools: Sequence[dict[str, Any]]) -> str:
        """The system prompt for `mode` (general, deepresearch, plan) listing the tools' specs."""

    @abstractmethod
    def render_observation(self, call: ToolCall, observation: Observation) -> list[dict[str, Any]]:
        """The content (text and image parts) of the `tool` message that gives one result back to the model."""

    def add_step(self, ctx: Context, step: Step) -> None:
        """Append one step's messages to a context under construction. The agent keeps one context per
        run and appends each new step, so a turn's context costs its new steps, not the whole run; a
        dialect that only builds whole contexts (overriding `build_messages`) is rebuilt every turn."""
        raise NotImplementedError(f"{type(self).__name__} builds whole contexts only")

    def build_messages(self, system: str, question: str, images: Sequence[Image],
                       steps: Sequence[Step]) -> list[Message]:
        """The context after `steps`. If the last message is the assistant's, the model continues it."""
        ctx = Context(system, question, images)
        for step in steps:
            self.add_step(ctx, step)
        return ctx.messages

    @property
    def incremental(self) -> bool:
        """Whether `add_step` builds exactly what `build_messages` builds (the class defines the first
        and keeps the second as the loop over it)."""
        cls = type(self)
        return cls.build_messages is Dialect.build_messages and cls.add_step is not Dialect.add_step


__all__ = ["Dialect", "Message", "Parser", "SegmentEvent", "image_part", "text_part"]
