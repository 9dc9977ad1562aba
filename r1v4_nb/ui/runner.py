"""LiveRun: an agent run driven in a background thread and shown in a RunView.

Why a thread: while a cell executes, the kernel does not read messages from the
front end, so a Stop button could not be heard. Running the agent in a thread
lets the cell return at once and keeps the kernel free; the widget's Stop
message then reaches `Agent.stop()`. `wait()` blocks instead (an interrupt of
the kernel stops the run cleanly). When the run ends, the static HTML of the
run is written into the cell's output through its display id, so a saved
notebook shows the run without a kernel.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..events import RunFinished, RunStarted
from ..trajectory import Trajectory, read
from .widget import RunView


class LiveRun:
    """One run: its agent, its view, its thread; `result`/`trajectory` once it is over."""

    def __init__(self, agent: Any, events: Iterator[Any], view: RunView | None = None):
        self.agent = agent
        self.view = view or RunView()
        self.path: Path | None = None
        self.reason: str | None = None
        self.answer: str | None = None
        self.error: BaseException | None = None
        self._events = events
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_done: list[Callable[[LiveRun], None]] = []
        self.view.on_stop(self.stop)

    def start(self) -> LiveRun:
        ctx = contextvars.copy_context()  # keeps the cell's output context for anything the thread displays
        self._thread = threading.Thread(target=ctx.run, args=(self._drive,), name="r1v4-run", daemon=True)
        self._thread.start()
        return self

    def run_here(self) -> LiveRun:
        """Drive the run in the calling thread (scripts, tests)."""
        self._drive()
        return self

    def _drive(self) -> None:
        try:
            for ev in self._events:
                if isinstance(ev, RunStarted):
                    self.path = ev.path
                elif isinstance(ev, RunFinished):
                    self.reason, self.answer = ev.reason, ev.answer
                self.view.apply(ev)
        except BaseException as exc:  # recorded for wait(); the view already shows the RunError card
            self.error = exc
        finally:
            self.view.finish()
            self._done.set()
            for fn in list(self._on_done):
                fn(self)

    def on_done(self, fn: Callable[[LiveRun], None]) -> None:
        """Call `fn(run)` when the run ends (at once if it has)."""
        self._on_done.append(fn)
        if self._done.is_set():
            fn(self)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def stop(self) -> None:
        """Ask the agent to stop; the run ends with reason "cancelled"."""
        self.agent.stop()

    def wait(self, timeout: float | None = None) -> LiveRun:
        """Block until the run ends; an interrupt (Ctrl-C, the kernel's stop button) stops it cleanly."""
        try:
            self._done.wait(timeout)
        except KeyboardInterrupt:
            self.stop()
            self._done.wait()
        if self.error is not None and not isinstance(self.error, KeyboardInterrupt):
            raise self.error
        return self

    @property
    def trajectory(self) -> Trajectory:
        """The recorded run (read from its file)."""
        if self.path is None:
            from ..errors import UsageError

            raise UsageError("the run has not started yet; call wait() first")
        return read(self.path)

    def _repr_mimebundle_(self, **kw: Any) -> Any:
        return self.view._repr_mimebundle_(**kw)

    def __repr__(self) -> str:
        state = "running" if not self.done else f"{self.reason}, answer={self.answer!r}"
        return f"<LiveRun {self.path or '(starting)'}: {state}>"


def trajectory_of(run_or_path: LiveRun | Trajectory | str | Path) -> Trajectory:
    """A trajectory from a LiveRun, a path or a Trajectory."""
    if isinstance(run_or_path, Trajectory):
        return run_or_path
    if isinstance(run_or_path, LiveRun):
        return run_or_path.trajectory
    return read(run_or_path)
