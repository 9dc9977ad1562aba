"""Trajectory -> Hugging Face chat messages, for chat templates and training.

Image parts are `{"type": "image", "image": ...}` holding an absolute path (the
default, JSON-safe) or a loaded PIL image (`images="pil"`), which processors'
`apply_chat_template` accept either way. The messages come from the dialect,
so a training example shows the model exactly the context it had at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..dialects import Dialect
from ..errors import UsageError
from ..messages import image_paths
from ..trajectory import Trajectory
from ._common import load_dialect

IMAGE_MODES = ("path", "pil")


def to_hf(traj: Trajectory, images: str = "path", dialect: str | Dialect | None = None) -> list[dict[str, Any]]:
    """The chat messages of `traj`; `images` is "path" (absolute file paths) or "pil" (PIL images)."""
    if images not in IMAGE_MODES:
        raise UsageError(f"images={images!r}: choose one of {', '.join(IMAGE_MODES)}")
    h = traj.header
    d = load_dialect(dialect or h.dialect)
    messages = d.build_messages(h.system_prompt, h.question, h.images, traj.steps)
    return [{**m, "content": _content(m["content"], images)} for m in messages]


def to_hf_record(traj: Trajectory) -> dict[str, Any]:
    """One JSONL line: the messages and, for trainers that want them apart, the image paths in order."""
    messages = to_hf(traj)
    return {"messages": messages, "images": image_paths(messages)}


def _content(content: Any, images: str) -> Any:
    if isinstance(content, str):
        return content
    out = []
    for part in content:
        if part.get("type") == "image":
            path = Path(str(part.get("image") or part.get("path"))).resolve()
            if images == "pil":
                from PIL import Image as PILImage

                with PILImage.open(path) as im:
                    im.load()
                    out.append({"type": "image", "image": im.copy()})
            else:
                out.append({"type": "image", "image": str(path)})
        else:
            out.append(dict(part))
    return out
