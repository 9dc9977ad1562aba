"""Pieces the format modules share: loading the dialect, naming where an image came from."""

from __future__ import annotations

from ..dialects import Dialect, get_dialect
from ..errors import UsageError
from ..images import Provenance

# tool name -> provenance kind of the images its results carry
_PROVENANCE = {"code": "code", "image_search": "search", "text_search": "search", "web_visit": "visit"}


def load_dialect(dialect: str | Dialect) -> Dialect:
    """A dialect by name, with a one-line error when its module is not part of this install."""
    try:
        return get_dialect(dialect)
    except ImportError as exc:
        raise UsageError(f"dialect {dialect!r} cannot be loaded here ({exc}); pass another dialect") from None


def provenance_for(tool: str, step: int) -> Provenance:
    """The provenance of an image returned by `tool` at tool step `step`."""
    return Provenance(_PROVENANCE.get(tool, "tool"), step=step)
