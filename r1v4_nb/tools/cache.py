"""One on-disk cache for every search and visit result.

Keyed by tool, backend and normalised arguments, so a run that went through the
cache can be re-run offline (mode "read-only") and sees the same observations;
a miss in that mode is an explicit "offline, not cached" observation rather than
a silent live call. SQLite in WAL mode with a busy timeout lets several
processes (parallel eval workers, a notebook and a CLI) share one file.
Images a result refers to (search thumbnails) are kept beside the database,
named by hash, so a cached result never points at a file that has gone.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..paths import cache_root, write_once
from .base import ToolError

MODES = {"read-write": "read-write", "rw": "read-write", "read-only": "read-only", "ro": "read-only",
         "off": "off"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    tool TEXT NOT NULL,
    backend TEXT NOT NULL,
    arguments TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL
);
"""


class NotCached(ToolError):
    """A read-only cache has no entry for this call (the run would need the network)."""


def normalise_text(s: str) -> str:
    """Queries that differ only in case or spacing share one entry."""
    return " ".join(s.split()).casefold()


def cache_key(tool: str, backend: str, arguments: dict[str, Any]) -> str:
    blob = json.dumps([tool, backend, arguments], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _set_up_for_writing(conn: sqlite3.Connection, patience_s: float = 60.0) -> None:
    """WAL mode and the schema. Switching to WAL can report 'database is locked' without waiting on the
    busy handler while another process is doing the same, so that one error is retried, not surfaced."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class ToolCache:
    """A SQLite cache of tool results (JSON values) plus a folder of blobs (thumbnails) named by hash."""

    def __init__(self, path: str | Path | None = None, mode: str = "read-write"):
        if mode not in MODES:
            raise UsageError(f"unknown cache mode {mode!r}; choose read-write, read-only or off")
        self.mode = MODES[mode]
        self.path = Path(path) if path is not None else cache_root() / "tool-cache.sqlite"
        self.blob_dir = self.path.with_name(self.path.stem + "-blobs")
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def _db(self) -> sqlite3.Connection:
        # One connection per process: a forked child must not reuse its parent's handle.
        if self._conn is None or self._pid != os.getpid():
            if self.mode == "read-only" and not self.path.exists():
                raise NotCached(f"offline, not cached: the cache {self.path} does not exist")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if self.mode == "read-write" and not self.path.exists():
                    _create_database(self.path)
                _refuse_foreign_file(self.path)
                conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
                conn.execute("PRAGMA busy_timeout=30000")
                if self.mode == "read-write":
                    _set_up_for_writing(conn)
            except (sqlite3.DatabaseError, OSError) as exc:  # not a database, or a folder we cannot write
                raise UsageError(f"cannot use the tool cache {self.path} ({exc}); delete it, or pass another "
                                 "file (--cache / cache=) or cache mode off") from None
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def get(self, tool: str, backend: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        """The cached value, or None (always None when the cache is off)."""
        if self.mode == "off":
            return None
        key = cache_key(tool, backend, arguments)
        with self._lock:
            try:
                row = self._db().execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    row = None
                else:
                    raise
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def put(self, tool: str, backend: str, arguments: dict[str, Any], value: dict[str, Any]) -> None:
        """Store a value (only in read-write mode)."""
        if self.mode != "read-write":
            return
        key = cache_key(tool, backend, arguments)
        row = (key, tool, backend, json.dumps(arguments, sort_keys=True, ensure_ascii=False),
               json.dumps(value, ensure_ascii=False), time.time())
        with self._lock:
            self._db().execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)", row)

    def fetch(self, tool: str, backend: str, arguments: dict[str, Any],
              compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The cached value, else `compute()` stored; in read-only mode a miss raises NotCached."""
        found = self.get(tool, backend, arguments)
        if found is not None:
            return found
        if self.mode == "read-only":
            shown = json.dumps(arguments, ensure_ascii=False, sort_keys=True)
            raise NotCached(f"offline, not cached: {tool} via {backend} {shown}")
        value = compute()
        self.put(tool, backend, arguments, value)
        return value

    def put_blob(self, data: bytes, suffix: str = ".png") -> str:
        """Keep bytes beside the database under their hash; returns the file name."""
        name = hashlib.sha256(data).hexdigest() + suffix
        write_once(self.blob_dir / name, data)
        return name

    def blob(self, name: str) -> Path:
        return self.blob_dir / name

    def __len__(self) -> int:
        if self.mode == "off" or not self.path.exists():
            return 0
        with self._lock:
            try:
                return int(self._db().execute("SELECT COUNT(*) FROM entries").fetchone()[0])
            except sqlite3.OperationalError:
                return 0

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def settings(self) -> dict[str, Any]:
        return {"cache": str(self.path), "cache_mode": self.mode}


def _create_database(path: Path) -> None:
    """Create the cache file whole (schema written) under a temporary name and link it into place, so that the
    path never holds an empty file another process could mistake for the user's; a process that loses the race
    uses the winner's file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)
    finally:
        conn.close()
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links: a rename, which may replace a sibling's fresh database
        if not path.exists():
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _refuse_foreign_file(path: Path) -> None:
    """An existing file that is not a SQLite database (an empty one included) is the user's, not ours: SQLite
    would silently turn an empty file into a database, so refuse before it can."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return  # missing: created; a folder or unreadable: sqlite's own error says so
    if head != b"SQLite format 3\x00":
        what = "an empty file" if not head else "not a SQLite database"
        raise UsageError(f"cannot use the tool cache {path}: it exists and is {what}; pass a new or existing "
                         "cache file (--cache / cache=), or cache mode off")


def open_cache(cache: ToolCache | str | Path | None = None, mode: str | None = None) -> ToolCache:
    """A tool's cache from its settings: an instance, a path, or None for the shared default file."""
    if isinstance(cache, ToolCache):
        if mode is not None and MODES.get(mode, mode) != cache.mode:
            raise UsageError(f"cache_mode={mode!r} conflicts with the given cache's mode {cache.mode!r}")
        return cache
    if cache == "off":
        return ToolCache(None, "off")
    return ToolCache(cache, mode or os.environ.get("R1V4_CACHE_MODE", "read-write"))
