"""The R1V4 format (the default dialect): one assistant stream with inline observations.

    <think>...</think><tool_call>{"name": ..., "arguments": {...}}</tool_call>
    <observation>{"result": ..., "type": NAME}</observation>
    <think>...</think><answer>...</answer>

`<code>source</code>` is accepted as a call of the code tool. The hosted R1V4
API writes observations inline in one assistant stream; a model run here gets
each result as a `tool` message holding that JSON payload and its images, which
Qwen3-VL's chat templates render as a `<tool_response>` block (an inline
observation cannot survive a real template: it keeps only the text around
`</think>`). docs/dialects.md has the exact bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .. import prompts
from ..records import Observation, ToolCall
from .base import image_part, text_part
from .context import result_text
from .tagged import TagDialect
from .tags import Tag

R1V4_TAGS = (
    Tag("think", "think"),
    Tag("tool_call", "tool_call", "json"),
    Tag("code", "code", "code"),
    Tag("answer", "answer"),
    Tag("observation", "observation"),
    # The report's basic-search training data: the tag names the tool, its body is the argument.
    Tag("image_search", "tool_call", "args", tool="image_search"),
    Tag("text_search", "tool_call", "args", tool="text_search"),
    Tag("web_content", "tool_call", "args", tool="web_visit"),
)


class R1V4Dialect(TagDialect):
    """Skywork-R1V4's protocol. See the module docstring."""

    name = "r1v4"
    # "<observation>" cuts a model that starts to write a tool result itself.
    stop = ["</tool_call>", "</code>", "<observation>", "</image_search>", "</text_search>"]
    tags: Sequence[Tag] = R1V4_TAGS

    def system_prompt(self, mode: str, tools: Sequence[dict[str, Any]]) -> str:
        specs = prompts.tool_specs(tools)
        example, args = prompts.example_call(specs)
        code_line = prompts.R1V4_CODE_LINE if any(s.get("name") == "code" for s in specs) else ""
        fmt = prompts.R1V4_FORMAT.format(example=example, example_args=args, code_line=code_line)
        return prompts.build_system_prompt(mode, specs, fmt)

    def render_observation(self, call: ToolCall, observation: Observation) -> list[dict[str, Any]]:
        payload = json.dumps({"result": result_text(observation), "type": call.name}, ensure_ascii=False)
        return [text_part(payload), *(image_part(im) for im in observation.images)]
