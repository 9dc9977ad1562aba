"""Trajectory -> OpenAI chat messages, images inlined as data URLs.

The messages are the dialect's context after every step, so they hold exactly
what the model saw plus what it wrote in its last turn, in the shape the OpenAI
API accepts: images only in user messages, assistant messages as text. Tool
results become the user turn a Qwen chat template renders them as
(`<tool_response>` blocks, consecutive results in one turn), since the API
takes images in no other role and a `tool` message only after structured
`tool_calls`. One record per line, `{"messages": [...]}`, is the shape of
OpenAI's chat fine-tuning JSONL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..dialects import Dialect
from ..images import Image
from ..trajectory import Trajectory
from ._common import load_dialect


def to_openai(traj: Trajectory, dialect: str | Dialect | None = None) -> list[dict[str, Any]]:
    """The chat messages of `traj` with each image part as an `image_url` data URL."""
    h = traj.header
    d = load_dialect(dialect or h.dialect)
    messages = d.build_messages(h.system_prompt, h.question, h.images, traj.steps)
    by_path = {str(im.path.resolve()): im for im in traj.all_images()}
    out: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "tool":
            block = [{"type": "text", "text": "\n<tool_response>\n"}, *m["content"],
                     {"type": "text", "text": "\n</tool_response>"}]
            if out and out[-1]["role"] == "user" and out[-1].get("_tools"):
                out[-1]["content"] += _content(block, by_path)
            else:
                block[0] = {"type": "text", "text": "<tool_response>\n"}
                out.append({"role": "user", "content": _content(block, by_path), "_tools": True})
            continue
        out.append({"role": m["role"], "content": _content(m["content"], by_path)})
    return [{"role": m["role"], "content": _joined(m["content"])} for m in out]


def to_openai_record(traj: Trajectory) -> dict[str, Any]:
    return {"messages": to_openai(traj)}


def _joined(content: Any) -> Any:
    """Adjacent text parts as one."""
    if isinstance(content, str):
        return content
    out: list[dict[str, Any]] = []
    for part in content:
        if part["type"] == "text" and out and out[-1]["type"] == "text":
            out[-1] = {"type": "text", "text": out[-1]["text"] + part["text"]}
        elif part["type"] != "text" or part["text"]:
            out.append(part)
    return out


def _content(content: Any, by_path: dict[str, Image]) -> Any:
    if isinstance(content, str):
        return content
    out = []
    for part in content:
        if part.get("type") == "image":
            src = str(part.get("image") or part.get("path") or "")
            im = by_path.get(str(Path(src).resolve())) or Image.from_file(src)
            out.append({"type": "image_url", "image_url": {"url": im.data_url()}})
        else:
            out.append(dict(part))
    return out

