"""The modes of a run, in one table: which tools a mode gets, which dialect it speaks by default, and
which segment of the model's text is its result.

Everything that needs to know a mode reads it here: the agent (default tools and dialect), the system
prompts (`prompts.py` keeps the role texts by mode name), the notebook session and the CLI (the
choices they offer), evaluation. A new mode is a new row; the agent has no branch on a mode's name.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError

__all__ = ["DEFAULT_DIALECT", "MODES", "Mode", "get_mode", "mode_names"]

DEFAULT_DIALECT = "r1v4"


@dataclass(frozen=True)
class Mode:
    """One way of running the agent.

    `answer` is the kind of segment that ends a run with a result; the mode's dialect says the same
    (`Dialect.answer_kind`), and the agent reads it from the dialect it runs.
    """

    name: str
    tools: tuple[str, ...]
    dialect: str
    answer: str
    description: str


MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("general", ("code",), DEFAULT_DIALECT, "answer",
         "look closely: Python crops, zooms and measures the image"),
    Mode("deepresearch", ("code", "image_search", "text_search", "web_visit"), DEFAULT_DIALECT, "answer",
         "look and search: code, reverse image search, web search, page visits"),
    Mode("plan", (), "plan", "plan",
         "write a research plan (a JSON array of steps) and run nothing"),
    Mode("direct", (), DEFAULT_DIALECT, "answer",
         "answer in one reply from the images, without tools"),
)}


def mode_names() -> list[str]:
    """The modes' names, in the table's order (the choices a front end offers)."""
    return list(MODES)


def get_mode(name: str) -> Mode:
    """The mode called `name`; a user's mistake names the choices."""
    mode = MODES.get(name)
    if mode is None:
        raise UsageError(f"unknown mode {name!r}; choose one of: {', '.join(MODES)}")
    return mode
