"""Where r1v4-nb keeps its files, resolved in one place: the cache root and the offline tools' data.

The offline search tools read a corpus, an image index and a page mirror. By default those are the
generated demo world's files; the world is built by `r1v4_nb.world`, a layer above the tools, so the
tools ask here instead of importing it. The package root hands `world.ensure_world` to
`provide_offline_data` when r1v4_nb is imported, so a default tool still builds the world on first use.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

__all__ = ["OfflineData", "cache_root", "offline_data", "provide_offline_data", "write_once"]


class OfflineData(Protocol):
    """The files the offline backends read: text corpus, image index, URL-to-file mirror map."""

    @property
    def corpus(self) -> Path: ...

    @property
    def image_index(self) -> Path: ...

    @property
    def mirror(self) -> Path: ...


_provider: Callable[[], OfflineData] | None = None


def cache_root() -> Path:
    """Where r1v4-nb keeps generated and cached data: $R1V4_CACHE or ~/.cache/r1v4-nb."""
    env = os.environ.get("R1V4_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "r1v4-nb"


def provide_offline_data(provider: Callable[[], OfflineData]) -> None:
    """Name the function that returns (and on first use builds) the offline tools' default data."""
    global _provider
    _provider = provider


def offline_data() -> OfflineData:
    """The offline tools' default files (the demo world under the cache root, generated on first use)."""
    if _provider is None:  # only reachable when r1v4_nb's own __init__ did not run
        raise RuntimeError("no provider of offline data: import r1v4_nb first")
    return _provider()


def write_once(target: Path, data: bytes) -> Path:
    """Write `data` at `target` unless a file is there already (content-addressed names: the same name
    means the same bytes). The bytes go to a temporary name unique to this process and thread first, then
    are renamed into place, so a reader never sees half a file and two writers never share a temporary."""
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return target
