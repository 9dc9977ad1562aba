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
import os
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import R1V4Error
from .images import Image, ImageStore, Provenance
from .records import ModelStep, NoteStep, Step, ToolStep, step_from_json

FORMAT = "r1v4-trajectory"
VERSION = 1
# New runs are named <name>.r1v4.jsonl, so JupyterLab (and people) can tell a trajectory from other JSON
# Lines by its name; files named plain .jsonl (older runs, imports, explicit names) are read the same.
RUN_SUFFIX = ".r1v4.jsonl"


class TrajectoryError(R1V4Error):
    """A trajectory file that cannot be read: names the file, the line and what is wrong."""


def new_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]


def run_file(folder: str | Path, name: str) -> Path:
    """Where a new run called `name` goes in `folder`: <name>.r1v4.jsonl."""
    return Path(folder) / f"{name}{RUN_SUFFIX}"


def run_name(path: str | Path) -> str:
    """A trajectory file's name without .r1v4.jsonl or .jsonl (for naming runs derived from it)."""
    name = Path(path).name
    for suffix in (RUN_SUFFIX, ".jsonl"):
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return Path(path).stem


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
            for im in s.observation.images if isinstance(s, ToolStep) else s.images if isinstance(s, NoteStep) else []:
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
        self.count = 0  # steps written: the index the next step must have

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()

    def write(self, step: Step) -> Step:
        """Append a step; returns it with its images pointing into this trajectory's store (a copy)."""
        if step.index != self.count:  # the reader would reject the file: fail here, where the bug is
            raise ValueError(f"step index {step.index} written as step {self.count} of {self.path}")
        if isinstance(step, ToolStep):
            obs = replace(step.observation, images=[self.store.add(im) for im in step.observation.images])
            step = ToolStep(step.index, step.call, obs, step.elapsed_s)
        elif isinstance(step, NoteStep) and step.images:
            step = replace(step, images=[self.store.add(im) for im in step.images])
        self._write(step.to_json(self.path.parent))
        self.count += 1
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
    """Write a whole trajectory (an imported or edited one) to `path`, atomically; `trajectory` is not changed.

    The images go into `path`'s own store first, then the JSONL appears in one rename, so a reader never
    sees half a file and an existing file is only replaced by a complete one.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    store = ImageStore(images_dir(p))
    h = trajectory.header
    header = replace(h, images=[store.add(im) for im in h.images])
    lines = [header.to_json(p.parent)]
    for s in trajectory.steps:
        if isinstance(s, ToolStep):
            s = replace(s, observation=replace(s.observation,
                                               images=[store.add(im) for im in s.observation.images]))
        elif isinstance(s, NoteStep) and s.images:
            s = replace(s, images=[store.add(im) for im in s.images])
        lines.append(s.to_json(p.parent))
    if trajectory.end is not None:
        lines.append(trajectory.end.to_json())
    atomic_write_text(p, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines))
    return p


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path` (all or nothing)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read(path: str | Path, check_images: bool = True) -> Trajectory:
    """Read and validate a trajectory. A truncated last line is a warning; anything else malformed raises.

    Every error names the file, the line (`file:line:`) and what is wrong.
    """
    p = Path(path)
    if not p.is_file():
        raise TrajectoryError(f"{p}: no such trajectory file (check the path)")
    raw = p.read_bytes()
    if not raw.strip():
        raise TrajectoryError(f"{p}:1: empty file, not a trajectory")
    complete = raw.endswith(b"\n")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        last_nl = raw.rfind(b"\n")
        if complete or exc.start <= last_nl:  # bad bytes inside a finished line: not a text file we wrote
            line = raw.count(b"\n", 0, exc.start) + 1
            raise TrajectoryError(f"{p}:{line}: not UTF-8 text (byte {exc.start}); "
                                  f"is this a trajectory file?") from None
        # a kill in the middle of a multi-byte character: the unfinished last line is dropped below anyway
        text = raw[:last_nl + 1].decode("utf-8") + raw[last_nl + 1:].decode("utf-8", "replace")
    lines = text.split("\n")
    if complete:
        lines = lines[:-1]
    warnings: list[str] = []
    base = p.parent
    store = images_dir(p)
    header: Header | None = None
    steps: list[Step] = []
    end: End | None = None
    for n, line in enumerate(lines, start=1):
        last = n == len(lines)
        if not line.strip():
            if header is None:
                raise TrajectoryError(f"{p}:{n}: blank line where the header should be")
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
        if header is None:
            header = _read_header(p, rec, base)
            _locate_images(p, n, header.images, store, check_images)
            continue
        if end is not None:
            raise TrajectoryError(f"{p}:{n}: a line after the end record")
        kind = rec.get("type")
        if kind == "end":
            end = _read_end(p, n, rec)
            continue
        try:
            step = step_from_json(rec, base)
            _check_step(step)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = kind if isinstance(kind, str) and kind else "untyped"
            raise TrajectoryError(f"{p}:{n}: malformed {what} step ({type(exc).__name__}: {exc})") from None
        if step.index != len(steps):
            raise TrajectoryError(f"{p}:{n}: step index {step.index}, expected {len(steps)}")
        if isinstance(step, ToolStep):
            _locate_images(p, n, step.observation.images, store, check_images)
        elif isinstance(step, NoteStep) and step.images:
            _locate_images(p, n, step.images, store, check_images)
        steps.append(step)
    if header is None:
        raise TrajectoryError(f"{p}:1: no header line (the file holds only a cut-off first line)")
    return Trajectory(header, steps, end, p, warnings)


def _locate_images(p: Path, n: int, images: list[Image], store: Path, strict: bool) -> None:
    """Point each image at its file; a renamed trajectory finds its images by name in its own store."""
    for im in images:
        if im.path.is_file():
            continue
        moved = store / im.path.name
        if moved.is_file():
            im.path = moved
        elif strict:
            raise TrajectoryError(f"{p}:{n}: image {im.sha256[:12]} missing at {im.path} "
                              f"(copy the {store.name}/ folder along with the file)")


def _check_step(step: Step) -> None:
    """Type checks that from_json does not make: a wrong type here would only fail later, far away."""
    if isinstance(step, ModelStep):
        if not isinstance(step.text, str):
            raise TypeError("text must be a string")
        for seg in step.segments:
            if not isinstance(seg.kind, str) or not isinstance(seg.text, str):
                raise TypeError("segment kind and text must be strings")
    elif isinstance(step, ToolStep):
        if not isinstance(step.call.name, str) or not isinstance(step.call.arguments, dict):
            raise TypeError("call needs a string name and an object of arguments")
        if not isinstance(step.observation.text, str):
            raise TypeError("observation text must be a string")
    elif not isinstance(step.text, str):
        raise TypeError("note text must be a string")


def _read_end(p: Path, n: int, rec: dict[str, Any]) -> End:
    try:
        reason, answer = rec["reason"], rec.get("answer")
        if not isinstance(reason, str) or not (answer is None or isinstance(answer, str)):
            raise TypeError("reason must be a string and answer a string or null")
        usage = rec.get("usage") or {}
        if not isinstance(usage, dict):
            raise TypeError("usage must be an object")
        return End(reason, answer, float(rec.get("elapsed_s", 0.0)), usage, rec.get("error"))
    except (KeyError, TypeError, ValueError) as exc:
        raise TrajectoryError(f"{p}:{n}: malformed end record ({type(exc).__name__}: {exc})") from None


def _read_header(p: Path, rec: dict[str, Any], base: Path) -> Header:
    if rec.get("type") != "header" or rec.get("format") != FORMAT:
        raise TrajectoryError(f"{p}:1: not a {FORMAT} file (first line has format {rec.get('format')!r})")
    version = rec.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TrajectoryError(f"{p}:1: header has no valid version (a positive integer), got {version!r}")
    if version > VERSION:
        raise TrajectoryError(f"{p}:1: format version {version} is newer than this r1v4_nb reads "
                              f"({VERSION}); upgrade r1v4-nb")
    try:
        header = Header.from_json(rec, base)
        if not isinstance(header.question, str) or not isinstance(header.id, str):
            raise TypeError("question and id must be strings")
        return header
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
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
        parent={"id": h.id, "path": str(source.path.resolve()) if source.path else None, "step": step},
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


__all__ = ["FORMAT", "RUN_SUFFIX", "VERSION", "End", "Header", "ModelStep", "NoteStep", "ToolStep", "Trajectory",
           "TrajectoryError", "TrajectoryWriter", "fork", "images_dir", "input_image", "read", "run_file", "run_name",
           "write"]
