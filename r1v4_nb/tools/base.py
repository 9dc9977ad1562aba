"""The tool protocol.

A tool gets the parsed arguments of one call and a `ToolContext` for the run,
and returns an `Observation`. It never raises for anything the model did wrong:
bad arguments, a failed fetch or a crash of model code become an observation
with `error` set, so the model can read it and try again. `ToolError` is for
the tool's own code paths to signal such a failure; the agent turns it into an
observation too.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..images import Image
from ..records import Observation


class ToolError(Exception):
    """A failure to report to the model as an observation (not a crash of the run)."""


@dataclass
class ToolContext:
    """What a tool may know about the run it serves."""

    trajectory_id: str
    workdir: Path  # a scratch folder for this trajectory
    question: str = ""
    step: int = 0
    images: dict[str, Image] = field(default_factory=dict)  # names the model may use -> image
    cancel: threading.Event = field(default_factory=threading.Event)

    def register_image(self, image: Image, *names: str) -> None:
        """Make an image addressable by the given names (its path, its file name) for later tool calls."""
        for n in names or (str(image.path),):
            self.images[n] = image
        self.images.setdefault(image.path.name, image)
        self.images.setdefault(str(image.path), image)

    def resolve_image(self, name: str) -> Image | None:
        """Find an image by a name the model used: a registered name, a file name, or a path in the workdir."""
        name = name.strip()
        if name in self.images:
            return self.images[name]
        base = Path(name).name
        if base in self.images:
            return self.images[base]
        candidate = (self.workdir / name) if not Path(name).is_absolute() else Path(name)
        try:
            if candidate.resolve().is_relative_to(self.workdir.resolve()) and candidate.is_file():
                return Image.from_file(candidate)
        except (OSError, ValueError):
            return None
        return None


class Tool(ABC):
    """Base class for tools. Subclasses set `name`, `description`, `parameters` and implement `run`."""

    name: str = ""
    description: str = ""
    parameters: dict[str, Any] = {}  # JSON schema of the arguments object

    @abstractmethod
    def run(self, arguments: dict[str, Any], ctx: ToolContext) -> Observation:
        """Run one call; report the model's mistakes as an Observation with `error` (or raise ToolError)."""

    def settings(self) -> dict[str, Any]:
        """What to record in the trajectory header (backend, limits); never secrets."""
        return {}

    def start(self, ctx: ToolContext) -> None:
        """Called once when a run starts (e.g. to start a worker for this trajectory)."""

    def finish(self, ctx: ToolContext) -> None:
        """Called once when a run ends, however it ends."""

    def close(self) -> None:
        """Release everything (all workers, connections)."""

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


def require(arguments: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """Fetch a required argument of the right type, or raise ToolError naming it."""
    if key not in arguments:
        raise ToolError(f"missing argument {key!r}")
    value = arguments[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ToolError(f"argument {key!r} must be {names}, got {type(value).__name__}")
    return value


def string_list(arguments: dict[str, Any], key: str, limit: int = 10) -> list[str]:
    """A list-of-strings argument; a single string is accepted as a list of one."""
    value = arguments.get(key)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ToolError(f"argument {key!r} must be a non-empty list of strings")
    return [v.strip() for v in value[:limit]]


def left_out_note(arguments: dict[str, Any], key: str, limit: int) -> str | None:
    """The line that tells the model `string_list` used only the first `limit` items (None when none were cut)."""
    value = arguments.get(key)
    extra = len(value) - limit if isinstance(value, list) else 0
    if extra <= 0:
        return None
    return f"Note: only the first {limit} {key} were used; {extra} more were left out (give at most {limit} per call)."
