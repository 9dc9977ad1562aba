import ipaddress

import pytest

from r1v4_nb.tools.netguard import (
    SPECIAL_RANGES,
    BlockedURL,
    check_url,
    parse_literal,
    system_resolver,
    why_blocked,
)


def public(host, port):
    return ["93.184.216.34"]


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/", "http://localhost/", "http://localhost./admin", "http://[::1]:8080/",
    "http://0x7f000001/", "http://2130706433/", "http://0177.0.0.1/", "http://127.1/",
    "http://10.1.2.3/", "http://192.168.0.1/", "http://172.16.5.4/", "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/", "http://224.0.0.1/", "http://[fe80::1]/",
])
def test_internal_addresses_are_refused(url):
    with pytest.raises(BlockedURL, match="address"):
        check_url(url)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://example.com/", "ftp://example.com/x",
                                 "javascript:alert(1)", "example.com/no-scheme"])
def test_other_schemes_are_refused(url):
    with pytest.raises(BlockedURL, match="only http and https"):
        check_url(url, allow_private=True)


def test_a_dns_name_resolving_to_loopback_is_refused():
    def rebinding(host, port):
        return ["93.184.216.34", "127.0.0.1"] if host == "internal.example" else ["93.184.216.34"]

    with pytest.raises(BlockedURL, match="internal.example resolves to 127.0.0.1, a loopback"):
        check_url("https://internal.example/", resolver=rebinding)
    assert check_url("https://news.example/", resolver=rebinding).address == "93.184.216.34"
    # the real resolver: 'localhost' (with and without the trailing dot) resolves to loopback
    assert any(a.startswith(("127.", "::1")) for a in system_resolver("localhost", 80))


def test_public_and_allowed_targets_pass():
    t = check_url("https://Example.COM:8443/path?q=1", resolver=public)
    assert (t.scheme, t.host, t.port, t.address) == ("https", "example.com", 8443, "93.184.216.34")
    assert check_url("http://127.0.0.1:9/", allow_private=True).address == "127.0.0.1"
    assert check_url("http://127.0.0.1:5555/", allow_hosts=["127.0.0.1:5555"]).port == 5555
    with pytest.raises(BlockedURL):
        check_url("http://127.0.0.1:5556/", allow_hosts=["127.0.0.1:5555"])


def test_legacy_ip_spellings_parse_to_the_same_address():
    assert {str(parse_literal(h)) for h in ("2130706433", "0x7f000001", "0177.0.0.1", "127.1")} == {"127.0.0.1"}
    assert parse_literal("example.com") is None


def test_credentials_and_missing_hosts_are_refused():
    with pytest.raises(BlockedURL, match="credentials"):
        check_url("http://user:pw@example.com/", resolver=public)
    with pytest.raises(BlockedURL, match="no host"):
        check_url("http:///path")


def _samples(entry):
    """First, middle and last address of a range (the whole range is refused unless it embeds IPv4)."""
    net = entry.network
    return [net[0], net[net.num_addresses // 2], net[-1]]


@pytest.mark.parametrize("entry", [e for e in SPECIAL_RANGES if e.embeds is None], ids=lambda e: str(e.network))
def test_every_special_purpose_range_is_refused(entry):
    for ip in _samples(entry):
        assert why_blocked(ip), ip
        host = f"[{ip}]" if ip.version == 6 else str(ip)
        with pytest.raises(BlockedURL, match="address"):
            check_url(f"http://{host}/latest/meta-data/")


def _embed(entry, v4: str) -> ipaddress.IPv6Address:
    inner = int(ipaddress.IPv4Address(v4))
    base = int(entry.network.network_address)
    return ipaddress.IPv6Address(base | (inner << 80) if entry.embeds == "6to4" else base | inner)


@pytest.mark.parametrize("entry", [e for e in SPECIAL_RANGES if e.embeds], ids=lambda e: str(e.network))
def test_ipv6_forms_of_private_ipv4_are_refused_and_of_public_ones_allowed(entry):
    for v4 in ("127.0.0.1", "10.0.0.1", "169.254.169.254", "192.0.0.192", "100.64.0.1"):
        ip = _embed(entry, v4)
        assert v4 in (why_blocked(ip) or ""), ip
        with pytest.raises(BlockedURL, match="address"):
            check_url(f"http://[{ip}]/")
    assert why_blocked(_embed(entry, "93.184.216.34")) is None


@pytest.mark.parametrize("address", [
    "192.0.0.192", "192.0.0.170", "100.100.100.200", "198.18.0.1", "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "64:ff9b:1::a00:1", "::a00:1", "100::1", "fec0::1", "5f00::1", "3fff::1", "2001:db8::1",
])
def test_addresses_the_standard_library_calls_global_or_misses(address):
    assert why_blocked(ipaddress.ip_address(address))


def test_public_addresses_pass_the_table():
    for address in ("93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:82a::200e"):
        assert why_blocked(ipaddress.ip_address(address)) is None, address


@pytest.mark.parametrize("url", ["http://[::\u2460\u2461\u2466\u3002\u24ea\u3002\u24ea\u3002\u2460]:80/",
                                 "http://[::1/", "http://host:99999/", "http://[zz]/"])
def test_malformed_urls_are_refusals(url):
    with pytest.raises(BlockedURL, match="malformed"):
        check_url(url)
