"""The cards of a run view: each holds the records of its step (`ModelStep`, `ToolStep`, `NoteStep`, the
header, the end), so the renderer reads the fields the trajectory defines instead of a second vocabulary.

The one thing no record has is a segment of the turn still streaming: `LiveSegment`. `cards.RunState` builds
these cards from events; `render.py` draws them. Both import this module, which imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Union

from ..records import ModelStep, NoteStep, Segment, ToolCall, ToolStep
from ..trajectory import End, Header

__all__ = ["STEP_CARDS", "Card", "EndCard", "ErrorCard", "LiveSegment", "ModelCard", "NoteCard",
           "QuestionCard", "Recording", "ToolCard"]


@dataclass
class LiveSegment:
    """A segment of the turn in flight, still streaming: its kind and the text shown so far (a tool call's
    JSON read as it comes, `StreamedCall`). The `SegmentClosed` event replaces it with the parsed record."""

    kind: str
    text: str = ""


@dataclass
class Recording:
    """The recording a replayed model plays: its file's name, and what the user asked that the recording
    cannot answer (the header's `meta["recording"]`, written when a replay model is asked something else)."""

    source: str | None
    asked: str | None = None
    asked_images: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, header: Header) -> Recording | None:
        """The recording of a run whose model is a replay, else None."""
        model = header.model or {}
        if model.get("backend") != "replay":
            return None
        rec = header.meta.get("recording") or {}
        name = Path(str(model["source"])).name if model.get("source") else None
        # the meta may name the source itself (it wins over the model's file name)
        return cls(rec.get("source", name), rec.get("asked"), list(rec.get("asked_images") or []))


@dataclass
class QuestionCard:
    """The run's header: question, mode, model and input images; `path` the file as the view names it."""

    header: Header
    path: str | None
    recording: Recording | None
    type: ClassVar[str] = "question"


@dataclass
class ModelCard:
    """A model turn: its segments as they stream, then the finished step (usage, timing, finish reason)."""

    index: int
    recorded: bool  # the turn is replayed from a recording
    segments: list[Segment | LiveSegment] = field(default_factory=list)
    step: ModelStep | None = None
    edited: bool = False  # the step a branch was forked at
    type: ClassVar[str] = "model"


@dataclass
class ToolCard:
    """A tool call: the call while it runs, then the finished step with its observation."""

    index: int
    call: ToolCall
    step: ToolStep | None = None
    edited: bool = False
    type: ClassVar[str] = "tool"


@dataclass
class NoteCard:
    step: NoteStep
    edited: bool = False
    type: ClassVar[str] = "note"

    @property
    def index(self) -> int:
        return self.step.index


@dataclass
class ErrorCard:
    text: str
    index: int | None
    type: ClassVar[str] = "error"


@dataclass
class EndCard:
    """How the run ended; `end.answer` is the answer the view shows (the last one announced)."""

    end: End
    recorded: bool
    type: ClassVar[str] = "end"


Card = Union[QuestionCard, ModelCard, ToolCard, NoteCard, ErrorCard, EndCard]
STEP_CARDS = (ModelCard, ToolCard, NoteCard)  # the cards of steps, found by their index
