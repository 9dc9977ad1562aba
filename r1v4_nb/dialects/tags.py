"""The incremental tag parser that every tag dialect configures.

A dialect names its tags (`<think>`, `<tool_call>`, `<code>`...) and what kind of
body each has; `TagParser` turns a stream of text or UTF-8 bytes into segments.
It works in one pass: each character is looked at a bounded number of times,
and only a possible partial tag at the end of a chunk is held back, so feeding
n characters in tiny chunks costs O(n) and the result never depends on the
chunking.

Rules (docs/dialects.md has the full story):

- Outside tags, text is a `text` segment; whitespace-only text between tags is
  dropped. Unknown tags and stray closing tags stay literal text, except a
  stray `</think>`: after text that opens the output it closes thinking that
  the prompt opened (Qwen3-VL Thinking's generation prompt ends in `<think>`,
  so the model writes no opening tag), and elsewhere it is read as an opener
  written by mistake, ending at `</think>` or at the next tag. Both carry a
  `note` on the segment.
- Inside a tag only its own closing tag ends it (no nesting, no implicit close).
- A `json` body (tool calls) tracks JSON strings: a closing tag inside a JSON
  string is part of the string, which is what makes a stop string cut inside
  code recoverable (see `open_kind`).
- `Segment.text` is the body with surrounding whitespace stripped; the deltas
  are the raw body.
"""

from __future__ import annotations

import codecs
import json
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from ..records import Segment, ToolCall
from .base import Parser, SegmentEvent

CALL_FORMAT = '{"name": "<tool name>", "arguments": {...}}'


@dataclass(frozen=True)
class Tag:
    """One tag of a dialect: `<name>body</name>` becomes a segment of `kind`.

    `body` is "text" (kept as is), "json" (a tool call: JSON strings are tracked and the body
    is parsed into a ToolCall), "code" (Python source for the code tool, optionally fenced) or
    "args" (a call of `tool` whose body is its argument: `<text_search>query</text_search>`).
    """

    name: str
    kind: str
    body: str = "text"
    tool: str = ""  # for body "args": the tool the tag calls (R1V4's basic-search tags)

    @property
    def opener(self) -> str:
        return f"<{self.name}>"

    @property
    def closer(self) -> str:
        return f"</{self.name}>"


# Models often put raw newlines inside code strings: accept control characters in JSON strings.
LENIENT_JSON = json.JSONDecoder(strict=False)
_FENCE = re.compile(r"\A```[ \t]*[\w+-]*[ \t]*\n?")
_CLOSING_FENCE = re.compile(r"\n?[ \t]*```[ \t]*\Z")
_JSON_OUTSIDE = re.compile(r'["{}\[\]<]')
_JSON_STRING_BODY = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.S)


def strip_fence(text: str) -> str:
    """Text without a surrounding Markdown code fence (```python ... ```), if it has one."""
    s = text.strip()
    m = _FENCE.match(s)
    if not m:
        return s
    s = s[m.end():]
    return _CLOSING_FENCE.sub("", s)


def code_source(body: str) -> str:
    """The Python source inside a `<code>` body: fence removed, common indentation removed."""
    return textwrap.dedent(strip_fence(body).strip("\n")).strip("\n").rstrip()


def code_call(body: str) -> ToolCall:
    """A `<code>` body as a call of the code tool."""
    source = code_source(body)
    error = None if source.strip() else "the <code> block is empty; write Python source between <code> and </code>"
    return ToolCall("code", {"code": source}, raw=body, error=error)


def parse_tool_call(body: str) -> ToolCall:
    """A `<tool_call>` body as a ToolCall; anything malformed sets `error` to a message for the model."""

    def bad(message: str, name: str = "") -> ToolCall:
        return ToolCall(name, {}, raw=body, error=message)

    text = strip_fence(body)
    if not text:
        return bad(f"the tool call is empty; write {CALL_FORMAT}")
    try:
        obj, end = LENIENT_JSON.raw_decode(text)
    except json.JSONDecodeError as exc:
        return bad(f"the tool call is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                   f"write {CALL_FORMAT}")
    except (ValueError, RecursionError) as exc:
        return bad(f"the tool call is not valid JSON ({exc}); write {CALL_FORMAT}")
    if not isinstance(obj, dict):
        return bad(f"the tool call must be a JSON object, got {type(obj).__name__}; write {CALL_FORMAT}")
    name = obj.get("name")
    name = name.strip() if isinstance(name, str) else ""
    if text[end:].strip():
        return bad(f"unexpected text after the tool call's JSON object: {text[end:].strip()[:40]!r}", name)
    if not name:
        return bad(f'the tool call has no "name"; write {CALL_FORMAT}')
    args = obj["arguments"] if "arguments" in obj else obj.get("parameters", {})
    if args is None:
        args = {}
    if isinstance(args, str):
        if not args.strip():
            args = {}
        else:
            try:
                args = LENIENT_JSON.decode(args)
            except (ValueError, RecursionError):
                return bad(f'the "arguments" of {name!r} are a string that is not a JSON object; '
                           f'give an object: {{"name": "{name}", "arguments": {{...}}}}', name)
    if not isinstance(args, dict):
        return bad(f'the "arguments" of {name!r} must be a JSON object, got {type(args).__name__}', name)
    return ToolCall(name, args, raw=body)


_NUMBERED = re.compile(r"^\s*(?:\d+[.)]|[-*])\s+")
_URL = re.compile(r"https?://\S+")
# what each basic-search tag's plain-text body fills
_ARG_KEYS = {"text_search": "queries", "image_search": "image_paths", "web_visit": "urls"}
_PYTHON_START = re.compile(r"\A\s*(?:```(?:python|py)?\s*\n|(?:import|from)\s+\w|[A-Za-z_][\w.]*\s*=|print\(|"
                           r"def\s|for\s|if\s|with\s)")


def args_call(tool: str, body: str) -> tuple[ToolCall, str]:
    """A call of `tool` from the body of one of R1V4's basic-search tags, and the note on how it was read.

    The body may be the arguments' JSON object, a JSON list of values, or plain text: one value a
    line (numbering and bullets dropped; a web tag's URLs wherever they are).
    """
    key = _ARG_KEYS.get(tool, "query")
    text = strip_fence(body)
    note = f"R1V4 basic-search tag <{tool}>"
    try:
        value = LENIENT_JSON.decode(text) if text[:1] in "{[\"" else None
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, dict):
        return ToolCall(tool, value, raw=body), note
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        items = [str(v) for v in value if str(v).strip()]
    elif tool == "web_visit":
        items = _URL.findall(text)
    else:
        items = [_NUMBERED.sub("", line).strip() for line in text.splitlines()]
        items = [i for i in items if i]
    if not items:
        return ToolCall(tool, {}, raw=body, error=f"the <{tool}> tag is empty; write what to search inside it"), note
    return ToolCall(tool, {key: items}, raw=body), note


def looks_like_python(body: str) -> bool:
    """Whether a `<tool_call>` body that is not JSON is Python source (a bare code call)."""
    text = body.strip()
    return bool(text) and not text.startswith(("{", "[")) and bool(_PYTHON_START.match(text))


def _prefixes(words: Sequence[str]) -> frozenset[str]:
    return frozenset(w[:k] for w in words for k in range(1, len(w)))


class TagParser(Parser):
    """An incremental parser over a fixed set of tags. See the module docstring for the rules."""

    def __init__(self, tags: Sequence[Tag]):
        self._tags = {t.opener: t for t in tags}
        self._opener_prefixes = _prefixes(list(self._tags))
        self._closer_prefix_sets = {t.closer: _prefixes([t.closer]) for t in tags}
        self._max_opener = max((len(o) for o in self._tags), default=0)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf = ""  # held back: a possible partial tag
        self._done: list[Segment] = []
        self._events: list[SegmentEvent] = []
        self._delta_kind: str | None = None
        self._delta_parts: list[str] = []
        # the open tagged segment
        self._tag: Tag | None = None
        self._body: list[str] = []
        self._closer = ""
        self._closer_prefixes: frozenset[str] = frozenset()
        # JSON state inside a json body
        self._depth = 0
        self._in_str = False
        self._esc = False
        # free text
        self._text: list[str] | None = None  # None: no text segment open
        self._ws: list[str] = []  # leading whitespace not yet known to start a text segment
        self._finished = False
        self._think = next((t for t in tags if t.kind == "think" and t.body == "text"), None)
        self._loose = False  # the open think segment was opened by a stray </think>
        self._any_prefixes = self._opener_prefixes | _prefixes([t.closer for t in tags])
        self._max_tag = max([len(t.closer) for t in tags] + [self._max_opener])

    # -- Parser API -------------------------------------------------------------------------------

    def feed(self, chunk: str | bytes) -> list[SegmentEvent]:
        if self._finished:
            return []
        if isinstance(chunk, (bytes, bytearray, memoryview)):
            text = self._decoder.decode(bytes(chunk))
        else:
            text = self._flush_decoder() + str(chunk)
        if text:
            self._buf += text
            self._scan(final=False)
        return self._take()

    def finish(self) -> list[SegmentEvent]:
        if self._finished:
            return []
        self._buf += self._flush_decoder()
        self._scan(final=True)
        if self._tag is not None:
            self._close_tag(closed=False)
        self._close_text()
        self._finished = True
        return self._take()

    def close_for_stop(self) -> str:
        return self._tag.closer if self._tag is not None else ""

    @property
    def segments(self) -> list[Segment]:
        return list(self._done)

    @property
    def open_kind(self) -> str | None:
        return self._tag.kind if self._tag is not None else None

    # -- scanning ---------------------------------------------------------------------------------

    def _flush_decoder(self) -> str:
        pending, _ = self._decoder.getstate()
        return self._decoder.decode(b"", final=True) if pending else ""

    def _take(self) -> list[SegmentEvent]:
        self._flush_delta()
        events, self._events = self._events, []
        return events

    def _scan(self, final: bool) -> None:
        """Consume `_buf`, leaving in it only a possible partial tag (nothing when `final`)."""
        buf, i, n = self._buf, 0, len(self._buf)
        while i < n:
            if self._tag is None:
                i = self._scan_text(buf, i, final)
            elif self._tag.body == "json":
                i = self._scan_json(buf, i, final)
            else:
                i = self._scan_plain(buf, i, final)
            if i < 0:  # a partial tag starts at ~i: hold it back
                self._buf = buf[~i:]
                return
        self._buf = ""

    def _scan_text(self, buf: str, i: int, final: bool) -> int:
        while True:
            j = buf.find("<", i)
            if j == -1:
                self._emit_text(buf[i:])
                return len(buf)
            if j > i:
                self._emit_text(buf[i:j])
            end = buf.find(">", j, j + self._max_tag)
            if end != -1:
                tag = self._tags.get(buf[j:end + 1])
                if tag is not None:
                    self._open_tag(tag)
                    return end + 1
                if self._think is not None and buf[j:end + 1] == self._think.closer:
                    self._stray_think_closer()
                    return end + 1
            elif not final and len(buf) - j < self._max_tag and buf[j:] in self._any_prefixes:
                return ~j
            self._emit_text("<")
            i = j + 1

    def _stray_think_closer(self) -> None:
        """A `</think>` with no think open: the end of prompt-opened thinking, or a mistaken opener."""
        assert self._think is not None
        if self._text is not None and not self._done:
            body = "".join(self._text)
            self._text, self._ws = None, []
            seg = Segment(self._think.kind, body.strip(), note="thinking opened by the prompt (no <think> written)")
            self._done.append(seg)
            self._event(SegmentEvent(self._think.kind, "close", segment=seg))
            return
        self._open_tag(self._think)
        self._loose = True

    def _scan_plain(self, buf: str, i: int, final: bool) -> int:
        if self._loose:
            return self._scan_loose(buf, i, final)
        closer = self._closer
        k = buf.find(closer, i)
        if k != -1:
            self._emit_body(buf[i:k])
            self._close_tag(closed=True)
            return k + len(closer)
        hold = self._held_closer(buf, i, final)
        self._emit_body(buf[i:hold])
        return hold if hold == len(buf) else ~hold

    def _scan_loose(self, buf: str, i: int, final: bool) -> int:
        """The body of a think opened by a stray `</think>`: it ends at `</think>` or before any opener."""
        k = buf.find("<", i)
        while k != -1:
            end = buf.find(">", k, k + self._max_tag)
            if end != -1:
                word = buf[k:end + 1]
                if word == self._closer:
                    self._emit_body(buf[i:k])
                    self._close_tag(closed=True)
                    return end + 1
                if word in self._tags:
                    self._emit_body(buf[i:k])
                    self._close_tag(closed=True)
                    return k
            elif not final and len(buf) - k < self._max_tag and buf[k:] in self._any_prefixes:
                self._emit_body(buf[i:k])
                return ~k
            k = buf.find("<", k + 1)
        self._emit_body(buf[i:])
        return len(buf)

    def _held_closer(self, buf: str, i: int, final: bool) -> int:
        """Where a possible partial closing tag at the end of `buf[i:]` starts (len(buf) if none)."""
        if final:
            return len(buf)
        lo = max(i, len(buf) - len(self._closer) + 1)
        k = buf.rfind("<", lo)
        if k != -1 and buf[k:] in self._closer_prefixes:
            return k
        return len(buf)

    def _scan_json(self, buf: str, i: int, final: bool) -> int:
        """Like `_scan_plain`, but a closing tag counts only outside JSON strings."""
        closer = self._closer
        start, n = i, len(buf)
        while i < n:
            if self._in_str:
                if self._esc:
                    self._esc = False
                    i += 1
                    continue
                i = _JSON_STRING_BODY.match(buf, i).end()  # type: ignore[union-attr]
                if i < n:  # at the closing quote, or at a backslash that ends the buffer
                    if buf[i] == '"':
                        self._in_str = False
                    else:
                        self._esc = True
                    i += 1
                continue
            m = _JSON_OUTSIDE.search(buf, i)
            if m is None:
                i = n
                break
            c, j = m.group(), m.start()
            if c == "<":
                if buf.startswith(closer, j):
                    self._emit_body(buf[start:j])
                    self._close_tag(closed=True)
                    return j + len(closer)
                if not final and len(buf) - j < len(closer) and buf[j:] in self._closer_prefixes:
                    self._emit_body(buf[start:j])
                    return ~j
            elif c == '"':
                self._in_str = self._depth > 0
            elif c in "{[":
                self._depth += 1
            elif self._depth > 0:
                self._depth -= 1
            i = j + 1
        self._emit_body(buf[start:i])
        return i

    # -- segments ---------------------------------------------------------------------------------

    def _emit_text(self, s: str) -> None:
        if not s:
            return
        if self._text is None:
            if not s.strip():
                self._ws.append(s)
                return
            self._text = []
            self._event(SegmentEvent("text", "open"))
            s = "".join(self._ws) + s
            self._ws = []
        self._text.append(s)
        self._delta("text", s)

    def _close_text(self) -> None:
        self._ws = []
        if self._text is None:
            return
        seg = Segment("text", "".join(self._text).strip())
        self._text = None
        self._done.append(seg)
        self._event(SegmentEvent("text", "close", segment=seg))

    def _open_tag(self, tag: Tag) -> None:
        self._close_text()
        self._tag = tag
        self._body = []
        self._closer = tag.closer
        self._closer_prefixes = self._closer_prefix_sets[tag.closer]
        self._depth, self._in_str, self._esc = 0, False, False
        self._event(SegmentEvent(tag.kind, "open"))

    def _emit_body(self, s: str) -> None:
        if s:
            self._body.append(s)
            self._delta(self._tag.kind, s)  # type: ignore[union-attr]

    def _close_tag(self, closed: bool) -> None:
        tag = self._tag
        assert tag is not None
        body = "".join(self._body)
        call = None
        kind = tag.kind
        note = "</think> written as an opener" if self._loose else ""
        if tag.body == "json":
            call = parse_tool_call(body)
            if call.error and looks_like_python(body):
                call, note = code_call(body), "bare Python code in a <tool_call>, run as the code tool"
        elif tag.body == "code":
            call = code_call(body)
        elif tag.body == "args":
            if tag.tool == "web_visit" and not _URL.search(body):  # page text the data set shows as a result
                kind, note = "observation", f"R1V4 basic-search tag <{tag.name}> holding page text"
            else:
                call, note = args_call(tag.tool, body)
        seg = Segment(kind, body.strip(), call, closed, note)
        self._tag, self._body, self._loose = None, [], False
        self._done.append(seg)
        self._event(SegmentEvent(tag.kind, "close", segment=seg))

    def _delta(self, kind: str, s: str) -> None:
        """Pieces of one segment's text within one feed go out as a single delta event."""
        if self._delta_kind != kind:
            self._flush_delta()
            self._delta_kind = kind
        self._delta_parts.append(s)

    def _flush_delta(self) -> None:
        if self._delta_parts:
            self._events.append(SegmentEvent(self._delta_kind or "", "delta", "".join(self._delta_parts)))
            self._delta_kind, self._delta_parts = None, []

    def _event(self, ev: SegmentEvent) -> None:
        self._flush_delta()
        self._events.append(ev)
