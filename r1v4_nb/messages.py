"""The one message shape of the project, and the one way messages become model inputs.

Messages are chat messages in the Hugging Face shape, images as local file paths::

    {"role": "user", "content": [{"type": "image", "image": "/path/a.png"}, {"type": "text", "text": "..."}]}
    {"role": "assistant", "content": "<think>\\n...\\n</think>\\n\\n<tool_call>...</tool_call>"}
    {"role": "tool", "tool_call_id": "call_1_0", "name": "code", "content": [text and image parts]}

A run maps onto them so that real chat templates (Qwen3-VL's own, applied by
`transformers` here and by vLLM server-side) render it faithfully: each model
turn is its own assistant message holding the text as written, each tool
result its own `tool` message carrying its images, and notes to the model
(budget warnings) system messages, which do not count as a new user query (a
template drops the reasoning of turns before the last user query).

`chat_prompt` is what every backend and the training masks feed the model:
the template's generation prompt, or, when the last message is the
assistant's, the prompt of that turn followed by the text written so far. The
text the generation prompt opens the turn with (Qwen3-VL Thinking's `<think>\\n`)
is the start of the model's turn (`turn_opening`), so it is recorded with it.
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Message = dict[str, Any]

# The header every Qwen chat template writes before an assistant turn.
ASSISTANT_HEADER = "<|im_start|>assistant\n"


class MessageError(ValueError):
    """Messages that cannot be turned into model inputs (a missing image, placeholders that do not match)."""


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def image_part(image: Any) -> dict[str, Any]:
    """An image part for an `Image` record (or anything with a `.path`) or a path."""
    path = getattr(image, "path", image)
    return {"type": "image", "image": str(path)}


def is_image_part(part: dict[str, Any]) -> bool:
    return part.get("type") in ("image", "image_url") or "image" in part or "image_url" in part


def message_text(message: Message) -> str:
    """The text of a message (its text parts joined); images are left out."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if p.get("type") == "text")


def image_paths(messages: Sequence[Message]) -> list[str]:
    """The local image paths of all image parts, in the order a chat template places them."""
    paths = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            for part in content:
                if part.get("type") == "image" or "image" in part:
                    paths.append(str(part.get("image") or part.get("path")))
    return paths


def data_url(path: str | Path) -> str:
    """A local image as a `data:` URL (what OpenAI-style servers take)."""
    p = Path(path)
    if not p.exists():
        raise MessageError(f"image {path} not found; messages must reference local image files")
    mime = mimetypes.guess_type(p.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(p.read_bytes()).decode('ascii')}"


def to_openai(messages: Sequence[Message]) -> list[Message]:
    """HF-shape messages to OpenAI chat messages: images as `image_url` data URLs, other fields kept.

    Assistant messages never carry images in the OpenAI API; an assistant message with image parts
    is refused rather than sent.
    """
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            parts = []
            for item in content:
                if item.get("type") == "image_url" or "image_url" in item:
                    parts.append({"type": "image_url", "image_url": item["image_url"]})
                elif item.get("type") == "image" or "image" in item:
                    parts.append({"type": "image_url", "image_url": {"url": data_url(item["image"])}})
                else:
                    parts.append(text_part(item.get("text", "")))
            if m.get("role") == "assistant":
                if any(p["type"] == "image_url" for p in parts):
                    raise MessageError("an assistant message holds an image; the OpenAI API takes images only "
                                       "in user and tool messages")
                content = "".join(p["text"] for p in parts)
            else:
                content = parts
        out.append({**m, "content": content})
    return out


# ----------------------------------------------------------------------------- model inputs


def _render(processor: Any, messages: Sequence[Message], generation: bool, tools: Any = None) -> str:
    kw = {"tools": tools} if tools else {}
    return processor.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation, **kw)


def chat_text(processor: Any, messages: Sequence[Message]) -> str:
    """The whole conversation rendered closed, as a training example stores it."""
    return _render(processor, messages, False)


def generation_prompt(processor: Any, messages: Sequence[Message]) -> str:
    """The text the template appends to open a new assistant turn after `messages`."""
    closed, opened = _render(processor, messages, False), _render(processor, messages, True)
    if not opened.startswith(closed):
        raise MessageError("the chat template renders the conversation differently once a generation prompt "
                           "is added; use a template whose generation prompt only appends")
    return opened[len(closed):]


def turn_opening(processor: Any, messages: Sequence[Message]) -> str:
    """The part of the generation prompt after the assistant header: text the model's turn starts with.

    Qwen3-VL Thinking's template opens `<think>\\n`, so the model writes its reasoning without an
    opening tag; recording the turn with this opening keeps its text whole and parseable.
    """
    prompt = generation_prompt(processor, messages)
    head = prompt.rfind(ASSISTANT_HEADER)
    return prompt[head + len(ASSISTANT_HEADER):] if head != -1 else ""


def chat_prompt(processor: Any, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None) -> str:
    """What the model is fed to write the next text after `messages` (the one function for runs and training).

    After a user, tool or system message: the conversation with the template's generation prompt.
    After an assistant message (a turn being continued): the prompt that opened that turn, with the
    opening replaced by the turn's text so far, exactly what the model saw while writing it. The
    template is never asked to re-render a turn in progress, so it cannot cut or rewrite it.
    `tools` (OpenAI function specs) go to the template, which lists them in its system turn.
    """
    if not messages or messages[-1].get("role") != "assistant":
        return _render(processor, messages, True, tools)
    head = list(messages[:-1])
    prompt = _render(processor, head, True, tools)
    opening = turn_opening(processor, head)
    return prompt[:len(prompt) - len(opening)] + _continued(processor, messages[-1])


def _continued(processor: Any, message: Message) -> str:
    """The text of a turn being continued, images as the Qwen vision placeholder (the template's own)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    image = f"<|vision_start|>{processor.image_token}<|vision_end|>"
    return "".join(image if is_image_part(p) else p.get("text", "") for p in content or [])


def rewritten_turns(rendered: str, messages: Sequence[Message]) -> list[int]:
    """Indices of assistant messages whose text does not appear verbatim in `rendered`.

    A template that drops or rewrites what the model wrote (old reasoning, whitespace around
    `</think>`) shows the model a different history than the one recorded.
    """
    bad, pos = [], 0
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        text = message_text(m).strip()
        k = rendered.find(text, pos) if text else pos
        if k == -1:
            bad.append(i)
        else:
            pos = k + len(text)
    return bad


def expand_images(text: str, image_token: str, counts: Sequence[int]) -> str:
    """`text` with its n-th image placeholder repeated `counts[n]` times (the processor's expansion)."""
    pieces = text.split(image_token)
    if len(pieces) - 1 != len(counts):
        raise MessageError(f"the chat template placed {len(pieces) - 1} images but the messages hold {len(counts)}")
    out = [pieces[0]]
    for n, rest in zip(counts, pieces[1:], strict=True):
        out.append(image_token * n + rest)
    return "".join(out)


__all__ = [
    "ASSISTANT_HEADER", "Message", "MessageError", "chat_prompt", "chat_text", "data_url", "expand_images",
    "generation_prompt", "image_part", "image_paths", "is_image_part", "message_text", "rewritten_turns",
    "text_part", "to_openai", "turn_opening",
]
