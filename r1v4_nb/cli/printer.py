"""A terminal view of a run: subscribes to the agent's events and prints each step as it happens."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from ..events import (
    Answered,
    NoteAdded,
    RunError,
    RunFinished,
    RunStarted,
    SegmentClosed,
    TokenDelta,
    ToolFinished,
    ToolStarted,
    TurnStarted,
)
from ..records import ToolCall

_STYLE = {"think": "2", "tool_call": "36", "code": "36", "answer": "1;32", "plan": "1;32", "text": "0"}
# Control characters other than newline and tab, shown as \xNN: text from a model or a web page must not be
# able to move the cursor, clear the screen or set the clipboard of the terminal it is printed on.
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7f, 0xa0)] if c not in (0x09, 0x0a)}


def terminal_safe(text: str) -> str:
    """`text` with its control characters (escape sequences included) made visible and harmless."""
    return text.translate(_CONTROLS)


class Printer:
    """Prints streamed text with the kind of segment it belongs to; colours only on a terminal."""

    def __init__(self, out: TextIO | None = None, color: bool | None = None, max_obs_chars: int = 600):
        self.out = out or sys.stdout
        self.color = self.out.isatty() if color is None else color
        self.max_obs_chars = max_obs_chars
        self._kind: str | None = None

    def _style(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def _line(self, text: str = "") -> None:
        if self._kind is not None:
            self.out.write("\n")
            self._kind = None
        self.out.write(text + "\n")
        self.out.flush()

    def _call(self, call: ToolCall) -> None:
        """A tool call as a person reads it: code as code, other calls as their name and arguments."""
        if call.error:
            raw = call.raw if len(call.raw) <= 200 else call.raw[:200] + " …"
            self._line(self._style("[call] ", "1") + self._style(f"malformed: {terminal_safe(call.error)}", "31")
                       + f" {terminal_safe(raw)}")
        elif call.name == "code" and isinstance(call.arguments.get("code"), str):
            self._line(self._style("[code]", "1"))
            for line in call.arguments["code"].splitlines():
                self._line(self._style("    " + terminal_safe(line), _STYLE["code"]))
        else:
            args = json.dumps(call.arguments, ensure_ascii=False)
            args = args if len(args) <= 300 else args[:300] + " …"
            self._line(self._style("[call] ", "1") + self._style(f"{call.name} {terminal_safe(args)}", _STYLE["tool_call"]))

    def __call__(self, ev: Any) -> None:
        if isinstance(ev, RunStarted):
            h = ev.header.to_json(ev.path.parent)
            self._line(self._style(f"run {h['id']} · {h['model'].get('name', '?')} · {h['dialect']} · {h['mode']}", "1"))
            self._line(f"question: {terminal_safe(h['question'])}")
            for im in h["images"]:
                self._line(f"image: {im['provenance'].get('name', im['path'])} ({im['width']}x{im['height']})")
        elif isinstance(ev, TurnStarted):
            self._line(self._style(f"── step {ev.index} · model", "1;34"))
        elif isinstance(ev, TokenDelta):
            if ev.kind == "tool_call":
                return  # shown decoded when the call is complete (SegmentClosed), not as raw JSON
            if ev.kind != self._kind:
                if self._kind is not None:
                    self.out.write("\n")
                self.out.write(self._style(f"[{ev.kind}] ", "1"))
                self._kind = ev.kind
            self.out.write(self._style(terminal_safe(ev.text), _STYLE.get(ev.kind, "0")))
            self.out.flush()
        elif isinstance(ev, SegmentClosed) and ev.segment.kind == "tool_call" and ev.segment.call is not None:
            self._call(ev.segment.call)
        elif isinstance(ev, ToolStarted):
            self._line(self._style(f"── step {ev.index} · tool {ev.call.name or '?'}", "1;34"))
        elif isinstance(ev, ToolFinished):
            obs = ev.step.observation
            text = obs.text if len(obs.text) <= self.max_obs_chars else obs.text[:self.max_obs_chars] + " …"
            label = self._style("error: ", "1;31") if obs.error else ""
            self._line(f"{label}{terminal_safe(text)}  ({ev.step.elapsed_s:.2f} s)")
            for im in obs.images:
                box = f" box {im.provenance.box}" if im.provenance.box else ""
                self._line(f"  image {im.path} ({im.width}x{im.height}){box}")
            if obs.limits_hit:
                self._line(self._style(f"  limits hit: {', '.join(obs.limits_hit)}", "33"))
        elif isinstance(ev, NoteAdded):
            self._line(self._style(f"── step {ev.step.index} · note: {terminal_safe(ev.step.text)}", "33"))
        elif isinstance(ev, Answered):
            self._line(self._style("answer: ", "1") + self._style(terminal_safe(ev.text), "1;32"))
        elif isinstance(ev, RunError):
            self._line(self._style(f"error: {terminal_safe(ev.message)}", "1;31"))
        elif isinstance(ev, RunFinished):
            tokens = ev.usage.get("completion_tokens", 0)
            self._line(self._style(f"── finished: {ev.reason} in {ev.elapsed_s:.2f} s · {tokens} tokens out", "1"))
