"""`r1v4-nb tool NAME ...`: run one tool by hand; prints its observation as JSON.

Each tool's command lives in its own module (`TOOL_COMMANDS`), which adds a
sub-parser with `register(subparsers)`.
"""

from __future__ import annotations

import argparse
from importlib import import_module

TOOL_COMMANDS: list[str] = ["tool_code", "tool_search"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tool", help="run one tool by hand and print its observation as JSON")
    tools = p.add_subparsers(dest="tool", metavar="TOOL", parser_class=type(p))
    tools.required = True
    for name in TOOL_COMMANDS:
        import_module(f".{name}", __package__).register(tools)
