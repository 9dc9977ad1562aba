"""The `r1v4-nb` command line.

Each module in `COMMANDS` adds its subcommands with `register(subparsers)`; a
subcommand's handler takes the parsed args and returns an exit code. Errors a
user can cause (`R1V4Error`, a missing file, a bad flag) print one line on
stderr and exit 2; machine-readable output is JSON on stdout.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from ..errors import R1V4Error

COMMANDS = ["core", "tool", "models", "parse", "trajectory_cmds", "ui", "train", "corpus", "evaluate"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


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
        print(f"r1v4-nb {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError, PermissionError) as exc:
        detail = f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc)  # raised with a message only
        print(f"r1v4-nb {args.command}: error: {detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"r1v4-nb {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
