import time

import pytest

from r1v4_nb.tools.base import ToolContext
from r1v4_nb.tools.cache import ToolCache
from r1v4_nb.tools.htmltext import extract
from r1v4_nb.tools.passages import GAP, select
from r1v4_nb.tools.web import WebVisitTool
from tests.support.search import LoopbackServer, reply

ARTICLE = """<!doctype html><html><head><title>Harbour Lights</title><script>var x = 1;</script>
<style>body{}</style></head><body>
<nav class="menu"><a href="/home">Home</a> <a href="/about">About us</a></nav>
<div id="cookie-banner">We use cookies. Accept all?</div>
<header><h2>Site header</h2></header>
<main><h1>Harbour Lights of Velmora</h1>
<p>The lighthouse was <b>lit</b> in 1821 by the guild of <a href="/guild#top">lamp makers</a>.</p>
<ul><li>Height: 31 m</li><li>Range: 18 nautical miles</li></ul>
<p>See <a href="https://other.example/page">another page</a>.</p></main>
<aside class="sidebar">Related stories: celebrity gossip</aside>
<footer>Copyright 2024 All rights reserved</footer></body></html>"""


def huge_page() -> str:
    filler = "".join(f"<p>Paragraph {i} talks about weather, tides and the price of fish in general.</p>"
                     for i in range(4000))
    return (f"<html><head><title>Big</title></head><body><main><h1>Big page</h1>{filler[: len(filler) // 2]}"
            "<h2>Lantern</h2><p>The zephyr lantern was forged from cobalt glass in 1788.</p>"
            f"{filler[len(filler) // 2:]}</main></body></html>")


def raw_redirect(location: str):
    """A redirect whose Location header is sent as UTF-8 bytes (http.server would refuse to encode it)."""
    def route(h):
        h.wfile.write(b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\nLocation: " + location.encode() + b"\r\n\r\n")
        h.close_connection = True
    return route


def slow(h):
    time.sleep(2.0)
    reply(200, "<p>late</p>")(h)


@pytest.fixture(scope="module")
def server():
    routes = {
        "/article": reply(200, ARTICLE),
        "/huge": reply(200, huge_page()),
        "/slow": slow,
        "/r1": reply(302, "", headers={"Location": "/r2"}),
        "/r2": reply(301, "", headers={"Location": "/r3"}),
        "/r3": reply(307, "", headers={"Location": "/article"}),
        "/loop": reply(302, "", headers={"Location": "/loop"}),
        "/to-private": reply(302, "", headers={"Location": "http://169.254.169.254/latest/meta-data/"}),
        "/to-ten": reply(302, "", headers={"Location": "http://10.0.0.7/admin"}),
        "/to-oracle": reply(302, "", headers={"Location": "http://192.0.0.192/latest/meta-data/"}),
        "/to-schemeless": reply(302, "", headers={"Location": "http:127.0.0.1/"}),
        "/to-broken": reply(302, "", headers={"Location": "http://[::1/"}),
        "/to-unicode": raw_redirect("http://[::\u2460\u2461\u2466\u3002\u24ea\u3002\u24ea\u3002\u2460]:80/"),
        "/rejected-markup": reply(200, "<html><title>Odd</title><![><p>The keeper's log survives.</p></html>"),
        "/binary": reply(200, bytes(range(256)) * 100, "application/octet-stream"),
        "/pdf": reply(200, b"%PDF-1.4 binary", "application/pdf"),
        "/latin1": reply(200, "<html><title>Caf\u00e9</title><p>Cr\u00e8me br\u00fbl\u00e9e</p></html>".encode("latin-1"),
                         "text/html; charset=utf-8"),
        "/bogus-charset": reply(200, "<p>plain \u00e9t\u00e9</p>".encode(), "text/html; charset=x-no-such-codec"),
        "/meta-charset": reply(200, '<html><head><meta charset="windows-1252"></head><p>na\u00efve</p></html>'
                               .encode("cp1252"), "text/html"),
        "/plain": reply(200, "just text, line one\nline two", "text/plain; charset=utf-8"),
        "/busy": reply(429, "slow down", "text/plain", {"Retry-After": "0"}),
        "/down": reply(503, "<p>maintenance</p>", "text/html"),
    }
    with LoopbackServer(routes) as s:
        yield s


def tool(server, tmp_path, **kw) -> WebVisitTool:
    settings = dict(backend="http", allow_hosts=[f"127.0.0.1:{server.port}"], cache=ToolCache(None, "off"),
                    timeout=5.0, retries=1)
    settings.update(kw)
    return WebVisitTool(**settings)


def visit(t, tmp_path, *urls, goal=None, question=""):
    args = {"urls": list(urls)}
    if goal:
        args["goal"] = goal
    return t.run(args, ToolContext("t", tmp_path, question=question))


def test_boilerplate_is_dropped_and_links_kept_as_references(server, tmp_path):
    obs = visit(tool(server, tmp_path), tmp_path, server.base + "/article")
    page = obs.data["pages"][0]
    assert obs.error is None and page["title"] == "Harbour Lights"
    assert "# Harbour Lights of Velmora" in page["text"] and "lit in 1821" in page["text"]
    assert "- Height: 31 m" in page["text"] and "lamp makers [1]" in page["text"]
    for junk in ("cookies", "About us", "Copyright", "gossip", "var x", "Site header"):
        assert junk not in page["text"]
    assert [link["url"] for link in page["links"]] == [server.base + "/guild", "https://other.example/page"]
    assert f"[1] {server.base}/guild" in obs.text


def test_huge_page_is_capped_and_the_relevant_passage_chosen(server, tmp_path):
    t = tool(server, tmp_path, max_bytes=200_000, budget=1500)
    obs = visit(t, tmp_path, server.base + "/huge", goal="What is the zephyr lantern made of?")
    text = obs.data["pages"][0]["text"]
    assert "cobalt glass" in text and GAP in text and len(text) <= 1600
    assert {"budget", "size"} <= set(obs.limits_hit) and "larger than 200000 bytes; cut" in obs.text
    head = visit(t, tmp_path, server.base + "/huge", goal="unrelated words")
    assert "cobalt" not in head.data["pages"][0]["text"]


def test_slow_page_times_out_as_an_observation(server, tmp_path):
    start = time.monotonic()
    obs = visit(tool(server, tmp_path, timeout=0.5), tmp_path, server.base + "/slow")
    assert obs.error and "timed out" in obs.error and time.monotonic() - start < 1.9


def test_redirect_chain_is_followed_and_limited(server, tmp_path):
    obs = visit(tool(server, tmp_path), tmp_path, server.base + "/r1")
    assert obs.data["pages"][0]["url"] == server.base + "/article" and "redirected 3 time(s)" in obs.text
    obs = visit(tool(server, tmp_path, max_redirects=2), tmp_path, server.base + "/r1")
    assert "too many redirects" in obs.error
    assert "too many redirects" in visit(tool(server, tmp_path), tmp_path, server.base + "/loop").error


@pytest.mark.parametrize("path,address", [("/to-private", "169.254.169.254"), ("/to-ten", "10.0.0.7")])
def test_redirect_to_a_private_address_is_refused(server, tmp_path, path, address):
    before = len(server.seen)
    obs = visit(tool(server, tmp_path), tmp_path, server.base + path)
    assert obs.error and f"{address} is a" in obs.error and "refused" in obs.error
    assert len(server.seen) == before + 1  # only the first hop reached a server


def test_loopback_server_is_refused_unless_allowed(server, tmp_path):
    obs = visit(tool(server, tmp_path, allow_hosts=()), tmp_path, server.base + "/article")
    assert "loopback" in obs.error
    assert visit(tool(server, tmp_path, allow_hosts=(), allow_private=True), tmp_path,
                 server.base + "/article").error is None
    assert "only http and https" in visit(tool(server, tmp_path), tmp_path, "file:///etc/passwd").error
    obs = visit(tool(server, tmp_path), tmp_path, "not a url")
    assert obs.error == "refused URL 'not a url': it has no scheme; only http and https can be visited " \
                        "(write it as https://...)"


def test_binary_content_is_named_not_dumped(server, tmp_path):
    obs = visit(tool(server, tmp_path), tmp_path, server.base + "/binary", server.base + "/pdf")
    assert "application/octet-stream" in obs.text and "application/pdf" in obs.text
    assert "binary content" in obs.error and "\x00" not in obs.text


def test_bad_and_declared_encodings(server, tmp_path):
    t = tool(server, tmp_path)
    latin = visit(t, tmp_path, server.base + "/latin1")
    assert "\ufffd" in latin.text and "not valid utf-8" in latin.text
    assert "plain \u00e9t\u00e9" in visit(t, tmp_path, server.base + "/bogus-charset").text
    assert "na\u00efve" in visit(t, tmp_path, server.base + "/meta-charset").text
    assert "line two" in visit(t, tmp_path, server.base + "/plain").text


def test_rate_limited_and_missing_pages_are_one_line_observations(server, tmp_path):
    obs = visit(tool(server, tmp_path, retries=2), tmp_path, server.base + "/busy", server.base + "/nope")
    assert "HTTP 429" in obs.text and "HTTP 404" in obs.text
    assert server.seen.count("/busy") == 2  # retried once


def test_a_server_that_is_down_is_reported_and_not_cached(server, tmp_path):
    cache = ToolCache(tmp_path / "c.sqlite")
    for _ in range(2):
        obs = visit(tool(server, tmp_path, cache=cache), tmp_path, server.base + "/down")
        assert obs.error == f"{server.base}/down is down (HTTP 503); try later"
    assert server.seen.count("/down") == 2 and len(cache) == 0  # asked again, not answered from the cache


def test_offline_mirror_serves_the_world(tmp_path, small_world):
    world = small_world
    entity = world.load_entities()[0]
    t = WebVisitTool(mirror=world.mirror, cache=ToolCache(tmp_path / "c.sqlite"))
    obs = visit(t, tmp_path, entity["url"] + "#section", entity["url"].replace("https", "http") + "/")
    assert obs.error is None and str(entity["facts"]["founded"]) in obs.text
    assert "Atlas of Elsewhere is a generated world" not in obs.text  # the footer is boilerplate
    img = visit(t, tmp_path, entity["url"].replace("/wiki/", "/media/") + ".png")
    assert img.images and img.images[0].provenance.kind == "visit"
    missing = visit(t, tmp_path, "https://atlas.r1v4.test/wiki/nowhere")
    assert "not in the offline mirror" in missing.error
    capped = WebVisitTool(mirror=world.mirror, cache=ToolCache(None, "off"), max_urls=1)
    obs = visit(capped, tmp_path, entity["url"], entity["url"] + "?again")
    assert len(obs.data["pages"]) == 1 and obs.text.endswith("1 more were left out (give at most 1 per call).")


def test_extract_and_select_helpers():
    doc = extract("<html><body><p>a <a href='javascript:x()'>b</a></p><table><tr><td>k</td><td>v</td></tr></table>"
                  "</body></html>", "https://x.example/")
    assert doc.links == [] and "a b" in doc.text and "| k | v" in doc.text
    assert select("short", "q", 100) == ("short", False)


def test_redirects_to_special_or_malformed_urls_are_refusals(server, tmp_path):
    t = tool(server, tmp_path)
    for route, why in (("/to-oracle", "IETF protocol assignments"), ("/to-broken", "malformed"),
                       ("/to-unicode", "malformed"), ("/to-schemeless", "")):
        obs = visit(t, tmp_path, server.base + route)
        page = obs.data["pages"][0]
        assert obs.error and why in obs.error and page["text"] == "", (route, obs.text)


def test_unicode_and_malformed_urls_are_refused_not_raised(tmp_path):
    t = WebVisitTool(backend="http", cache=ToolCache(None, "off"))
    for url in ("http://[::\u2460\u2461\u2466\u3002\u24ea\u3002\u24ea\u3002\u2460]:80/", "http://[::1/",
                "http:127.0.0.1/", "http://192.0.0.192/latest/", "http://[64:ff9b::a9fe:a9fe]/"):
        obs = visit(t, tmp_path, url)
        assert obs.error and obs.data["pages"][0]["text"] == "", url


def test_markup_the_strict_parser_rejects_keeps_its_text(server, tmp_path):
    doc = extract("<![><p>The keeper's log survives.</p><p>Second line</p>", "http://x.example/")
    assert "The keeper's log survives." in doc.text and "Second line" in doc.text
    obs = visit(tool(server, tmp_path), tmp_path, server.base + "/rejected-markup")
    assert obs.error is None and "The keeper's log survives." in obs.text
