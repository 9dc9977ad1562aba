"""Dialects: the text formats models write. `get_dialect(name)` returns one by name."""

from __future__ import annotations

from importlib import import_module

from ..errors import UsageError
from .base import Dialect, Parser, SegmentEvent

# name -> "module:Class"; modules import on first use.
DIALECTS = {
    "r1v4": "r1v4:R1V4Dialect",
    "qwen": "qwen:QwenDialect",
    "fenced": "fenced:FencedDialect",
    "plan": "plan:PlanDialect",
}


def get_dialect(name: str | Dialect) -> Dialect:
    """A dialect instance by name (r1v4, qwen, fenced, plan); an instance passes through."""
    if isinstance(name, Dialect):
        return name
    if name not in DIALECTS:
        raise UsageError(f"unknown dialect {name!r}; choose one of: {', '.join(DIALECTS)}")
    module, cls = DIALECTS[name].split(":")
    return getattr(import_module(f".{module}", __name__), cls)()


__all__ = ["DIALECTS", "Dialect", "Parser", "SegmentEvent", "get_dialect"]
