"""Escaping for everything that reaches the notebook's HTML.

Text from a model, a web page, a search result or code output is data: it is
escaped, never interpreted. Links are kept only for http(s) URLs, and images
only as data: URLs that we generate ourselves from files on disk, so no page,
snippet or model output can run script, load a remote resource or apply CSS.
"""

from __future__ import annotations

import html
from urllib.parse import urlsplit

_CONTROL = {chr(c) for c in range(0x20)} | {"\x7f"}


def esc(text: object) -> str:
    """Text as inert HTML (quotes escaped too, so it is safe inside attributes)."""
    return html.escape("" if text is None else str(text), quote=True)


def safe_url(url: object) -> str | None:
    """The URL if it is a plain http(s) URL, else None (javascript:, data:, relative, malformed)."""
    if not isinstance(url, str):
        return None
    u = url.strip()
    if not u or any(ch in _CONTROL for ch in u) or " " in u:
        return None
    try:
        parts = urlsplit(u)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return u


def link(url: object, text: object = None) -> str:
    """An escaped link for an http(s) URL; anything else becomes escaped plain text."""
    label = esc(text if text not in (None, "") else url)
    u = safe_url(url)
    if u is None:
        return f'<span class="r1v4-badurl">{label}</span>'
    return f'<a href="{esc(u)}" target="_blank" rel="noopener noreferrer nofollow">{label}</a>'
