"""Tools the agent calls. Each implements `Tool` from `base`; backends plug in behind one interface."""

from .base import Tool, ToolContext, ToolError

__all__ = ["Tool", "ToolContext", "ToolError"]
