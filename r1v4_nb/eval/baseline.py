"""A rule-based research baseline for the offline world's questions: no weights, real tools.

`WorldBaseline` implements the model protocol. It reads the question and the tool results in its
context and writes R1V4-format turns (thinking, then one call or the answer), following the tool
path each kind of world question needs: image_search on the picture or text_search on a name, then
web_visit along the page's links, then the fact read off the last page. With no search tools (the
`direct` and `general` modes) it cannot look anything up and says so in its answer. It is what an
evaluation of the tool modes against Direct looks like before any model is trained; any real model
(an endpoint, `--model default`) takes its place by the same interface.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from typing import Any

from ..models.base import Delta, GenerationSettings, Usage, cut_at_stop

UNKNOWN = "unknown"
# question pattern -> the kind of lookup: how the first page is found, and what is read at the end.
_KINDS = (
    (re.compile(r"year was the place shown in this picture founded", re.I), "image", None, "founded"),
    (re.compile(r"place was the maker of the object in this picture born", re.I), "image", "maker", "born_in"),
    (re.compile(r"occupation of the person in this portrait", re.I), "image", None, "occupation"),
    (re.compile(r"year was the place where (.+?) is kept founded", re.I), "text", "kept", "founded"),
    (re.compile(r"year was the mentor of (.+?) born", re.I), "text", "mentor", "born_year"),
)
_FACTS = {
    "founded": re.compile(r"founded in (\d{3,4})"),
    "born_in": re.compile(r"was an? [\w ]+? from ([A-Z][\w' -]+?)(?: \[\d+\])?\."),
    "occupation": re.compile(r"\(born \d+\) was an? ([\w ]+?) from"),
    "born_year": re.compile(r"\(born (\d{3,4})\)"),
}
_HOPS = {  # the link followed from the first page to the second
    "maker": re.compile(r"made in \d+ by [^\[\n]+ \[(\d+)\]"),
    "kept": re.compile(r"kept in [^\[\n]+ \[(\d+)\]"),
    "mentor": re.compile(r"learned the trade from [^\[\n]+ \[(\d+)\]"),
}


def _text(message: dict[str, Any]) -> str:
    c = message.get("content")
    if isinstance(c, str):
        return c
    return "".join(p.get("text", "") for p in c or [] if p.get("type") == "text")


def _results(messages: list[dict[str, Any]]) -> list[str]:
    """The tool results in the context, oldest first (tool messages, or R1V4's inline observations)."""
    out = []
    for m in messages:
        text = _text(m)
        chunks = [text] if m.get("role") == "tool" else re.findall(r"<observation>(.*?)</observation>", text, re.S)
        for chunk in chunks:
            try:
                out.append(str(json.loads(chunk).get("result", chunk)))
            except (json.JSONDecodeError, AttributeError):
                out.append(chunk)
    return out


def _link(page: str, n: str) -> str | None:
    """The URL of link [n] in a visited page's "Links:" list."""
    links = page.split("\nLinks:", 1)[-1] if "\nLinks:" in page else ""
    m = re.search(rf"^\[{n}\] (https?://\S+)", links, re.M)
    return m.group(1) if m else None


def _first_url(result: str) -> str | None:
    m = re.search(r"\[1\.1\][^\n]*\n\s+(https?://\S+)", result)
    return m.group(1) if m else None


class WorldBaseline:
    """Rule-based turns for the world's five question kinds; thread-safe (it keeps no state between calls)."""

    name = "world-baseline"

    def __init__(self, chunk: int = 16):
        self.chunk = chunk
        self._lock = threading.Lock()
        self.calls = 0

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "backend": "rule-based", "weights": None}

    def stream(self, messages: list[dict[str, Any]], *, stop: list[str], settings: GenerationSettings,
               cancel: threading.Event | None = None) -> Iterator[Delta]:
        with self._lock:
            self.calls += 1
        text, _ = cut_at_stop(self.turn(messages), stop)
        for i in range(0, len(text), self.chunk):
            if cancel is not None and cancel.is_set():
                yield Delta(finish_reason="cancelled", usage=Usage(0, len(text[:i].split())))
                return
            yield Delta(text[i:i + self.chunk])
        prompt = sum(len(_text(m).split()) for m in messages)
        yield Delta(finish_reason="stop", usage=Usage(prompt, len(text.split())))

    def turn(self, messages: list[dict[str, Any]]) -> str:
        """The next turn's text for this context."""
        system = _text(messages[0]) if messages and messages[0].get("role") == "system" else ""
        question = next((_text(m) for m in messages if m.get("role") == "user"), "")
        tools = set(re.findall(r'"name": "(\w+)"', system.split("## How to respond")[0]))
        results = _results(messages)
        kind = next(((rx.search(question), *rest) for rx, *rest in _KINDS if rx.search(question)), None)
        if kind is None:
            return _answer("This is not one of the questions I know how to research.", UNKNOWN)
        match, start, hop, fact = kind
        if not {"web_visit", "image_search" if start == "image" else "text_search"} <= tools:
            if "code" in tools and not results and "image_1" in system:
                return _call("I can look at the image but not search for what it shows; first its size.", "code",
                             {"code": "print(image_1.size)"})
            return _answer("Without search tools I cannot look this fact up, and the picture alone does not "
                           "tell it.", UNKNOWN)
        if not results:
            if start == "image":
                return _call("I search for pages that show this picture.", "image_search", {"image_paths": ["image_1"]})
            return _call(f"I search for {match.group(1)}.", "text_search", {"queries": [match.group(1)]})
        if len(results) == 1:
            url = _first_url(results[0])
            if url is None:
                return _answer("The search found nothing I can open.", UNKNOWN)
            return _call("I read the top result's page.", "web_visit", {"urls": [url]})
        page = results[-1]
        if hop is not None and len(results) == 2:
            m = _HOPS[hop].search(page)
            url = _link(page, m.group(1)) if m else None
            if url is None:
                return _answer("The page does not link to the next page I need.", UNKNOWN)
            return _call("The page links to the next page I need; I open it.", "web_visit", {"urls": [url]})
        m = _FACTS[fact].search(page)
        if m is None:
            return _answer("The page does not state what the question asks.", UNKNOWN)
        return _answer(f"The page says: {m.group(0)}.", m.group(1).strip())


def _call(thought: str, name: str, arguments: dict[str, Any]) -> str:
    return f"<think>{thought}</think><tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def _answer(thought: str, answer: str) -> str:
    return f"<think>{thought}</think><answer>{answer}</answer>"


__all__ = ["UNKNOWN", "WorldBaseline"]
