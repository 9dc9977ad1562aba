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


def export_text(trajectories: Sequence[Trajectory], fmt: str, root: Path | None = None) -> str:
    """The file text of `trajectories` in `fmt`: JSONL for openai / hf, a JSON list for sharegpt.

    `root` is the folder the file will live in: ShareGPT image paths are written relative to it.
    """
    if fmt == "openai":
        from .openai import to_openai_record

        return "".join(json.dumps(to_openai_record(t), ensure_ascii=False) + "\n" for t in trajectories)
    if fmt == "hf":
        from .hf import to_hf_record

        return "".join(json.dumps(to_hf_record(t), ensure_ascii=False) + "\n" for t in trajectories)
    if fmt == "sharegpt":
        from .sharegpt import to_sharegpt

        records = [to_sharegpt(t, root=root) for t in trajectories]
        return json.dumps(records, ensure_ascii=False, indent=2) + "\n"
    raise UsageError(f"unknown export format {fmt!r}; choose one of: {', '.join(EXPORT_FORMATS)}")


def export(trajectories: Sequence[Trajectory], fmt: str, out: str | Path) -> Path:
    """Write `trajectories` in `fmt` to `out`, atomically (a reader never sees a half-written file)."""
    p = Path(out)
    atomic_write_text(p, export_text(trajectories, fmt, root=p.parent.resolve()))
    return p


__all__ = ["EXPORT_FORMATS", "export", "export_text"]
