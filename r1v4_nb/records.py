"""The shared vocabulary of a run: tool calls, observations and the three kinds of step.

These records sit at the bottom of the data flow, so dialects, tools, the agent,
the trajectory file and the views all speak the same types. Each has a
`to_json` / `from_json` pair that the trajectory format is built from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .images import Image


@dataclass
class ToolCall:
    """A tool call as the model wrote it. `error` is set when it cannot be run (bad JSON, unknown tool...)."""

    name: str
    arguments: dict[str, Any]
    raw: str = ""
    error: str | None = None
    id: str = ""

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "name": self.name, "arguments": self.arguments, "raw": self.raw}
        if self.error:
            d["error"] = self.error
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ToolCall:
        return cls(d.get("name", ""), d.get("arguments") or {}, d.get("raw", ""), d.get("error"), d.get("id", ""))


@dataclass
class Observation:
    """What a tool gives back: text for the model, images, and structured `data` for the views."""

    text: str = ""
    images: list[Image] = field(default_factory=list)
    error: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    limits_hit: list[str] = field(default_factory=list)

    def to_json(self, relative_to: Path | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {"text": self.text, "images": [im.to_json(relative_to) for im in self.images]}
        if self.error:
            d["error"] = self.error
        if self.data:
            d["data"] = self.data
        if self.limits_hit:
            d["limits_hit"] = list(self.limits_hit)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], base: Path | None = None) -> Observation:
        return cls(
            text=d.get("text", ""),
            images=[Image.from_json(i, base) for i in d.get("images", [])],
            error=d.get("error"),
            data=d.get("data") or {},
            limits_hit=list(d.get("limits_hit") or []),
        )


@dataclass
class Segment:
    """A parsed piece of model output: think, text, tool_call, code, answer, plan (observation in transcripts).

    `call` is set on segments that ask for a tool (a `<tool_call>`, or `<code>` which calls the code tool).
    """

    kind: str
    text: str
    call: ToolCall | None = None
    closed: bool = True
    note: str = ""  # how a lenient parse read it ("</think> written as an opener", ...)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "text": self.text}
        if self.call is not None:
            d["call"] = self.call.to_json()
        if not self.closed:
            d["closed"] = False
        if self.note:
            d["note"] = self.note
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Segment:
        call = ToolCall.from_json(d["call"]) if d.get("call") else None
        return cls(d["kind"], d.get("text", ""), call, d.get("closed", True), d.get("note", ""))


@dataclass
class ModelStep:
    """One model turn: the raw text exactly as generated, its segments, token counts and timings."""

    index: int
    text: str
    segments: list[Segment] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    elapsed_s: float = 0.0
    ttft_s: float | None = None
    finish_reason: str = "stop"
    type: str = field(default="model", init=False)

    def to_json(self, relative_to: Path | None = None) -> dict[str, Any]:
        return {
            "type": "model", "index": self.index, "text": self.text,
            "segments": [s.to_json() for s in self.segments],
            "tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
            "elapsed_s": round(self.elapsed_s, 6),
            "ttft_s": None if self.ttft_s is None else round(self.ttft_s, 6),
            "finish_reason": self.finish_reason,
        }

    @property
    def calls(self) -> list[ToolCall]:
        return [s.call for s in self.segments if s.call is not None]

    @property
    def answer(self) -> str | None:
        for s in self.segments:
            if s.kind == "answer":
                return s.text
        return None


@dataclass
class ToolStep:
    """One tool call and what came back."""

    index: int
    call: ToolCall
    observation: Observation
    elapsed_s: float = 0.0
    type: str = field(default="tool", init=False)

    def to_json(self, relative_to: Path | None = None) -> dict[str, Any]:
        return {"type": "tool", "index": self.index, "call": self.call.to_json(),
                "observation": self.observation.to_json(relative_to), "elapsed_s": round(self.elapsed_s, 6)}


@dataclass
class NoteStep:
    """Text put into the context by the agent or a person, not by the model (a budget notice, a fork's edit).

    Reason `user` marks a later user turn of a multi-turn chat (an imported conversation), which goes
    back to the model as a user message with its `images`; any other note is a system message.
    """

    index: int
    text: str
    reason: str = ""
    images: list[Image] = field(default_factory=list)
    type: str = field(default="note", init=False)

    def to_json(self, relative_to: Path | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "note", "index": self.index, "text": self.text, "reason": self.reason}
        if self.images:
            d["images"] = [im.to_json(relative_to) for im in self.images]
        return d


Step = Union[ModelStep, ToolStep, NoteStep]


def step_from_json(d: dict[str, Any], base: Path | None = None) -> Step:
    """Rebuild a step from its JSON line; raises KeyError/ValueError/TypeError on a malformed record."""
    kind = d["type"]
    if kind == "model":
        return ModelStep(
            index=int(d["index"]), text=d["text"],
            segments=[Segment.from_json(s) for s in d.get("segments", [])],
            tokens_in=int(d.get("tokens_in", 0)), tokens_out=int(d.get("tokens_out", 0)),
            elapsed_s=float(d.get("elapsed_s", 0.0)), ttft_s=d.get("ttft_s"),
            finish_reason=d.get("finish_reason", "stop"),
        )
    if kind == "tool":
        return ToolStep(int(d["index"]), ToolCall.from_json(d["call"]),
                        Observation.from_json(d["observation"], base), float(d.get("elapsed_s", 0.0)))
    if kind == "note":
        return NoteStep(int(d["index"]), d["text"], d.get("reason", ""),
                        [Image.from_json(i, base) for i in d.get("images") or []])
    raise ValueError(f"unknown step type {kind!r}")
