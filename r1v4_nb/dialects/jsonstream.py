"""Reading a tool call's JSON while it streams in, for views that show a call as it is written.

A `<tool_call>` body arrives a few characters at a time. `StreamedCall` shows the source of a code call
as it is typed (decoding the JSON string of its `code` argument on the fly) and any other call as raw
JSON; `JsonStringReader` decodes a JSON string body in linear time, an escape cut by a chunk boundary
waiting for the rest. The dialects' `TagParser` finds where a call starts and ends; this reads inside it.
"""

from __future__ import annotations

import re

__all__ = ["JsonStringReader", "StreamedCall", "partial_json_string"]

_NAME = re.compile(r'"name"\s*:\s*"([^"\\]*)"')
_CODE_KEY = re.compile(r'"code"\s*:\s*"')
_SPECIAL = re.compile(r'["\\]')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class JsonStringReader:
    """Decodes a JSON string body as it streams in; each `feed` returns only the newly decoded text.

    An escape cut by the end of a chunk waits for the rest, so the decoded text only ever grows, and
    the work per chunk is proportional to the chunk (a long code call streams in linear time).
    """

    def __init__(self) -> None:
        self._pending = ""
        self.closed = False

    def feed(self, text: str) -> str:
        if self.closed:
            return ""
        s = self._pending + text
        out: list[str] = []
        i, n = 0, len(s)
        while i < n:
            ch = s[i]
            if ch == '"':
                self.closed = True
                break
            if ch != "\\":
                j = _SPECIAL.search(s, i)
                end = j.start() if j else n
                out.append(s[i:end])
                i = end
                continue
            if i + 1 >= n:
                break
            e = s[i + 1]
            if e == "u":
                if i + 6 > n:
                    break
                try:
                    out.append(chr(int(s[i + 2:i + 6], 16)))
                except ValueError:
                    out.append(s[i:i + 6])
                i += 6
                continue
            out.append(_ESCAPES.get(e, e))
            i += 2
        self._pending = "" if self.closed else s[i:]
        return "".join(out)


def partial_json_string(raw: str, start: int) -> str:
    """Decode a JSON string body from `start` up to its closing quote or the end of what has streamed."""
    return JsonStringReader().feed(raw[start:])


class StreamedCall:
    """Follows a streaming <tool_call> body: shows the code of a code call as it is written, else the JSON.

    `feed` returns the text to append to what is shown.
    """

    def __init__(self) -> None:
        self.raw = ""
        self.mode: str | None = None  # "code" or "raw" once known
        self._code: JsonStringReader | None = None

    def feed(self, text: str) -> str:
        if self.mode == "raw":
            return text
        if self._code is not None:
            return self._code.feed(text)
        self.raw += text
        if self.mode is None:
            m = _NAME.search(self.raw)
            if not m:
                return ""
            self.mode = "code" if m.group(1) == "code" else "raw"
            if self.mode == "raw":
                return self.raw
        m = _CODE_KEY.search(self.raw)
        if not m:
            return ""
        self._code = JsonStringReader()
        return self._code.feed(self.raw[m.end():])
