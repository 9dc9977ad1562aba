"""SSRF guard for web_visit: which URLs an agent may fetch.

An agent follows URLs it read in search results, so a page can point it at the
user's router, a cloud metadata service or a local admin port. Every URL is
checked after DNS resolution (and again on every redirect hop): only http(s),
and only addresses on the public internet unless `allow_private` is set. The
checked address is returned so the caller connects to exactly that address,
not to a second, possibly different, resolution of the same name.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from .base import ToolError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Iterable[str]]

ALLOWED_SCHEMES = ("http", "https")
# Legacy IPv4 spellings that resolvers still accept: 2130706433, 0x7f000001, 0177.1, 127.1.
_LEGACY_V4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$", re.IGNORECASE)


class BlockedURL(ToolError):
    """A URL the guard refuses; the message says why and how to allow it."""


@dataclass(frozen=True)
class Target:
    """A URL that passed the guard: where to connect (`address`) and what to call it (`host`)."""

    scheme: str
    host: str
    port: int
    address: str


def system_resolver(host: str, port: int) -> list[str]:
    """All addresses the system resolver gives for `host`."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ToolError(f"cannot resolve host {host!r}: {exc}") from exc
    return list(dict.fromkeys(info[4][0] for info in infos))


def parse_literal(host: str) -> IPAddress | None:
    """An IP address written in the host part, including the legacy integer / hex / octal IPv4 forms."""
    h = host.strip("[]")
    try:
        return ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        pass
    if _LEGACY_V4.match(h):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(h))
        except OSError:
            return None
    return None


def why_blocked(ip: IPAddress) -> str | None:
    """The name of the non-public range `ip` lies in, or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return why_blocked(ip.ipv4_mapped)
    for label, test in (
        ("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast), ("private", ip.is_private), ("reserved", ip.is_reserved),
    ):
        if test:
            return label
    if not ip.is_global:
        return "non-public"
    return None


def check_scheme(url: str) -> str:
    """The URL's scheme, lower-cased, when it is http(s); BlockedURL otherwise (needs no network)."""
    scheme = urlsplit(url.strip()).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        if not scheme:
            raise BlockedURL(f"refused URL {url!r}: it has no scheme; only http and https can be visited "
                             "(write it as https://...)")
        raise BlockedURL(f"refused {scheme}:// URL {url!r}: only http and https can be visited")
    return scheme


def check_url(url: str, allow_private: bool = False, resolver: Resolver = system_resolver,
              allow_hosts: Iterable[str] = ()) -> Target:
    """Check one URL and return where to connect; raise BlockedURL naming the reason.

    `allow_hosts` lists "host:port" pairs let through without the address check (a test's own server).
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise BlockedURL(f"malformed URL {url!r}: {exc}") from exc
    scheme = check_scheme(url)
    host = (parts.hostname or "").rstrip(".") if parts.hostname not in (None, ".") else ""
    if not host:
        raise BlockedURL(f"refused URL {url!r}: it has no host")
    if parts.username or parts.password:
        raise BlockedURL(f"refused URL {url!r}: credentials in URLs are not followed")
    port = port or (443 if scheme == "https" else 80)
    literal = parse_literal(host)
    addresses = [str(literal)] if literal is not None else list(resolver(host, port))
    if not addresses:
        raise ToolError(f"cannot resolve host {host!r}")
    if f"{host}:{port}" in set(allow_hosts):
        return Target(scheme, host, port, addresses[0])
    if not allow_private:
        for a in addresses:
            reason = why_blocked(ipaddress.ip_address(a.split("%", 1)[0]))
            if reason:
                where = f"{host} is" if literal is not None else f"{host} resolves to {a},"
                raise BlockedURL(f"refused {url!r}: {where} a {reason} address "
                                 "(allow_private=True or --allow-private visits internal hosts)")
    return Target(scheme, host, port, addresses[0])
