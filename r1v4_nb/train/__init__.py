"""Training cells: trajectories to masked examples, LoRA / QLoRA SFT, before/after comparison.

`train(config, data, progress=...)` is the Python entry point; the `%%r1v4 train`
magic and `r1v4-nb train CONFIG` call it with the same `TrainConfig`. Heavy
imports (torch, transformers, peft) happen when training starts.
"""

from __future__ import annotations

from typing import Any

from .config import TrainConfig


def train(config: TrainConfig | dict[str, Any], data: Any = None, **kwargs: Any) -> Any:
    """Run SFT; see `r1v4_nb.train.sft.train`."""
    from .sft import train as _train

    return _train(config, data, **kwargs)


__all__ = ["TrainConfig", "train"]
