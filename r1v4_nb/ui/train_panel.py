"""The live training panel, the `%%r1v4 train` magic, and the before / after view.

The panel is a `Progress` (r1v4_nb.train.progress): an inline SVG loss curve,
step, loss, learning rate, tokens/s, ETA and memory, and a Stop button. A run
started with `start_training` goes on in a background thread so the kernel
stays free to handle the Stop click; `job.wait()` blocks until it ends.
"""

from __future__ import annotations

import glob
import html
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import ipywidgets as w

from ..errors import UsageError
from ..train.progress import Progress, StepMetrics, TrainInfo, format_duration
from .render import hide_snapshot, snapshot

SVG_W, SVG_H, PAD = 420, 140, 28


def loss_svg(losses: list[float], total: int) -> str:
    """A loss curve as inline SVG (x: step 1..total, y: loss, min and max labelled)."""
    if not losses:
        return f'<svg width="{SVG_W}" height="{SVG_H}" role="img" aria-label="loss curve"></svg>'
    lo, hi = min(losses), max(losses)
    span = (hi - lo) or 1.0
    n = max(total, len(losses), 2)

    def xy(i: int, v: float) -> str:
        x = PAD + (SVG_W - 2 * PAD) * i / (n - 1)
        y = SVG_H - PAD + (-(SVG_H - 2 * PAD) * (v - lo) / span)
        return f"{x:.1f},{y:.1f}"

    points = " ".join(xy(i, v) for i, v in enumerate(losses))
    return (f'<svg width="{SVG_W}" height="{SVG_H}" role="img" aria-label="loss curve" '
            f'style="background:#fafafa;border:1px solid #ddd">'
            f'<polyline fill="none" stroke="#2b6cb0" stroke-width="1.5" points="{points}"/>'
            f'<text x="2" y="{PAD}" font-size="10">{hi:.3f}</text>'
            f'<text x="2" y="{SVG_H - PAD + 4}" font-size="10">{lo:.3f}</text>'
            f'<text x="{SVG_W - PAD - 30}" y="{SVG_H - 6}" font-size="10">step {len(losses)}/{total}</text>'
            "</svg>")


class TrainPanel(Progress):
    """A live view of a run; pass it as `progress=` and display `panel.widget`."""

    def __init__(self, min_interval_s: float = 0.3):
        self.losses: list[float] = []
        self.total = 0
        self.stop_event = threading.Event()
        self.chart = w.HTML(loss_svg([], 1))
        self.stats = w.HTML("waiting for the first step…")
        self.status = w.HTML("")
        self.stop_button = w.Button(description="Stop", icon="stop", button_style="warning",
                                    tooltip="save a checkpoint after this step and end the run")
        self.stop_button.on_click(lambda _b: self.stop())
        self.key = uuid.uuid4().hex
        self.display_id: str | None = None  # the static copy under the widget, once displayed
        self.widget = w.VBox([w.HTML(hide_snapshot(self.key)), self.chart, self.stats,
                              w.HBox([self.stop_button, self.status])])
        self.widget.add_class("r1v4-train-panel")
        self._last = 0.0
        self._min_interval = min_interval_s
        self._pending: StepMetrics | None = None

    def note(self, message: str) -> None:
        """A step before training starts (loading the model), shown on the status line."""
        self.status.value = html.escape(message)

    def stop(self) -> None:
        self.stop_event.set()
        self.stop_button.disabled = True
        self.status.value = "stopping after this step…"

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        display(self.widget)
        self.display_id = f"r1v4-snapshot-{self.key}"
        display(HTML(self.snapshot_html()), display_id=self.display_id)

    def snapshot_html(self) -> str:
        """The panel as static HTML (curve, last figures, status) for a saved notebook."""
        return snapshot(f'<div class="r1v4-train-static">{self.chart.value}<div>{self.stats.value}</div>'
                        f"<div>{self.status.value}</div></div>", self.key)

    def _update_snapshot(self) -> None:
        if self.display_id is not None:
            from IPython.display import HTML, update_display

            update_display(HTML(self.snapshot_html()), display_id=self.display_id)

    def failed(self, exc: BaseException) -> None:
        """The run ended with an error: say so, and leave no Stop button that would do nothing."""
        self.stop_button.disabled = True
        self.stop_button.layout.display = "none"
        if not self.losses:
            self.stats.value = "not started"
        self.status.value = html.escape(f"error: {exc}")
        self._update_snapshot()

    def on_start(self, info: TrainInfo) -> None:
        self.total = info.total_steps
        self.losses = list(info.losses)
        self.status.value = html.escape(f"{info.trainable:,} LoRA parameters, {info.examples} examples"
                                        + (f", resumed at step {info.start_step}" if info.start_step else ""))
        self.chart.value = loss_svg(self.losses, self.total)

    def on_step(self, m: StepMetrics) -> None:
        self.losses.append(m.loss)
        self._pending = m
        now = time.monotonic()
        if now - self._last >= self._min_interval or m.step == m.total_steps:
            self._draw()
            self._last = now

    def _draw(self) -> None:
        m = self._pending
        if m is None:
            return
        self.chart.value = loss_svg(self.losses, self.total)
        self.stats.value = (f"<code>step {m.step}/{m.total_steps} · loss {m.loss:.4f} · lr {m.lr:.2e} · "
                            f"{m.tokens_per_s:,.0f} tok/s · ETA {format_duration(m.eta_s)} · "
                            f"mem {m.memory_mb:,.0f} MiB</code>")

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.status.value = html.escape(f"checkpoint at step {step}: {path}")
        self._update_snapshot()

    def on_end(self, result: Any) -> None:
        self._draw()
        self.stop_button.disabled = True
        self.stop_button.layout.display = "none"
        state = "stopped" if result.stopped else "done"
        self.status.value = html.escape(f"{state} after {result.steps} steps; adapter: {result.adapter}")
        self._update_snapshot()


class TrainJob:
    """A run in a background thread; `wait()` returns its TrainResult (or raises its error)."""

    def __init__(self, target: Any, panel: TrainPanel):
        self.panel = panel
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(target,), daemon=True, name="r1v4-train")
        self._thread.start()

    def _run(self, target: Any) -> None:
        from .api import quiet_progress_bars

        try:
            with quiet_progress_bars():  # the panel is the progress; no loader bars (widgets) under it
                self.result = target()
        except BaseException as exc:  # handed to wait()
            self.error = exc
            self.panel.failed(exc)

    def stop(self) -> None:
        self.panel.stop()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self) -> Any:
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.result

    def _ipython_display_(self) -> None:
        self.panel._ipython_display_()


def start_training(config: Any, data: Any = None, model: Any = None, panel: TrainPanel | None = None) -> TrainJob:
    """Start `r1v4_nb.train.train` in the background with a live panel (displayed by the caller)."""
    from ..train import TrainConfig
    from ..train.sft import train

    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    if data is None:
        check_data(cfg)
    panel = panel or TrainPanel()

    def run() -> Any:
        loaded = model
        if loaded is None:  # loaded here so its steps go to the panel's status line, not to red stderr
            from ..models.hf import load

            if not cfg.model:
                raise UsageError("no model to train: set model = PATH (a local folder or hub id)")
            hf = load(cfg.model, quantization=cfg.quantization, max_pixels=cfg.max_pixels or None,
                      progress=panel.note)
            loaded = (hf.model, hf.processor)
        return train(cfg, data, model=loaded, progress=panel, stop_event=panel.stop_event)

    return TrainJob(run, panel)


def check_data(cfg: Any) -> None:
    """Fail before the model is loaded when the config names no data or a source that matches nothing."""
    if not cfg.data:
        raise UsageError("no training data: set data = [trajectory files, folders or globs] in the config")
    for src in cfg.data:
        if not Path(src).exists() and not glob.glob(str(src), recursive=True):
            raise UsageError(f"no trajectories at {src}: give a .jsonl file, a folder of them or a glob that matches")


def magic_train(cell: str | None, wait: bool, shell: Any) -> Any:
    """`%%r1v4 train [--wait]` (its options parsed by `magics`): the cell body is the config."""
    from IPython.display import display

    from ..train import TrainConfig

    if not cell or not cell.strip():
        raise UsageError("%%r1v4 train needs a config in the cell body, e.g. model = PATH / data = runs/*.jsonl")
    cfg = TrainConfig.from_text(cell)
    job = start_training(cfg)
    display(job.panel)
    if shell is not None:
        shell.user_ns["_r1v4_train_job"] = job
    if wait:
        return job.wait().to_json()
    return None


def before_after_view(pairs: list[Any]) -> Any:
    """Each task's base and tuned runs step by step in two labelled columns, the answers above (static HTML)."""
    from .compare import BeforeAfter

    return BeforeAfter(list(pairs))
