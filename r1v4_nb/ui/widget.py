"""RunView: the live widget of one run (an anywidget), fed by agent events.

The kernel keeps the cards (`cards.RunState`) and sends the front end only
patches, batched: at most one message per `interval` seconds (20 a second by
default), each holding the patches since the last one, with superseded patches
dropped (a card that is redrawn loses the pending appends to it). Each message
has a sequence number; a front end that missed one (a reloaded page) asks for
the whole state ("hello") and gets it in one message. Images go as thumbnails;
a click asks for the full resolution.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..trajectory import Trajectory
from .cards import Op, RunState
from .render import CSS, full_url, render_run

HEADER_EVERY_S = 1.0  # while streaming, the header's counters are refreshed this often

_JS = (Path(__file__).parent / "static" / "runview.js").read_text(encoding="utf-8")


class RunView(anywidget.AnyWidget):
    """Cards of a run, updated as events arrive; `apply(event)` is the whole feeding interface."""

    _esm = _JS
    _css = CSS
    run_key = traitlets.Unicode("").tag(sync=True)

    def __init__(self, state: RunState | None = None, interval: float = 0.05, stoppable: bool = True, **kw: Any):
        """`stoppable=False`: the run blocks the kernel (`--wait`), so no Stop button could be heard; none is shown."""
        super().__init__(run_key=uuid.uuid4().hex, **kw)
        self.interval = interval
        self.bytes_sent = 0
        self.messages_sent = 0
        self._pending: list[Op] = []
        self._lock = threading.RLock()
        self._seq = 0
        self._last_send = 0.0
        self._last_header = 0.0
        self._timer: threading.Timer | None = None
        self._stop_handlers: list[Callable[[], None]] = []
        self.state = state or RunState()
        self.state.stoppable = stoppable
        self.state.listener = self._queue
        self.on_msg(self._on_front_end)
        self._send_reset()

    @classmethod
    def from_trajectory(cls, traj: Trajectory, **kw: Any) -> RunView:
        """The finished view of a recorded run."""
        return cls(RunState.from_trajectory(traj), **kw)

    # -- feeding --------------------------------------------------------------------------------------

    def apply(self, event: Any) -> None:
        """Update the view for one agent event (safe to call from the thread that runs the agent)."""
        with self._lock:
            self.state.apply(event)

    def on_stop(self, fn: Callable[[], None]) -> None:
        """Call `fn` when the Stop button is pressed."""
        self._stop_handlers.append(fn)

    def finish(self) -> None:
        """Send what is pending now (the run is over)."""
        self.flush()

    def snapshot_html(self) -> str:
        """The run as static HTML that this live view hides while it is on the page."""
        with self._lock:
            return render_run(self.state, mark=self.run_key)

    # -- batching -------------------------------------------------------------------------------------

    def _queue(self, op: Op) -> None:
        with self._lock:
            self._pending = _coalesce(self._pending, op)
            wait = self.interval - (time.monotonic() - self._last_send)
            if wait <= 0:
                self._flush_locked()
            elif self._timer is None:
                self._timer = threading.Timer(wait, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = time.monotonic()
        if self.state.status == "running" and now - self._last_header >= HEADER_EVERY_S and self._pending:
            self._pending = _coalesce(self._pending, ["h", self.state.header_html(live=True)])
        if not self._pending:
            return
        if any(op[0] == "h" for op in self._pending):
            self._last_header = now
        ops, self._pending = self._pending, []
        self._seq += 1
        self._send_msg({"seq": self._seq, "ops": ops})
        self._last_send = now

    def _send_reset(self) -> None:
        with self._lock:
            from .render import render_card

            cards = [render_card(card, c, self.state.images) for c, card in enumerate(self.state.cards)]
            self._pending = []
            self._send_msg({"seq": self._seq, "reset": [self.state.header_html(live=True), cards]})
            self._last_send = time.monotonic()

    def _send_msg(self, content: dict[str, Any]) -> None:
        self.bytes_sent += len(json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        self.messages_sent += 1
        self.send(content)

    # -- messages from the front end --------------------------------------------------------------------

    def _on_front_end(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        op = content.get("op") if isinstance(content, dict) else None
        if op == "hello":
            self._send_reset()
        elif op == "stop":
            for fn in list(self._stop_handlers):
                fn()
        elif op == "full":
            im = self.state.images.get(str(content.get("sha", "")))
            if im is not None:
                self._send_msg({"full": im.sha256, "url": full_url(im)})


def _coalesce(pending: list[Op], op: Op) -> list[Op]:
    """Add `op`, merging it into a pending append or dropping pending patches it supersedes."""
    kind = op[0]
    if kind == "a" and pending:
        last = pending[-1]
        if last[0] == "a" and last[1] == op[1] and last[2] == op[2]:
            return [*pending[:-1], ["a", op[1], op[2], last[3] + op[3]]]
        return pending + [op]
    if kind == "h":
        return [p for p in pending if p[0] != "h"] + [op]
    if kind == "c":
        return [p for p in pending if not (p[0] in "acfs" and p[1] == op[1])] + [op]
    if kind == "s" and op[3] is not None:
        return [p for p in pending if not (p[0] in "as" and p[1] == op[1] and p[2] == op[2])] + [op]
    if kind == "f":
        return [p for p in pending if not (p[0] == "f" and p[1] == op[1])] + [op]
    return pending + [op]
