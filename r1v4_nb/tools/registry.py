"""Tools by name, imported on first use, and the default tool set of each mode."""

from __future__ import annotations

import inspect
from importlib import import_module
from typing import Any

from ..errors import UsageError
from .base import Tool

# name -> "module:Class" under r1v4_nb.tools; each class builds with no arguments (offline defaults).
TOOLS = {
    "code": "code:CodeTool",
    "text_search": "search:TextSearchTool",
    "image_search": "image_search:ImageSearchTool",
    "web_visit": "web:WebVisitTool",
}

MODE_TOOLS = {
    "general": ["code"],
    "deepresearch": ["code", "image_search", "text_search", "web_visit"],
    "plan": [],
    "direct": [],
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
    """The tools a mode uses (general: code; deepresearch: code and the three search tools; plan, direct: none)."""
    if mode not in MODE_TOOLS:
        raise UsageError(f"unknown mode {mode!r}; choose from: {', '.join(MODE_TOOLS)}")
    return [build_tool(n) for n in MODE_TOOLS[mode]]
