"""Building an index file so that readers only ever see a complete one."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def building(path: Path, schema: str) -> Iterator[sqlite3.Connection]:
    """A connection to `<path>.building` with `schema` made; on success it is committed and renamed to
    `path` (replacing an old file), on failure it is closed and deleted, so no half-built index is left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".building")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    try:
        conn.executescript(schema)
        yield conn
        conn.commit()
    except BaseException:
        conn.close()
        tmp.unlink(missing_ok=True)
        raise
    conn.close()
    tmp.replace(path)
