"""Errors a user can cause and fix. Their message is one line: the problem and what to do about it.

The CLI prints these as one line on stderr with exit code 2; the magics show
them as one line in the cell output. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class R1V4Error(Exception):
    """Base class for errors the user can act on."""


class UsageError(R1V4Error):
    """Bad input to a command, magic or API call."""


def read_text_file(path: str | Path, what: str) -> str:
    """A file the user named, as UTF-8 text; a binary file (or one holding NUL bytes) is a UsageError naming it
    and saying what it should be (`what`), not a UnicodeDecodeError traceback."""
    p = Path(path)
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{p} is not UTF-8 text (byte {exc.start}); give {what}") from None
    if "\0" in text:
        raise UsageError(f"{p} holds NUL bytes, so it is not a text file; give {what}")
    return text
