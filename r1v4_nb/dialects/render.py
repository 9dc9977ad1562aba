"""Building chat contexts from steps: the pieces the dialects share.

`Context` appends content parts to a message list, continuing the last message
when the role is the same and merging adjacent text parts, so every dialect's
`build_messages` is a short loop over the steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..images import Image
from ..records import ModelStep, Observation
from .base import Message, image_part, text_part


def result_text(observation: Observation) -> str:
    """The text a tool result shows the model: its text, then `Error: ...` if it failed.

    An error the text already contains is not repeated; an error alone (or equal to the text)
    reads `Error: <message>`.
    """
    text, error = observation.text, observation.error
    if not error:
        return text
    if not text.strip() or text.strip() == error.strip():
        return f"Error: {error}"
    if error in text:
        return text
    return f"{text.rstrip()}\nError: {error}"


def completed_text(step: ModelStep, closers: dict[str, str]) -> str:
    """A model step's text with the closing tag of a trailing call the stop string cut off.

    Backends drop the stop string (`</tool_call>`, `</code>`) from their output; the context must
    still show the call closed, as the model wrote it. `closers` maps a call segment's kind to its
    closing tag; text that already ends with it is returned unchanged.
    """
    text = step.text
    if not step.segments:
        return text
    last = step.segments[-1]
    closer = closers.get(last.kind)
    if last.call is None or not closer or text.rstrip().endswith(closer):
        return text
    return text + closer


class Context:
    """A message list under construction."""

    def __init__(self, system: str, question: str, images: Sequence[Image]):
        self.messages: list[Message] = []
        if system:
            self.add("system", [text_part(system)])
        self.add("user", [image_part(im) for im in images] + [text_part(question)])

    @property
    def last_role(self) -> str | None:
        return self.messages[-1]["role"] if self.messages else None

    def add(self, role: str, parts: Sequence[dict[str, Any]], *, new: bool = False, sep: str = "") -> None:
        """Append parts to the last message if it has `role` (and not `new`), else start a message.

        `sep` goes between the existing content and the new parts when a message is continued.
        """
        parts = [p for p in parts if p.get("type") != "text" or p.get("text")]
        if not parts:
            return
        if new or self.last_role != role:
            self.messages.append({"role": role, "content": []})
        elif sep:
            parts = [text_part(sep), *parts]
        content = self.messages[-1]["content"]
        for part in parts:
            if part.get("type") == "text" and content and content[-1].get("type") == "text":
                content[-1] = text_part(content[-1]["text"] + part["text"])
            else:
                content.append(dict(part))
