"""Progress of a training run as a small callback interface.

The trainer calls `on_start`, `on_step` (every `log_every` steps), `on_checkpoint`
and `on_end`; the terminal printer here and the notebook panel
(`r1v4_nb.ui.train_panel`) implement it, and a list of them fans out with `Fanout`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO


@dataclass
class TrainInfo:
    total_steps: int
    start_step: int
    examples: int
    trainable: int
    output_dir: str
    losses: list[float] = field(default_factory=list)  # earlier losses of a resumed run


@dataclass
class StepMetrics:
    step: int
    total_steps: int
    loss: float
    lr: float
    tokens_per_s: float
    tokens: int
    loss_tokens: int
    elapsed_s: float
    eta_s: float
    memory_mb: float


class Progress:
    """Receives a run's events; every method is optional."""

    def on_start(self, info: TrainInfo) -> None: ...

    def on_step(self, metrics: StepMetrics) -> None: ...

    def on_checkpoint(self, step: int, path: Path) -> None: ...

    def on_end(self, result: Any) -> None: ...


class Fanout(Progress):
    def __init__(self, *targets: Progress):
        self.targets = targets

    def on_start(self, info: TrainInfo) -> None:
        for t in self.targets:
            t.on_start(info)

    def on_step(self, metrics: StepMetrics) -> None:
        for t in self.targets:
            t.on_step(metrics)

    def on_checkpoint(self, step: int, path: Path) -> None:
        for t in self.targets:
            t.on_checkpoint(step, path)

    def on_end(self, result: Any) -> None:
        for t in self.targets:
            t.on_end(result)


def peak_memory_mb(device: Any = None) -> float:
    """Peak memory so far: the GPU's allocator peak on CUDA, else the process's peak resident set."""
    import resource

    import torch

    if device is not None and getattr(device, "type", "") == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def format_duration(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def metrics_line(m: StepMetrics) -> str:
    return (f"step {m.step}/{m.total_steps}  loss {m.loss:.4f}  lr {m.lr:.2e}  {m.tokens_per_s:,.0f} tok/s  "
            f"eta {format_duration(m.eta_s)}  mem {m.memory_mb:,.0f} MiB")


class TerminalProgress(Progress):
    """A progress bar on one line in a terminal; one line per step elsewhere (logs, CI)."""

    def __init__(self, stream: TextIO | None = None, width: int = 24):
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def on_start(self, info: TrainInfo) -> None:
        resumed = f", resumed at step {info.start_step}" if info.start_step else ""
        self.stream.write(f"training {info.trainable:,} LoRA parameters on {info.examples} examples "
                          f"for {info.total_steps} steps{resumed} -> {info.output_dir}\n")
        self.stream.flush()

    def on_step(self, m: StepMetrics) -> None:
        done = int(self.width * m.step / max(1, m.total_steps))
        bar = "#" * done + "-" * (self.width - done)
        line = f"[{bar}] {metrics_line(m)}"
        self.stream.write(f"\r{line}\x1b[K" if self.tty else line + "\n")
        self.stream.flush()

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.stream.write(("\n" if self.tty else "") + f"checkpoint at step {step}: {path}\n")
        self.stream.flush()

    def on_end(self, result: Any) -> None:
        state = "stopped" if result.stopped else "done"
        self.stream.write(("\n" if self.tty else "") + f"{state} after {result.steps} steps; "
                          + (f"model: {result.model_dir}\n" if getattr(result, "model_dir", None)
                             else f"adapter: {result.adapter}\n"))
        self.stream.flush()
