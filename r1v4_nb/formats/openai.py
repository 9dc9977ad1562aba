"""Trajectory -> OpenAI chat messages, images inlined as data URLs.

The messages are the dialect's context after every step, so they hold exactly
what the model saw plus what it wrote in its last turn. One record per line,
`{"messages": [...]}`, is the shape of OpenAI's chat fine-tuning JSONL.
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
    return [{**m, "content": _content(m["content"], by_path)} for m in messages]


def to_openai_record(traj: Trajectory) -> dict[str, Any]:
    return {"messages": to_openai(traj)}


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

