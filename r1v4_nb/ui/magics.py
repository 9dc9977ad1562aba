"""`%r1v4` and `%%r1v4`: parse the arguments, call `api`, show errors as one line.

Subcommands are a plain dict (`SUBCOMMANDS`): adding one (e.g. `%%r1v4 train`)
is one entry mapping its name to `handler(argv, cell, shell)`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class

from ..errors import R1V4Error, UsageError
from . import api


class _ArgParser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line in the cell) instead of printing usage and exiting."""

    def error(self, message: str) -> None:
        raise UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> None:
        if message:
            print(message, end="")
        raise _HelpShown()


class _HelpShown(Exception):
    """`--help` was asked for and printed."""


def _parser(name: str, description: str) -> _ArgParser:
    return _ArgParser(prog=f"%r1v4 {name}", description=description)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


# -- handlers: (argv, cell, shell) -> value shown as the cell's result (None: nothing) -------------------

def _load(argv: list[str], cell: str | None, shell: Any) -> Any:
    p = _parser("load", "load a model: a local folder, a hub id, replay:FILE, or nothing for the demo model")
    p.add_argument("model", nargs="?")
    q = p.add_mutually_exclusive_group()
    q.add_argument("--4bit", dest="quantization", action="store_const", const="4bit")
    q.add_argument("--8bit", dest="quantization", action="store_const", const="8bit")
    p.add_argument("--endpoint")
    p.add_argument("--api-key-env")
    p.add_argument("--adapter")
    a = p.parse_args(argv)
    model = api.load(a.model, quantization=a.quantization, endpoint=a.endpoint, api_key_env=a.api_key_env,
                     adapter=a.adapter)
    print(f"loaded: {model.describe().get('name', model)}")
    return None


def _status(argv: list[str], cell: str | None, shell: Any) -> Any:
    _parser("status", "model, memory, tools and cache of this session").parse_args(argv)
    _print_json(api.status())
    return None


def _tools(argv: list[str], cell: str | None, shell: Any) -> Any:
    p = _parser("tools", "show the tools, or: enable NAME | disable NAME | set NAME key=value ... | "
                "source auto|live|replay | reset")
    p.add_argument("action", nargs="?", choices=["enable", "disable", "set", "source", "reset"])
    p.add_argument("name", nargs="?")
    p.add_argument("settings", nargs="*", metavar="key=value")
    a = p.parse_args(argv)
    settings = {}
    for item in a.settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"setting {item!r} is not key=value")
        settings[key] = _value(value)
    _print_json(api.tools(a.action, a.name, **settings))
    return None


def _value(text: str) -> Any:
    """A setting's value: JSON when it parses (numbers, true, null), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _ask(argv: list[str], cell: str | None, shell: Any) -> Any:
    p = _parser("ask", "run the agent on the question in the cell body")
    p.add_argument("--image", action="append", default=[], metavar="PATH|URL|VARIABLE")
    p.add_argument("--mode", choices=list(api.MODES))
    p.add_argument("--max-steps", type=int)
    p.add_argument("--wait", action="store_true", help="block until the run ends (interrupt to stop)")
    a = p.parse_args(argv)
    question = (cell or "").strip()
    if not question:
        raise UsageError("write the question in the cell body under %%r1v4 ask")
    api.ask(question, a.image, mode=a.mode, max_steps=a.max_steps, wait=a.wait,
            namespace=shell.user_ns if shell is not None else None)
    return None


def _replay(argv: list[str], cell: str | None, shell: Any) -> Any:
    p = _parser("replay", "step through a recorded run, inspect contexts, fork")
    p.add_argument("file")
    api.replay(p.parse_args(argv).file)
    return None


def _open(argv: list[str], cell: str | None, shell: Any) -> Any:
    p = _parser("open", "show a recorded run (or 'last' for this session's last run)")
    p.add_argument("file")
    a = p.parse_args(argv)
    path = api.SESSION.last.wait().path if a.file == "last" else a.file
    api.open(path)
    return None


def _train(argv: list[str], cell: str | None, shell: Any) -> Any:
    from .train_panel import magic_train

    return magic_train(argv, cell, shell)


Handler = Callable[[list[str], "str | None", Any], Any]

SUBCOMMANDS: dict[str, Handler] = {
    "load": _load,
    "status": _status,
    "tools": _tools,
    "ask": _ask,
    "replay": _replay,
    "open": _open,
    "train": _train,
}


def run_magic(line: str, cell: str | None = None, shell: Any = None) -> Any:
    """Parse and run one `%r1v4` / `%%r1v4` line; user errors print one line on stderr."""
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        print(f"r1v4: error: {exc} (check the quotes)", file=sys.stderr)
        return None
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("usage: %r1v4 " + " | ".join(SUBCOMMANDS) + "   (%r1v4 COMMAND --help for one)")
        return None
    name, rest = argv[0], argv[1:]
    handler = SUBCOMMANDS.get(name)
    try:
        if handler is None:
            raise UsageError(f"unknown subcommand {name!r}; choose from: {', '.join(SUBCOMMANDS)}")
        return handler(rest, cell, shell)
    except _HelpShown:
        return None
    except R1V4Error as exc:
        print(f"r1v4 {name}: error: {exc}", file=sys.stderr)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"r1v4 {name}: error: {exc.strerror}: {exc.filename}", file=sys.stderr)
    return None


@magics_class
class R1V4Magics(Magics):
    @line_cell_magic
    def r1v4(self, line: str, cell: str | None = None) -> Any:
        """%r1v4 load|status|tools|replay|open ... and %%r1v4 ask ... (see %r1v4 help)."""
        return run_magic(line, cell, self.shell)
