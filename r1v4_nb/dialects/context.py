"""Building chat contexts from steps: the pieces the dialects share.

`Context` builds a message list in the project's one mapping of a run onto chat
messages (see `r1v4_nb.messages`), so every dialect's `build_messages` is a
short loop over the steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..images import Image
from ..messages import Message, image_part, text_part
from ..records import ModelStep, Observation, ToolCall


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
    still show the call closed, as the model wrote it. `closers` maps each call tag's opener to its
    closing tag; the last opener in the text decides, and text that already ends with it is unchanged.
    """
    text = step.text
    if not step.segments or step.segments[-1].call is None:
        return text
    found = [(text.rfind(opener), closer) for opener, closer in closers.items()]
    at, closer = max(found, default=(-1, ""))
    if at == -1 or text.rstrip().endswith(closer):
        return text
    return text + closer


class Context:
    """A message list under construction, in the mapping `r1v4_nb.messages` describes.

    Each model turn is an assistant message of its own (a turn continued after a token limit or a
    stop string inside a segment extends the same message); each tool result is a `tool` message
    with its images; a note to the model is a system message.
    """

    def __init__(self, system: str, question: str, images: Sequence[Image]):
        self.messages: list[Message] = []
        if system:
            self.messages.append({"role": "system", "content": [text_part(system)]})
        self.messages.append({"role": "user", "content": [*(image_part(im) for im in images), text_part(question)]})

    @property
    def last_role(self) -> str | None:
        return self.messages[-1]["role"] if self.messages else None

    def copy(self) -> Context:
        """A context that grows on its own from here. Messages are never changed in place (a continued
        message is replaced), so the two share the messages so far."""
        other = Context.__new__(Context)
        other.messages = list(self.messages)
        return other

    def model(self, text: str) -> None:
        """A model turn, as written (continuing the assistant message it extends)."""
        if self.last_role == "assistant":
            self.messages[-1] = {**self.messages[-1], "content": self.messages[-1]["content"] + text}
        elif text:
            self.messages.append({"role": "assistant", "content": text})

    def tool(self, call: ToolCall, parts: Sequence[dict[str, Any]]) -> None:
        """One tool result with its images, answering `call`."""
        self.messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": _merged(parts)})

    def user(self, parts: Sequence[dict[str, Any]]) -> None:
        """A user message (plan feedback), merged into a user message just before it."""
        if self.last_role == "user":
            last = self.messages[-1]
            self.messages[-1] = {**last, "content": _merged([*last["content"], text_part("\n\n"), *parts])}
        else:
            self.messages.append({"role": "user", "content": _merged(parts)})

    def note(self, text: str, reason: str = "", images: Sequence[Image] = ()) -> None:
        """A note to the model (a budget warning) as a system message: that is not a new user query, so
        real templates keep the reasoning of the turns before it. A later user turn (reason `user`, an
        imported chat) is a user message with its images."""
        if reason == "user" or images:
            self.user([*(image_part(im) for im in images), text_part(text)])
        else:
            self.messages.append({"role": "system", "content": [text_part(text)]})


def _merged(parts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Parts with empty text dropped and adjacent text parts joined."""
    out: list[dict[str, Any]] = []
    for part in parts:
        if part.get("type") == "text":
            if not part.get("text"):
                continue
            if out and out[-1].get("type") == "text":
                out[-1] = text_part(out[-1]["text"] + part["text"])
                continue
        out.append(dict(part))
    return out
