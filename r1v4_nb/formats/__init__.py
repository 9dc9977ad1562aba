"""Other formats a trajectory travels in, one module each.

Exporters (trajectory -> records): `openai` (chat messages with images as data
URLs; OpenAI's chat fine-tuning JSONL), `hf` (Hugging Face chat messages for
chat templates and training), `sharegpt` (LLaMA-Factory's ShareGPT, which also
imports back). Importers: `sharegpt.from_sharegpt` and `r1v4_api.import_reply`
(the hosted Skywork-R1V4 API's one-string reply).

Every exported context is built by the trajectory's dialect (`build_messages`),
the same function runs and training use, so what a file shows is what the
model saw.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError
from ..trajectory import Trajectory, atomic_write_text

EXPORT_FORMATS = ("openai", "hf", "sharegpt")


LAYOUTS = ("jsonl", "json")


def layout_for(path: str | Path, fmt: str) -> str:
    """How a file is laid out: `.jsonl` JSON Lines, `.json` one JSON array, else the format's usual one."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".json"):
        return suffix[1:]
    return "json" if fmt == "sharegpt" else "jsonl"


def export_text(trajectories: Sequence[Trajectory], fmt: str, root: Path | None = None,
                layout: str | None = None) -> str:
    """The file text of `trajectories` in `fmt`, as JSON Lines or one JSON array (`layout`).

    The default layout is JSON Lines for openai / hf and a JSON array for sharegpt (what
    LLaMA-Factory's dataset_info expects). `root` is the folder the file will live in: ShareGPT
    image paths are written relative to it.
    """
    if fmt == "openai":
        from .openai import to_openai_record as record
    elif fmt == "hf":
        from .hf import to_hf_record as record
    elif fmt == "sharegpt":
        from .sharegpt import to_sharegpt

        def record(t: Trajectory) -> dict:
            return to_sharegpt(t, root=root)
    else:
        raise UsageError(f"unknown export format {fmt!r}; choose one of: {', '.join(EXPORT_FORMATS)}")
    layout = layout or ("json" if fmt == "sharegpt" else "jsonl")
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
    records = [record(t) for t in trajectories]
    if layout == "json":
        return json.dumps(records, ensure_ascii=False, indent=2) + "\n"
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def export(trajectories: Sequence[Trajectory], fmt: str, out: str | Path) -> Path:
    """Write `trajectories` in `fmt` to `out`, atomically (a reader never sees a half-written file).

    A `.json` file gets one JSON array, a `.jsonl` file JSON Lines (`layout_for`)."""
    p = Path(out)
    atomic_write_text(p, export_text(trajectories, fmt, root=p.parent.resolve(), layout=layout_for(p, fmt)))
    return p


__all__ = ["EXPORT_FORMATS", "LAYOUTS", "export", "export_text", "layout_for"]
