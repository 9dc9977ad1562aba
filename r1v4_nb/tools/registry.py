"""Tools by name, imported on first use, and the default tool set of each mode (from `modes.py`)."""

from __future__ import annotations

import inspect
from importlib import import_module
from typing import Any

from ..errors import UsageError
from ..modes import get_mode
from .base import Tool

# name -> "module:Class" under r1v4_nb.tools; each class builds with no arguments (offline defaults).
TOOLS = {
    "code": "code:CodeTool",
    "text_search": "search:TextSearchTool",
    "image_search": "image_search:ImageSearchTool",
    "web_visit": "web:WebVisitTool",
}


def build_tool(name: str, **settings: Any) -> Tool:
    """A tool instance by name, with its settings passed to the constructor."""
    if name not in TOOLS:
        raise UsageError(f"unknown tool {name!r}; choose from: {', '.join(TOOLS)}")
    module, cls = TOOLS[name].split(":")
    tool_class = getattr(import_module(f".{module}", __package__), cls)
    params = inspect.signature(tool_class).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(settings) - set(params))
        if unknown:
            known = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
            raise UsageError(f"{name} has no setting {', '.join(unknown)}; its settings are: {', '.join(known)}")
    return tool_class(**settings)


def default_tools(mode: str) -> list[Tool]:
    """The tools of a mode's row in `modes.MODES`, built with their offline defaults."""
    return [build_tool(n) for n in get_mode(mode).tools]
