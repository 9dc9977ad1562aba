"""The Qwen / WebWatcher / DeepEyes format: a tool call ends the assistant turn.

    <think>...</think>
    <tool_call>
    {"name": ..., "arguments": {...}}
    </tool_call>

The result comes back as a `tool` message (with its images), which the chat
template renders as `<tool_response>...</tool_response>` in a user turn, and
the model answers in a new assistant turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import prompts
from ..images import Image
from ..records import ModelStep, NoteStep, Observation, Step, ToolCall, ToolStep
from .base import Dialect, Message, Parser, image_part, text_part
from .render import Context, completed_text, result_text
from .tags import Tag, TagParser

QWEN_TAGS = (
    Tag("think", "think"),
    Tag("tool_call", "tool_call", "json"),
    Tag("answer", "answer"),
    Tag("tool_response", "observation"),
)


class QwenDialect(Dialect):
    """Tool calls in `<tool_call>`, results as `<tool_response>` in the next user message."""

    name = "qwen"
    stop = ["</tool_call>"]
    tags: Sequence[Tag] = QWEN_TAGS

    def parser(self) -> Parser:
        return TagParser(self.tags)

    def system_prompt(self, mode: str, tools: Sequence[dict[str, Any]]) -> str:
        specs = prompts.tool_specs(tools)
        example, args = prompts.example_call(specs)
        return prompts.build_system_prompt(mode, specs, prompts.QWEN_FORMAT.format(example=example,
                                                                                   example_args=args))

    def render_observation(self, call: ToolCall, observation: Observation) -> list[dict[str, Any]]:
        return [text_part(result_text(observation)), *(image_part(im) for im in observation.images)]

    def build_messages(self, system: str, question: str, images: Sequence[Image],
                       steps: Sequence[Step]) -> list[Message]:
        ctx = Context(system, question, images)
        closers = {"<tool_call>": "</tool_call>"}
        for step in steps:
            if isinstance(step, ModelStep):
                ctx.model(completed_text(step, closers))
            elif isinstance(step, ToolStep):
                ctx.tool(step.call, self.render_observation(step.call, step.observation))
            elif isinstance(step, NoteStep):
                ctx.note(step.text, step.reason, step.images)
        return ctx.messages

