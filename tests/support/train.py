"""Helpers for the training tests: synthetic trajectories on disk and tiny models loaded the normal way."""

from __future__ import annotations

from pathlib import Path

from r1v4_nb.train.synthetic import make_task
from r1v4_nb.trajectory import Trajectory, read, write


def written(tmp: Path, variants: tuple[str, ...], seed: int = 0) -> list[Trajectory]:
    """Synthetic trajectories written with r1v4_nb.trajectory.write and read back."""
    out = []
    for i, v in enumerate(variants):
        traj = make_task(tmp / "drawn", i, v, seed)
        out.append(read(write(tmp / f"{v}-{i}.jsonl", traj)))
    return out


def load_tiny(path: Path, quantization: str | None = None, adapter: Path | None = None):
    """(model, processor) of a tiny model folder loaded the normal way (4-bit: Linear layers and experts)."""
    from r1v4_nb.models.hf import load

    m = load(path, quantization=quantization, adapter=adapter, progress=None)
    return m.model, m.processor
