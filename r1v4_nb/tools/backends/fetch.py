"""Live page fetching for web_visit: httpx with timeouts, a size cap and redirects checked hop by hop.

Redirects are followed here, not by httpx, so that every hop goes through the
SSRF guard; each request connects to the address the guard checked (the Host
header and TLS server name keep the real host name), so a DNS answer cannot
change between the check and the connection.
"""

from __future__ import annotations

import codecs
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from ..base import ToolError
from ..netguard import BlockedURL, Resolver, Target, check_url, system_resolver
from .http import RETRY_STATUS, BackendUnavailable

USER_AGENT = "r1v4-nb/0.1 (+web_visit; research agent)"
_META_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


@dataclass
class Fetched:
    """A response body as bytes with what is needed to read it."""

    url: str  # the final URL after redirects
    status: int
    content_type: str  # media type, lower case, without parameters
    charset: str | None
    body: bytes
    truncated: bool = False
    redirects: list[str] = field(default_factory=list)


def decode(body: bytes, charset: str | None, content_type: str) -> tuple[str, str | None]:
    """Body bytes as text: the declared charset, else a <meta> charset, else UTF-8; (text, note on bad bytes)."""
    declared = charset
    if not declared and content_type in ("text/html", "application/xhtml+xml"):
        m = _META_CHARSET.search(body[:4096])
        declared = m.group(1).decode("ascii") if m else None
    candidates = []
    for enc in (declared, "utf-8"):
        if enc:
            try:
                candidates.append(codecs.lookup(enc).name)
            except LookupError:
                pass
    for enc in dict.fromkeys(candidates):
        try:
            return body.decode(enc), None
        except UnicodeDecodeError:
            continue
    enc = candidates[0] if candidates else "utf-8"
    return body.decode(enc, errors="replace"), f"some bytes were not valid {enc} and were replaced"


def _pinned(url: str, target: Target) -> tuple[str, dict[str, str], dict[str, str]]:
    """The URL rewritten to the checked address, with the Host header and TLS name of the original host."""
    parts = urlsplit(url)
    address = f"[{target.address}]" if ":" in target.address else target.address
    default = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default else f"{target.host}:{target.port}"
    if ":" in target.host and not target.host.startswith("["):
        host_header = f"[{target.host}]" if target.port == default else f"[{target.host}]:{target.port}"
    pinned = urlunsplit((target.scheme, f"{address}:{target.port}", parts.path or "/", parts.query, ""))
    ext = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return pinned, {"Host": host_header}, ext


class HttpFetcher:
    """GET a URL the guard allows, following at most `max_redirects` redirects, reading at most `max_bytes`."""

    def __init__(self, timeout: float = 10.0, deadline: float = 20.0, max_bytes: int = 2_000_000,
                 max_redirects: int = 5, allow_private: bool = False, allow_hosts: Iterable[str] = (),
                 resolver: Resolver | None = None, retries: int = 2, backoff: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep, verify: bool = True):
        self.deadline, self.max_bytes, self.max_redirects = deadline, max_bytes, max_redirects
        self.allow_private, self.allow_hosts = allow_private, tuple(allow_hosts)
        self.resolver = resolver or system_resolver
        self.retries, self.backoff, self.sleep = retries, backoff, sleep
        # trust_env=False: a proxy would resolve names itself and defeat the address check.
        self.client = httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False,
                                   verify=verify, headers={"User-Agent": USER_AGENT})

    def fetch(self, url: str) -> Fetched:
        start = time.monotonic()
        current = url
        hops: list[str] = []
        attempt = 0
        while True:
            target = check_url(current, self.allow_private, self.resolver, self.allow_hosts)
            pinned, headers, ext = _pinned(current, target)
            headers["Accept"] = "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.5"
            try:
                with self.client.stream("GET", pinned, headers=headers, extensions=ext) as r:
                    if r.is_redirect and r.headers.get("location"):
                        if len(hops) >= self.max_redirects:
                            raise ToolError(f"too many redirects (more than {self.max_redirects}) from {url}")
                        try:
                            current = urljoin(current, r.headers["location"])
                        except ValueError as exc:
                            raise BlockedURL(f"malformed redirect from {current}: {exc}") from exc
                        hops.append(current)
                        continue
                    if r.status_code in RETRY_STATUS and attempt + 1 < self.retries:
                        attempt += 1
                        after = r.headers.get("retry-after", "")
                        self.sleep(min(float(after) if after.isdigit() else self.backoff * 2 ** attempt, 5.0))
                        continue
                    if r.status_code == 429:
                        raise BackendUnavailable(f"{current} is rate-limiting us (HTTP 429); try later")
                    if r.status_code in RETRY_STATUS:  # down for now: an error, but not one to cache
                        raise BackendUnavailable(f"{current} is down (HTTP {r.status_code}); try later")
                    body, truncated = self._read(r, start, current)
                    ctype = r.headers.get("content-type", "")
                    media = ctype.split(";", 1)[0].strip().lower() or "application/octet-stream"
                    charset = r.charset_encoding
                    return Fetched(current, r.status_code, media, charset, body, truncated, hops)
            except httpx.InvalidURL as exc:  # a Location header httpx cannot parse: a refusal, not a crash
                raise BlockedURL(f"malformed URL {current!r}: {exc}") from exc
            except httpx.TimeoutException as exc:
                raise BackendUnavailable(f"{current} timed out") from exc
            except httpx.RemoteProtocolError as exc:
                if "location header" in str(exc).lower():  # httpx parses redirects before we see them
                    raise BlockedURL(f"malformed redirect from {current}: {exc}") from exc
                raise BackendUnavailable(f"{current} could not be reached ({type(exc).__name__})") from exc
            except httpx.TransportError as exc:
                raise BackendUnavailable(f"{current} could not be reached ({type(exc).__name__})") from exc

    def _read(self, r: httpx.Response, start: float, url: str) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        for chunk in r.iter_bytes(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size >= self.max_bytes:
                return b"".join(chunks)[: self.max_bytes], True
            if time.monotonic() - start > self.deadline:
                raise BackendUnavailable(f"{url} was too slow (more than {self.deadline:g} s in all)")
        return b"".join(chunks), False

    def close(self) -> None:
        self.client.close()
