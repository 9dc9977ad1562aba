"""Length-prefixed JSON messages over pipes: a 4-byte big-endian length, then UTF-8 JSON.

Both ends use it: the worker with blocking reads, the kernel with a deadline so
a hung worker can never hang the caller. Images never travel here, only paths.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from collections.abc import Callable
from typing import Any

MAX_MESSAGE = 64 * 1024 * 1024


class ProtocolError(Exception):
    """The other end sent something that is not a message."""


class Timeout(Exception):
    """No message arrived before the deadline."""


class Closed(Exception):
    """The other end closed the pipe (the process died)."""


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, ensure_ascii=False).encode("utf-8")
    return struct.pack(">I", len(body)) + body


def send(fd: int, message: dict[str, Any]) -> None:
    """Write one message; a single write when it fits PIPE_BUF, so writers never interleave."""
    data = encode(message)
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise Closed("pipe closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv(fd: int) -> dict[str, Any]:
    """Read one message, blocking (the worker's side)."""
    (length,) = struct.unpack(">I", _read_exact(fd, 4))
    if length > MAX_MESSAGE:
        raise ProtocolError(f"message of {length} bytes")
    return json.loads(_read_exact(fd, length).decode("utf-8"))


CANCEL_REPEAT_S = 0.5


class Reader:
    """Reads messages from a pipe with a deadline and a cancel check (the kernel's side)."""

    def __init__(self, fd: int, max_message: int = MAX_MESSAGE):
        self.fd = fd
        self.max_message = max_message
        self.buffer = bytearray()

    def _take(self) -> dict[str, Any] | None:
        if len(self.buffer) < 4:
            return None
        (length,) = struct.unpack(">I", self.buffer[:4])
        if length > self.max_message:
            raise ProtocolError(f"a message of {length} bytes (at most {self.max_message})")
        if len(self.buffer) < 4 + length:
            return None
        body = bytes(self.buffer[4:4 + length])
        del self.buffer[:4 + length]
        try:
            message = json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested deeper than the stack
            raise ProtocolError(f"not JSON ({type(exc).__name__})") from None
        if not isinstance(message, dict):
            raise ProtocolError(f"a JSON {type(message).__name__}, not an object")
        return message

    def read(self, deadline: float, cancelled: Callable[[], bool] = lambda: False,
             on_cancel: Callable[[], None] | None = None) -> dict[str, Any]:
        """The next message; raises Timeout after `deadline` (time.monotonic), Closed on EOF.

        Once `cancelled()`, `on_cancel` is called at once and again every CANCEL_REPEAT_S until a message
        comes: a signal that reached the worker before its code started (a loaded machine) is not the end."""
        notified_at: float | None = None
        while True:
            message = self._take()
            if message is not None:
                return message
            now = time.monotonic()
            if (notified_at is None or now - notified_at >= CANCEL_REPEAT_S) and cancelled():
                notified_at = now
                if on_cancel is not None:
                    on_cancel()
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], min(max(remaining, 0.0), 0.05))
            if ready:
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    raise Closed("pipe closed")
                self.buffer += chunk
            elif remaining <= 0:
                raise Timeout()
