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
from .tagged import TagDialect
from .tags import Tag

QWEN_TAGS = (
    Tag("think", "think"),
    Tag("tool_call", "tool_call", "json"),
    Tag("answer", "answer"),
    Tag("tool_response", "observation"),
)


class QwenDialect(TagDialect):
    """Tool calls in `<tool_call>`, results as `<tool_response>` in the next user message."""

    name = "qwen"
    stop = ["</tool_call>"]
    tags: Sequence[Tag] = QWEN_TAGS

    def system_prompt(self, mode: str, tools: Sequence[dict[str, Any]]) -> str:
        specs = prompts.tool_specs(tools)
        example, args = prompts.example_call(specs)
        return prompts.build_system_prompt(mode, specs, prompts.QWEN_FORMAT.format(example=example,
                                                                                   example_args=args))
