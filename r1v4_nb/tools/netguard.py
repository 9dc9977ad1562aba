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


@dataclass(frozen=True)
class SpecialRange:
    """One entry of the special-purpose table; `embeds` says where an IPv4 address sits inside an IPv6 one."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    label: str
    embeds: str | None = None  # "low32" (last 32 bits), "6to4" (bits 16..47), None: the whole range is refused


def _r(cidr: str, label: str, embeds: str | None = None) -> SpecialRange:
    return SpecialRange(ipaddress.ip_network(cidr), label, embeds)


# The IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and its updates), the multicast and
# reserved blocks, and the IPv6 forms that carry an IPv4 address. Every range is refused, including those the
# registry marks "globally reachable" (AS112, anycast relays): no page is served from them. A range that embeds
# an IPv4 address is refused when the embedded address is; `is_global` is a final check, never the only one.
SPECIAL_RANGES: tuple[SpecialRange, ...] = (
    _r("0.0.0.0/8", "'this network' (unspecified)"),
    _r("10.0.0.0/8", "private"),
    _r("100.64.0.0/10", "shared address space (carrier-grade NAT)"),
    _r("127.0.0.0/8", "loopback"),
    _r("169.254.0.0/16", "link-local (cloud metadata)"),
    _r("172.16.0.0/12", "private"),
    _r("192.0.0.0/24", "IETF protocol assignments (includes 192.0.0.192, a cloud metadata address)"),
    _r("192.0.2.0/24", "documentation (TEST-NET-1)"),
    _r("192.31.196.0/24", "AS112 service"),
    _r("192.52.193.0/24", "AMT relay anycast"),
    _r("192.88.99.0/24", "6to4 relay anycast (deprecated)"),
    _r("192.168.0.0/16", "private"),
    _r("192.175.48.0/24", "AS112 direct delegation"),
    _r("198.18.0.0/15", "benchmarking"),
    _r("198.51.100.0/24", "documentation (TEST-NET-2)"),
    _r("203.0.113.0/24", "documentation (TEST-NET-3)"),
    _r("224.0.0.0/4", "multicast"),
    _r("240.0.0.0/4", "reserved"),
    _r("255.255.255.255/32", "limited broadcast"),
    _r("::/128", "unspecified"),
    _r("::1/128", "loopback"),
    _r("::ffff:0:0/96", "IPv4-mapped", "low32"),
    _r("::ffff:0:0:0/96", "IPv4-translated", "low32"),
    _r("::/96", "IPv4-compatible (deprecated)"),
    _r("64:ff9b::/96", "NAT64 well-known prefix", "low32"),
    _r("64:ff9b:1::/48", "NAT64 local-use prefix"),
    _r("::/8", "reserved"),
    _r("100::/64", "discard-only"),
    _r("100:0:0:1::/64", "dummy prefix"),
    _r("2001::/32", "Teredo"),
    _r("2001::/23", "IETF protocol assignments"),
    _r("2001:db8::/32", "documentation"),
    _r("2002::/16", "6to4", "6to4"),
    _r("2620:4f:8000::/48", "AS112 direct delegation"),
    _r("3fff::/20", "documentation"),
    _r("5f00::/16", "segment routing (SRv6) SIDs"),
    _r("fc00::/7", "unique local (private)"),
    _r("fe80::/10", "link-local"),
    _r("fec0::/10", "site-local (deprecated)"),
    _r("ff00::/8", "multicast"),
)
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")


def _embedded(ip: ipaddress.IPv6Address, where: str) -> ipaddress.IPv4Address:
    value = int(ip)
    bits = (value >> 80) & 0xFFFFFFFF if where == "6to4" else value & 0xFFFFFFFF
    return ipaddress.IPv4Address(bits)


def why_blocked(ip: IPAddress) -> str | None:
    """The name of the special-purpose range `ip` lies in (by the table above), or None for a public address."""
    for entry in SPECIAL_RANGES:
        if ip.version != entry.network.version or ip not in entry.network:
            continue
        if entry.embeds is None:
            return entry.label
        assert isinstance(ip, ipaddress.IPv6Address)
        inner = _embedded(ip, entry.embeds)
        reason = why_blocked(inner)
        if reason:
            return f"{entry.label} form of {inner}, a {reason}"
        return None  # the embedded address is public: as public as connecting to it directly
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _GLOBAL_UNICAST:
        return "unallocated (outside global unicast 2000::/3)"
    if not ip.is_global:
        return "non-public"
    return None


def check_scheme(url: str) -> str:
    """The URL's scheme, lower-cased, when it is http(s); BlockedURL otherwise (needs no network)."""
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError as exc:  # e.g. `http://[::1/`, or a bracketed host NFKC turns into something else
        raise BlockedURL(f"malformed URL {url!r}: {exc}") from None
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
