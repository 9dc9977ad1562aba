"""The offline web_visit backend: a URL-to-file map over a local mirror (the demo world's pages)."""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

from ...errors import UsageError, read_text_file
from ..base import ToolError
from ..netguard import BlockedURL
from .fetch import Fetched


def normalise_url(url: str) -> str:
    """Scheme and host lower-cased, fragment and trailing slash dropped: one spelling per page."""
    try:
        url = urldefrag(url.strip())[0]
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. a bracketed host that is no IPv6 address: `http://[::1/`
        raise BlockedURL(f"malformed URL {url!r}: {exc}") from None
    path = parts.path.rstrip("/") or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}{query}"


class Mirror:
    """Serves pages from files named in a JSON map {url: path relative to the map's folder}."""

    def __init__(self, map_path: str | Path):
        self.map_path = Path(map_path)
        if not self.map_path.is_file():
            raise UsageError(f"no mirror map at {self.map_path}; pass mirror=PATH to a JSON {{url: file}} map")
        self.root = self.map_path.parent.resolve()
        hint = 'a JSON map {"url": "file relative to the map"}'
        try:
            raw = json.loads(read_text_file(self.map_path, hint))
        except json.JSONDecodeError as exc:
            raise UsageError(f"{self.map_path} is not valid JSON ({exc.msg} at line {exc.lineno}); give {hint}") from None
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise UsageError(f"{self.map_path} is not a JSON object of URL -> file name; give {hint}")
        try:
            self.files = {normalise_url(u): p for u, p in raw.items()}
        except ToolError as exc:
            raise UsageError(f"{self.map_path}: {exc}") from None

    def fetch(self, url: str) -> Fetched:
        if urlsplit(url).scheme.lower() == "file":
            path = Path(unquote(urlsplit(url).path)).resolve()
            if not path.is_relative_to(self.root) or not path.is_file():
                raise ToolError(f"{url} is not a file of the offline mirror")
        else:
            rel = self.files.get(normalise_url(url))
            if rel is None:
                raise ToolError(f"{url} is not in the offline mirror (offline backend; "
                                "use backend='http' to visit the live web)")
            path = (self.root / rel).resolve()
            if not path.is_relative_to(self.root) or not path.is_file():
                raise ToolError(f"{url}: the mirror's file {rel} is missing")
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Fetched(url, 200, media, "utf-8" if media.startswith("text/") else None, path.read_bytes())

    def close(self) -> None:
        """Nothing to release (files are read per request)."""
