import pytest

from r1v4_nb.tools.netguard import BlockedURL, check_url, parse_literal, system_resolver


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
