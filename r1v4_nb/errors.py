"""Errors a user can cause and fix. Their message is one line: the problem and what to do about it.

The CLI prints these as one line on stderr with exit code 2; the magics show
them as one line in the cell output. Anything else is a bug and keeps its traceback.
"""


class R1V4Error(Exception):
    """Base class for errors the user can act on."""


class UsageError(R1V4Error):
    """Bad input to a command, magic or API call."""
