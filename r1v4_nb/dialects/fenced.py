"""The Thyme / PyVision format: fenced Python in `<code>`, results inline in `<sandbox_output>`.

    <think>...</think><code>
    ```python
    ...
    ```
    </code><sandbox_output>...</sandbox_output><think>...</think><answer>...</answer>

Messages are built as in R1V4: each result is a `tool` message (the
`<sandbox_output>` tag is parsed in transcripts written that way). `<tool_call>` is accepted for
tools other than code (deepresearch mode), so its closing tag is a stop string
too; `</answer>` stops the model from writing on after its answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import prompts
from .tagged import TagDialect
from .tags import Tag

FENCED_TAGS = (
    Tag("think", "think"),
    Tag("code", "code", "code"),
    Tag("tool_call", "tool_call", "json"),
    Tag("answer", "answer"),
    Tag("sandbox_output", "observation"),
    Tag("interpreter", "observation"),
)


class FencedDialect(TagDialect):
    """Code in `<code>```python ...```</code>`; a result goes back as its text (the wrapper is the template's)."""

    name = "fenced"
    stop = ["</code>", "</answer>", "</tool_call>"]
    tags: Sequence[Tag] = FENCED_TAGS

    def system_prompt(self, mode: str, tools: Sequence[dict[str, Any]]) -> str:
        specs = prompts.tool_specs(tools)
        others = any(s.get("name") != "code" for s in specs)
        fmt = prompts.FENCED_FORMAT.format(tool_line=prompts.FENCED_TOOL_LINE if others else "")
        return prompts.build_system_prompt(mode, specs, fmt)
