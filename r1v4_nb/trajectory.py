"""Trajectory format v1: the one record of a run that everything else reads.

A trajectory is a JSONL file. The first line is the header (format, version,
model, dialect, mode, system prompt, tools, question, input images, parent);
then one line per step, appended and flushed as the run goes, so a crash loses
at most the step in flight; the last line, once the run is over, is the `end`
record (reason, answer, usage). Images live once, named by sha256, in the
folder `<stem>.images/` beside the file; lines refer to them by relative path.
The context the model saw at a step is not stored: the dialect rebuilds it from
the header and the steps before it (`Trajectory.context_at`). The full
specification is docs/trajectory-format.md.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from .errors import R1V4Error
from .images import Image, ImageStore, Provenance
from .records import ModelStep, NoteStep, Observation, Step, ToolStep, step_from_json

FORMAT = "r1v4-trajectory"
VERSION = 1


class TrajectoryError(R1V4Error):
    """A trajectory file that cannot be read: names the file, the line and what is wrong."""


def new_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]


def images_dir(path: str | Path) -> Path:
    """The image folder that belongs to a trajectory file: run.jsonl -> run.images/."""
    p = Path(path)
    return p.with_name(p.stem + ".images")


@dataclass
class Header:
    question: str
    images: list[Image] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    dialect: str = "r1v4"
    mode: str = "general"
    system_prompt: str = ""
    tools: list[dict[str, Any]] = field(default_factory=list)  # {"name", "settings"}
    settings: dict[str, Any] = field(default_factory=dict)  # generation settings and budgets
    parent: dict[str, Any] | None = None  # {"id", "path", "step"} of the run this one was forked from
    meta: dict[str, Any] = field(default_factory=dict)  # free-form: task id, gold answer, labels
    id: str = field(default_factory=new_id)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def to_json(self, relative_to: Path | None = None) -> dict[str, Any]:
        return {
            "type": "header", "format": FORMAT, "version": VERSION, "id": self.id, "created": self.created,
            "model": self.model, "dialect": self.dialect, "mode": self.mode,
            "system_prompt": self.system_prompt, "tools": self.tools, "settings": self.settings,
            "question": self.question, "images": [im.to_json(relative_to) for im in self.images],
            "parent": self.parent, "meta": self.meta,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], base: Path | None = None) -> Header:
        return cls(
            question=d["question"], images=[Image.from_json(i, base) for i in d.get("images", [])],
            model=d.get("model") or {}, dialect=d.get("dialect", "r1v4"), mode=d.get("mode", "general"),
            system_prompt=d.get("system_prompt", ""), tools=d.get("tools") or [],
            settings=d.get("settings") or {}, parent=d.get("parent"), meta=d.get("meta") or {},
            id=d["id"], created=d.get("created", ""),
        )


@dataclass
class End:
    reason: str  # answered, no_answer, budget, cancelled, error
    answer: str | None = None
    elapsed_s: float = 0.0
    usage: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = {"type": "end", "reason": self.reason, "answer": self.answer,
             "elapsed_s": round(self.elapsed_s, 6), "usage": self.usage}
        if self.error:
            d["error"] = self.error
        return d


@dataclass
class Trajectory:
    header: Header
    steps: list[Step] = field(default_factory=list)
    end: End | None = None
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def answer(self) -> str | None:
        if self.end is not None and self.end.answer is not None:
            return self.end.answer
        for step in reversed(self.steps):
            if isinstance(step, ModelStep) and step.answer is not None:
                return step.answer
        return None

    @property
    def model_steps(self) -> list[ModelStep]:
        return [s for s in self.steps if isinstance(s, ModelStep)]

    @property
    def tool_steps(self) -> list[ToolStep]:
        return [s for s in self.steps if isinstance(s, ToolStep)]

    def all_images(self) -> list[Image]:
        """Every image the run refers to, inputs first, each once."""
        seen: dict[str, Image] = {}
        for im in self.header.images:
            seen.setdefault(im.sha256, im)
        for s in self.steps:
            if isinstance(s, ToolStep):
                for im in s.observation.images:
                    seen.setdefault(im.sha256, im)
        return list(seen.values())

    def context_at(self, index: int, dialect: Any = None) -> list[dict[str, Any]]:
        """The messages the model saw when it wrote step `index` (rebuilt by the dialect, not stored)."""
        from .dialects import get_dialect

        d = dialect or get_dialect(self.header.dialect)
        return d.build_messages(self.header.system_prompt, self.header.question, self.header.images,
                                [s for s in self.steps if s.index < index])


class TrajectoryWriter:
    """Appends a trajectory to disk step by step; images are copied into the store by hash."""

    def __init__(self, path: str | Path, header: Header):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.store = ImageStore(images_dir(self.path))
        self.header = header
        header.images = [self.store.add(im) for im in header.images]
        self._fh = open(self.path, "w", encoding="utf-8")
        self._write(header.to_json(self.path.parent))
        self.closed = False

    def _write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()

    def write(self, step: Step) -> Step:
        """Append a step; returns it with its images pointing into this trajectory's store (a copy)."""
        if isinstance(step, ToolStep):
            obs = replace(step.observation, images=[self.store.add(im) for im in step.observation.images])
            step = ToolStep(step.index, step.call, obs, step.elapsed_s)
        self._write(step.to_json(self.path.parent))
        return step

    def finish(self, end: End) -> None:
        if self.closed:
            return
        self._write(end.to_json())
        self.close()

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
            self.closed = True


def write(path: str | Path, trajectory: Trajectory) -> Path:
    """Write a whole trajectory (e.g. an imported or edited one) to `path`."""
    w = TrajectoryWriter(path, trajectory.header)
    for s in trajectory.steps:
        w.write(s)
    if trajectory.end is not None:
        w.finish(trajectory.end)
    else:
        w.close()
    return Path(path)


def read(path: str | Path, check_images: bool = True) -> Trajectory:
    """Read and validate a trajectory. A truncated last line is a warning; anything else malformed raises."""
    p = Path(path)
    if not p.is_file():
        raise TrajectoryError(f"{p}: no such trajectory file (check the path)")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TrajectoryError(f"{p}: not UTF-8 text at byte {exc.start}; is this a trajectory file?") from None
    lines = text.split("\n")
    complete = text.endswith("\n")
    if complete:
        lines = lines[:-1]
    if not lines or not lines[0].strip():
        raise TrajectoryError(f"{p}: empty file, not a trajectory")
    warnings: list[str] = []
    base = p.parent
    header: Header | None = None
    steps: list[Step] = []
    end: End | None = None
    for n, line in enumerate(lines, start=1):
        last = n == len(lines)
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if last and not complete and header is not None:
                warnings.append(f"{p}:{n}: truncated last line ignored (the run was cut off mid-step)")
                break
            raise TrajectoryError(f"{p}:{n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(rec, dict):
            raise TrajectoryError(f"{p}:{n}: expected a JSON object, got {type(rec).__name__}")
        if n == 1:
            header = _read_header(p, rec, base)
            continue
        if end is not None:
            raise TrajectoryError(f"{p}:{n}: a line after the end record")
        kind = rec.get("type")
        if kind == "end":
            try:
                end = End(rec["reason"], rec.get("answer"), float(rec.get("elapsed_s", 0.0)),
                          rec.get("usage") or {}, rec.get("error"))
            except (KeyError, TypeError, ValueError) as exc:
                raise TrajectoryError(f"{p}:{n}: malformed end record ({exc})") from None
            continue
        try:
            step = step_from_json(rec, base)
        except (KeyError, TypeError, ValueError) as exc:
            raise TrajectoryError(f"{p}:{n}: malformed {kind or 'untyped'} step ({type(exc).__name__}: {exc})") from None
        if step.index != len(steps):
            raise TrajectoryError(f"{p}:{n}: step index {step.index}, expected {len(steps)}")
        steps.append(step)
    assert header is not None
    traj = Trajectory(header, steps, end, p, warnings)
    if check_images:
        for im in traj.all_images():
            if not im.path.is_file():
                raise TrajectoryError(f"{p}: image {im.sha256[:12]} missing at {im.path} "
                                      f"(copy the {images_dir(p).name}/ folder along with the file)")
    return traj


def _read_header(p: Path, rec: dict[str, Any], base: Path) -> Header:
    if rec.get("type") != "header" or rec.get("format") != FORMAT:
        raise TrajectoryError(f"{p}:1: not a {FORMAT} file (first line has format {rec.get('format')!r})")
    version = rec.get("version")
    if not isinstance(version, int):
        raise TrajectoryError(f"{p}:1: header has no integer version")
    if version > VERSION:
        raise TrajectoryError(f"{p}:1: format version {version} is newer than this r1v4_nb reads "
                              f"({VERSION}); upgrade r1v4-nb")
    try:
        return Header.from_json(rec, base)
    except (KeyError, TypeError, ValueError) as exc:
        raise TrajectoryError(f"{p}:1: malformed header ({type(exc).__name__}: {exc})") from None


def fork(source: Trajectory, step: int, out: str | Path,
         replacement: Sequence[Step] = ()) -> tuple[TrajectoryWriter, list[Step]]:
    """Start a branch of `source` that keeps steps before `step`, then the `replacement` steps.

    Returns the open writer and the steps written so far; the caller (usually the agent) continues the
    run into it. The source trajectory is not changed.
    """
    if not 0 <= step <= len(source.steps):
        raise TrajectoryError(f"cannot fork at step {step}: the trajectory has steps 0..{len(source.steps) - 1}")
    h = source.header
    header = Header(
        question=h.question, images=list(h.images), model=dict(h.model), dialect=h.dialect, mode=h.mode,
        system_prompt=h.system_prompt, tools=list(h.tools), settings=dict(h.settings),
        parent={"id": h.id, "path": str(source.path) if source.path else None, "step": step},
        meta=dict(h.meta),
    )
    w = TrajectoryWriter(out, header)
    written = [w.write(s) for s in source.steps if s.index < step]
    for s in replacement:
        written.append(w.write(replace(s, index=len(written))))
    return w, written


def input_image(path: str | Path) -> Image:
    """An input image record for a file the user gave."""
    return Image.from_file(path, Provenance("input", name=Path(path).name))


__all__ = ["FORMAT", "VERSION", "End", "Header", "ModelStep", "NoteStep", "ToolStep", "Trajectory",
           "TrajectoryError", "TrajectoryWriter", "fork", "images_dir", "input_image", "read", "write"]
