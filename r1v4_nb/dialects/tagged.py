"""The base of the dialects that write actions as tags (r1v4, qwen, fenced).

They differ only in their tags, stop strings, prompt format and how a tool result reads back; the
parser (a `TagParser` over the tags), the completion of a step cut by a stop string and the context
built step by step are the same, and live here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..records import ModelStep, NoteStep, Observation, Step, ToolCall, ToolStep
from .base import Dialect, Parser, image_part, text_part
from .context import Context, completed_text, result_text
from .tags import Tag, TagParser

__all__ = ["TagDialect"]


class TagDialect(Dialect):
    """A dialect made of `tags`; a subclass names them and its stop strings, and writes its system prompt."""

    tags: Sequence[Tag] = ()

    def parser(self) -> Parser:
        return TagParser(self.tags)

    @property
    def tag_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tags)

    @property
    def closers(self) -> dict[str, str]:
        """Closing tag of each call tag's opener, used to complete a step cut by a stop string."""
        return {t.opener: t.closer for t in self.tags if t.body in ("json", "code", "args")}

    def render_observation(self, call: ToolCall, observation: Observation) -> list[dict[str, Any]]:
        """The result's text, then its images."""
        return [text_part(result_text(observation)), *(image_part(im) for im in observation.images)]

    def add_step(self, ctx: Context, step: Step) -> None:
        if isinstance(step, ModelStep):
            ctx.model(completed_text(step, self.closers))
        elif isinstance(step, ToolStep):
            ctx.tool(step.call, self.render_observation(step.call, step.observation))
        elif isinstance(step, NoteStep):
            ctx.note(step.text, step.reason, step.images)
