"""The `r1v4-nb` command line.

Each module in `COMMANDS` adds its subcommands with `register(subparsers)`; a
subcommand's handler takes the parsed args and returns an exit code. Errors a
user can cause (`R1V4Error`, a missing file, a bad flag) print one line on
stderr and exit 2; machine-readable output is JSON on stdout.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from importlib import import_module

from ..errors import R1V4Error

COMMANDS = ["core", "tool", "models", "parse", "trajectory_cmds", "ui", "train", "corpus", "evaluate", "agentbuild"]


# C0 and C1 controls, DEL, and the Unicode characters that reorder or hide text in a terminal (bidi overrides
# and isolates, zero-width marks, line and paragraph separators)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def safe_text(text: str) -> str:
    """`text` with every control or bidi character written as an escape (`\\x1b`, `\\u202e`), so an argument
    echoed in an error message can neither drive the terminal nor break the message into several lines."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                       text)


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high], refused with a one-line message before any work starts."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range (use {low} to {high})")
        return value

    parse.__name__ = "integer"
    return parse


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        self.exit(2, f"{self.prog}: error: {safe_text(message)} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="r1v4-nb", description="Agentic vision-language models: run, replay, inspect, train.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        import_module(f".{name}", __name__).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except R1V4Error as exc:
        print(f"r1v4-nb {args.command}: error: {safe_text(str(exc))}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError, PermissionError) as exc:
        detail = f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc)  # raised with a message only
        print(f"r1v4-nb {args.command}: error: {safe_text(detail)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"r1v4-nb {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
