"""Models that need no weights: replaying a recorded run, or streaming scripted turns.

`ReplayModel` gives back the model turns of a trajectory one per call, so a run
can be re-executed (with tools replayed or live) or a fork can go on from a
recorded point. `ScriptedModel` streams given texts; tests and tutorials use it
to drive the agent with exactly the text they want. Both stream in small
chunks, honour stop strings like a real backend (the stop string is not sent)
and report usage, so everything downstream sees what a real model would give.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .base import Delta, GenerationSettings, Usage, cut_at_stop

DEMO_TRAJECTORY = Path(__file__).resolve().parent.parent / "demo" / "demo.jsonl"
# The bundled demonstrations by mode: general crops and reads; deepresearch crops, searches and reads pages.
DEMO_TRAJECTORIES = {"general": DEMO_TRAJECTORY, "deepresearch": DEMO_TRAJECTORY.with_name("deepresearch.jsonl")}


class ScriptedModel:
    """Streams `turns[k]` on the k-th call, in chunks of `chunk` characters."""

    def __init__(self, turns: Sequence[str], chunk: int = 4, name: str = "scripted", delay_s: float = 0.0,
                 honour_stop: bool = True):
        self.turns = list(turns)
        self.chunk = max(1, chunk)
        self.name = name
        self.delay_s = delay_s
        self.honour_stop = honour_stop
        self.calls = 0
        self.seen: list[list[dict[str, Any]]] = []  # the messages of every call, for tests and the debugger
        self._lock = threading.Lock()
        self._sizes: list[tuple[dict[str, Any], int]] = []  # the last prompt's messages and their sizes

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "backend": type(self).__name__}

    def _next_text(self, messages: list[dict[str, Any]]) -> str:
        with self._lock:
            if self.calls >= len(self.turns):
                raise UsageError(f"{self.name}: no more scripted turns (had {len(self.turns)}); give more turns")
            text = self.turns[self.calls]
            self.calls += 1
            self.seen.append(messages)
            return text

    def stream(self, messages: list[dict[str, Any]], *, stop: list[str], settings: GenerationSettings,
               cancel: threading.Event | None = None) -> Iterator[Delta]:
        text = self._next_text(messages)
        if self.honour_stop:
            text, _ = cut_at_stop(text, stop)
        words = text.split()
        limit = settings.max_tokens
        finish = "stop"
        if len(words) > limit:  # max_tokens counts words here, as a stand-in for tokens
            text = " ".join(words[:limit])
            finish = "length"
        for i in range(0, len(text), self.chunk):
            if cancel is not None and cancel.is_set():
                yield Delta(finish_reason="cancelled", usage=Usage(self._prompt_size(messages), len(text[:i].split())))
                return
            if self.delay_s:
                time.sleep(self.delay_s)
            yield Delta(text[i:i + self.chunk])
        yield Delta(finish_reason=finish, usage=Usage(self._prompt_size(messages), len(text.split())))

    def _prompt_size(self, messages: list[dict[str, Any]]) -> int:
        """`_prompt_size`, counting only the messages that are not the previous prompt's (an agent's
        context grows by appending, the earlier messages being the same objects)."""
        sizes = self._sizes
        keep = 0
        while keep < len(sizes) and keep < len(messages) and sizes[keep][0] is messages[keep]:
            keep += 1
        self._sizes = sizes[:keep] + [(m, _prompt_size([m])) for m in messages[keep:]]
        return sum(n for _, n in self._sizes)


class ReplayModel(ScriptedModel):
    """Replays the model turns of a recorded trajectory, in order (from `start_step` on)."""

    def __init__(self, turns: Sequence[str], name: str = "replay", source: str | None = None, chunk: int = 4,
                 delay_s: float = 0.0):
        # Recorded turns already end where the run's stop strings cut them; replay them as they are.
        super().__init__(turns, chunk=chunk, name=name, delay_s=delay_s, honour_stop=False)
        self.source = source

    @classmethod
    def from_file(cls, path: str | Path, start_step: int = 0, **kw: Any) -> ReplayModel:
        from ..trajectory import read

        return cls.from_trajectory(read(path), start_step, **kw)

    @classmethod
    def from_trajectory(cls, traj: Any, start_step: int = 0, **kw: Any) -> ReplayModel:
        turns = [s.text for s in traj.model_steps if s.index >= start_step]
        if not turns:
            raise UsageError(f"{traj.path}: no model turns to replay from step {start_step}")
        name = kw.pop("name", None) or f"replay of {traj.header.model.get('name', 'unknown model')}"
        return cls(turns, name=name, source=str(traj.path), **kw)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "backend": "replay", "source": self.source}


def demo_model(mode: str = "general", **kw: Any) -> ReplayModel:
    """A bundled demonstration: a hand-written trajectory, replayed (until a trained default model ships)."""
    if mode not in DEMO_TRAJECTORIES:
        raise UsageError(f"no bundled demo for mode {mode!r}; choose from: {', '.join(DEMO_TRAJECTORIES)}")
    kind = "" if mode == "general" else f"{mode} "
    return ReplayModel.from_file(DEMO_TRAJECTORIES[mode], name=f"demo (hand-written {kind}demonstration, replayed)",
                                 **kw)


def _prompt_size(messages: list[dict[str, Any]]) -> int:
    """A rough token count of the prompt (words of its text parts), for usage figures."""
    n = 0
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            n += len(content.split())
        else:
            for part in content or []:
                n += len(str(part.get("text", "")).split()) if part.get("type") == "text" else 1
    return n
