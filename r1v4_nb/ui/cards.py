"""The state of a run view: a list of cards built from the agent's events.

One `RunState` backs every view of a run. It is fed events (live) or a recorded
trajectory (replayed through the same events), keeps one card per step, and
reports each change as a small patch (`ops`): "append this text to segment s of
card c", "replace card c", "new header". The widget sends those patches to the
front end; the static renderer draws the same cards in one go.

Patches (lists, to keep them small):
  ["a", c, s, text]    append text to the body of segment s of card c
  ["s", c, s, html]    set (or add) segment s of card c
  ["c", c, html]       set (or add) card c
  ["f", c, html]       set the footer of card c
  ["h", html]          set the header

The cards (`cardtypes.py`) hold the run's records, so the renderer reads the fields the trajectory defines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..dialects.jsonstream import StreamedCall
from ..events import (
    Answered,
    NoteAdded,
    RunError,
    RunFinished,
    RunStarted,
    SegmentClosed,
    TokenDelta,
    ToolFinished,
    ToolStarted,
    TurnFinished,
    TurnStarted,
    events_of_step,
)
from ..images import Image
from ..trajectory import End, Header, Trajectory
from .cardtypes import (
    STEP_CARDS,
    Card,
    EndCard,
    ErrorCard,
    LiveSegment,
    ModelCard,
    NoteCard,
    QuestionCard,
    Recording,
    ToolCard,
)

__all__ = ["Op", "RunState"]

Op = list[Any]




class RunState:
    """The cards of one run and their running totals; `listener` gets every patch as it happens."""

    def __init__(self, listener: Callable[[Op], None] | None = None):
        self.listener = listener
        self.cards: list[Card] = []
        self.images: dict[str, Image] = {}
        self.run_id = ""
        self.path: str | None = None
        self.status = "waiting"
        self.started = time.monotonic()
        self.elapsed: float | None = None
        self.tokens_out = 0
        self.tokens_in = 0
        self.streamed = 0  # deltas of the turn in progress, counted as tokens until the turn reports usage
        self.answer: str | None = None
        self.fork_step: int | None = None  # a branch's edited step (header.parent.step), marked in its view
        self.recording: Recording | None = None  # set when the run's model replays a recording
        self.stoppable = True  # False for a run the Stop button cannot reach (a --wait run keeps the kernel busy)
        self._by_step: dict[int, int] = {}  # step index -> card position
        self._calls: dict[tuple[int, int], StreamedCall] = {}

    # -- feeding ----------------------------------------------------------------------------------

    @classmethod
    def from_trajectory(cls, traj: Trajectory, listener: Callable[[Op], None] | None = None) -> RunState:
        """The finished view of a recorded run (built through the same events a live run sends)."""
        st = cls(listener)
        st.start_run(traj.header, str(traj.path) if traj.path else None)
        for step in traj.steps:
            for ev in events_of_step(step):
                st.apply(ev)
        if traj.end is not None:
            if traj.end.error:
                st.apply(RunError(traj.end.error, None))
            st.apply(RunFinished(traj.end.reason, traj.end.answer, traj.end.elapsed_s, traj.end.usage))
        else:
            st.status = "unfinished"
            st.elapsed = sum(getattr(s, "elapsed_s", 0.0) for s in traj.steps)
        return st

    def apply(self, ev: Any) -> None:
        """Update the cards for one agent event."""
        handler = _HANDLERS.get(type(ev))
        if handler is not None:
            handler(self, ev)

    def start_run(self, header: Header, path: str | None) -> None:
        self.run_id = header.id
        self.path = path
        self.status = "running"
        self.started = time.monotonic()
        for im in header.images:
            self.images[im.sha256] = im
        self.fork_step = header.parent.get("step") if header.parent else None
        self.recording = Recording.of(header)
        self._add(QuestionCard(header, self.path, self.recording))

    # -- event handlers ---------------------------------------------------------------------------

    def _on_started(self, ev: RunStarted) -> None:
        self.start_run(ev.header, str(ev.path))
        self._header()

    def _on_turn(self, ev: TurnStarted) -> None:
        self.streamed = 0
        self._add(ModelCard(ev.index, self.recording is not None))

    def _model_card(self, index: int) -> tuple[int, ModelCard]:
        if index not in self._by_step:
            self._on_turn(TurnStarted(index))
        c = self._by_step[index]
        card = self.cards[c]
        assert isinstance(card, ModelCard)
        return c, card

    def _on_delta(self, ev: TokenDelta) -> None:
        c, card = self._model_card(ev.index)
        self.streamed += 1
        segs = card.segments
        if not segs or not isinstance(segs[-1], LiveSegment) or segs[-1].kind != ev.kind:
            segs.append(LiveSegment(ev.kind))
            s = len(segs) - 1
            if self.listener is not None:
                self._emit(["s", c, s, self._seg_html(card, s)])
        s = len(segs) - 1
        seg = segs[s]
        assert isinstance(seg, LiveSegment)
        if ev.kind == "tool_call":
            new = self._calls.setdefault((c, s), StreamedCall()).feed(ev.text)
        else:
            new = ev.text
        seg.text += new
        if new:
            self._emit(["a", c, s, new])

    def _on_segment(self, ev: SegmentClosed) -> None:
        c, card = self._model_card(ev.index)
        segs = card.segments
        final = ev.segment
        if segs and isinstance(segs[-1], LiveSegment) and segs[-1].kind == final.kind:
            s = len(segs) - 1
            unchanged = segs[s].text == final.text and final.kind not in ("tool_call", "code", "plan")
            segs[s] = final
            self._calls.pop((c, s), None)
            if unchanged:
                self._emit(["s", c, s, None])  # only the "open" mark goes: the text is already there
                return
        else:
            segs.append(final)
            s = len(segs) - 1
        if self.listener is not None:
            self._emit(["s", c, s, self._seg_html(card, s)])

    def _on_turn_finished(self, ev: TurnFinished) -> None:
        step = ev.step
        c, card = self._model_card(step.index)
        same = [(s.kind, s.text) for s in card.segments] == [(s.kind, s.text) for s in step.segments]
        card.segments = list(step.segments)
        card.step = step
        self.tokens_out += step.tokens_out
        self.tokens_in += step.tokens_in
        self.streamed = 0
        if self.listener is not None:
            self._emit(["f", c, self._footer_html(card)] if same else ["c", c, self._card_html(c)])
        self._header()

    def _on_tool_started(self, ev: ToolStarted) -> None:
        self._add(ToolCard(ev.index, ev.call))
        self._header()

    def _on_tool_finished(self, ev: ToolFinished) -> None:
        step = ev.step
        for im in step.observation.images:
            self.images[im.sha256] = im
        self._set(step.index, ToolCard(step.index, step.call, step))

    def _on_note(self, ev: NoteAdded) -> None:
        self._set(ev.step.index, NoteCard(ev.step))

    def _on_answered(self, ev: Answered) -> None:
        self.answer = ev.text

    def _on_error(self, ev: RunError) -> None:
        self._add(ErrorCard(ev.message, ev.index))

    def _on_finished(self, ev: RunFinished) -> None:
        self.status = ev.reason
        self.elapsed = ev.elapsed_s
        if ev.answer is not None:
            self.answer = ev.answer
        if ev.usage:
            self.tokens_out = int(ev.usage.get("completion_tokens", self.tokens_out))
            self.tokens_in = int(ev.usage.get("prompt_tokens", self.tokens_in))
        self.streamed = 0
        self._add(EndCard(End(ev.reason, self.answer, ev.elapsed_s, dict(ev.usage or {})),
                          self.recording is not None))
        self._header()

    # -- bookkeeping --------------------------------------------------------------------------------

    def _mark_edited(self, card: Card) -> None:
        if self.fork_step is not None and isinstance(card, STEP_CARDS) and card.index == self.fork_step:
            card.edited = True

    def _add(self, card: Card) -> int:
        self._mark_edited(card)
        self.cards.append(card)
        c = len(self.cards) - 1
        if isinstance(card, STEP_CARDS):
            self._by_step[card.index] = c
        if self.listener is not None:
            self._emit(["c", c, self._card_html(c)])
        return c

    def _set(self, index: int, card: Card) -> None:
        self._mark_edited(card)
        if index in self._by_step:
            c = self._by_step[index]
            self.cards[c] = card
            if self.listener is not None:
                self._emit(["c", c, self._card_html(c)])
        else:
            self._add(card)
        self._header()

    def _emit(self, op: Op) -> None:
        # Callers render HTML for an op only when there is a listener: a replay builds its cards with
        # none (the view then sends them all at once), and rendering each card for nobody doubled its cost.
        if self.listener is not None:
            self.listener(op)

    def _header(self) -> None:
        if self.listener is not None:
            self._emit(["h", self.header_html(live=True)])

    # -- numbers for the header ---------------------------------------------------------------------

    @property
    def step_count(self) -> int:
        return sum(1 for card in self.cards if isinstance(card, STEP_CARDS))

    @property
    def tokens(self) -> int:
        return self.tokens_out + self.streamed

    @property
    def seconds(self) -> float:
        return self.elapsed if self.elapsed is not None else time.monotonic() - self.started

    # -- rendering (delegated to the one renderer) --------------------------------------------------

    def _card_html(self, c: int) -> str:
        from .render import render_card

        return render_card(self.cards[c], c, self.images)

    def _seg_html(self, card: ModelCard, s: int) -> str:
        from .render import render_segment

        return render_segment(card.segments[s], s, card.recorded)

    def _footer_html(self, card: ModelCard) -> str:
        from .render import render_footer

        return render_footer(card)

    def header_html(self, live: bool = False) -> str:
        from .render import render_header

        return render_header(self, live=live)


_HANDLERS: dict[type, Callable[[RunState, Any], None]] = {
    RunStarted: RunState._on_started,
    TurnStarted: RunState._on_turn,
    TokenDelta: RunState._on_delta,
    SegmentClosed: RunState._on_segment,
    TurnFinished: RunState._on_turn_finished,
    ToolStarted: RunState._on_tool_started,
    ToolFinished: RunState._on_tool_finished,
    NoteAdded: RunState._on_note,
    Answered: RunState._on_answered,
    RunError: RunState._on_error,
    RunFinished: RunState._on_finished,
}
