"""tools/backends/*: the offline corpus, index file building, the mirror, HTTP retries, page fetching and
the online services, each on its own (real SQLite files, a real loopback HTTP server)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from r1v4_nb.errors import UsageError
from r1v4_nb.tools.backends import online
from r1v4_nb.tools.backends.corpus import Corpus, Page, query_terms, terms
from r1v4_nb.tools.backends.fetch import HttpFetcher, decode
from r1v4_nb.tools.backends.http import BackendUnavailable, api_key, request_json
from r1v4_nb.tools.backends.mirror import Mirror, normalise_url
from r1v4_nb.tools.backends.sqlitefile import building
from r1v4_nb.tools.base import ToolError
from tests.support.search import LoopbackServer, reply

PAGES = [
    Page("https://a.example/astrolabe", "The Brass Astrolabe", "A brass astrolabe made in Harbour City in 1623."),
    Page("https://a.example/harbour", "Harbour City", "Harbour City is a port; its lighthouse was founded in 1483."),
    Page("https://a.example/ferry", "Ferries", "Ferries leave the port of Harbour City every hour."),
    Page("https://a.example/astrolabe", "Duplicate", "A second page at the same URL is dropped."),
]


# -- corpus ----------------------------------------------------------------------------------------------

def test_terms_drop_stop_words_and_queries_cannot_inject_fts_syntax():
    assert terms("When was THE lighthouse founded?") == ["lighthouse", "founded"]
    assert query_terms('lighthouse" OR body:* NEAR(') == ['"lighthouse"', '"body"', '"near"']
    assert query_terms("the") == ['"the"']  # only stop words: keep them rather than search for nothing


def test_a_built_corpus_ranks_all_terms_first_and_keeps_the_first_of_a_url(tmp_path):
    corpus = Corpus.build(PAGES, tmp_path / "c.sqlite")
    assert len(corpus) == 3
    hits = corpus.search("harbour city lighthouse", k=2)
    assert hits[0]["url"] == "https://a.example/harbour" and "lighthouse" in hits[0]["snippet"]
    assert [h["title"] for h in corpus.search("astrolabe")] == ["The Brass Astrolabe"]
    assert corpus.search('"; DROP TABLE pages; --') == [] and corpus.search("") == []
    assert Corpus.build(PAGES, tmp_path / "d.sqlite").id == corpus.id  # the id is the content's digest
    corpus.close()


def test_opening_what_is_not_a_corpus_is_a_user_error(tmp_path):
    with pytest.raises(UsageError, match="no corpus at"):
        Corpus(tmp_path / "missing.sqlite")
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(UsageError, match="not an r1v4-nb corpus"):
        Corpus(other)


# -- sqlitefile ------------------------------------------------------------------------------------------

def test_a_build_that_fails_leaves_the_old_file_and_no_partial_one(tmp_path):
    path = tmp_path / "i.sqlite"
    with building(path, "CREATE TABLE t (x);") as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError), building(path, "CREATE TABLE t (x);") as conn:
        conn.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("the build broke")
    assert [r for (r,) in sqlite3.connect(path).execute("SELECT x FROM t")] == [1]
    assert not path.with_name("i.sqlite.building").exists()


# -- mirror ----------------------------------------------------------------------------------------------

def test_urls_normalise_to_one_spelling():
    assert normalise_url("HTTPS://A.Example/Page/#top") == "https://a.example/Page"
    assert normalise_url("https://a.example") == "https://a.example/"
    assert normalise_url("https://a.example/p?q=1") == "https://a.example/p?q=1"
    with pytest.raises(ToolError, match="malformed URL"):
        normalise_url("http://[::1/")


def test_the_mirror_serves_its_files_and_nothing_outside_them(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.html").write_text("<p>page a</p>")
    (tmp_path / "secret.txt").write_text("not yours")
    (site / "map.json").write_text(json.dumps({"https://a.example/a/": "a.html",
                                               "https://a.example/up": "../secret.txt"}))
    mirror = Mirror(site / "map.json")
    page = mirror.fetch("https://A.example/a#x")
    assert page.body == b"<p>page a</p>" and page.content_type == "text/html" and page.status == 200
    with pytest.raises(ToolError, match="not in the offline mirror"):
        mirror.fetch("https://a.example/b")
    with pytest.raises(ToolError, match="missing"):
        mirror.fetch("https://a.example/up")  # a map entry pointing out of the mirror is refused
    with pytest.raises(ToolError, match="not a file of the offline mirror"):
        mirror.fetch((tmp_path / "secret.txt").as_uri())


@pytest.mark.parametrize("content, says", [("{not json", "not valid JSON"), ('["a"]', "not a JSON object")])
def test_a_bad_mirror_map_is_a_user_error(tmp_path, content, says):
    (tmp_path / "map.json").write_text(content)
    with pytest.raises(UsageError, match=says):
        Mirror(tmp_path / "map.json")


# -- http ------------------------------------------------------------------------------------------------

def _flaky(codes: list[int], body: dict) -> object:
    calls = iter(codes)

    def route(h):
        code = next(calls, 200)
        reply(code, json.dumps(body) if code == 200 else "busy", "application/json",
              {"Retry-After": "7"} if code == 429 else None)(h)

    return route


def test_retries_on_rate_limits_and_outages_then_gives_the_json():
    import httpx

    waits: list[float] = []
    with LoopbackServer({"/api": _flaky([429, 503], {"ok": True})}) as srv, httpx.Client() as client:
        got = request_json(client, "GET", srv.base + "/api", backend="svc", retries=3, backoff=0.5,
                           sleep=waits.append)
    assert got == {"ok": True} and waits == [7.0, 1.0]  # Retry-After honoured, then exponential backoff


def test_giving_up_and_refusals_are_one_line_observations():
    import httpx

    routes = {"/down": _flaky([503, 503, 503], {}), "/key": _flaky([401], {}), "/html": reply(200, "<html>")}
    with LoopbackServer(routes) as srv, httpx.Client() as client:
        with pytest.raises(BackendUnavailable, match="svc is down \\(HTTP 503\\) after 3 tries"):
            request_json(client, "GET", srv.base + "/down", backend="svc", sleep=lambda s: None)
        with pytest.raises(BackendUnavailable, match="check the API key"):
            request_json(client, "GET", srv.base + "/key", backend="svc", sleep=lambda s: None)
        with pytest.raises(BackendUnavailable, match="not JSON"):
            request_json(client, "GET", srv.base + "/html", backend="svc", sleep=lambda s: None)


def test_a_missing_api_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("R1V4_TEST_KEY", raising=False)
    with pytest.raises(UsageError, match="set the environment variable R1V4_TEST_KEY"):
        api_key("svc", "R1V4_TEST_KEY")
    assert api_key("svc", "R1V4_TEST_KEY", required=False) is None
    monkeypatch.setenv("R1V4_TEST_KEY", " k ")
    assert api_key("svc", "R1V4_TEST_KEY") == "k"


# -- fetch -----------------------------------------------------------------------------------------------

def test_decode_uses_the_declared_then_the_meta_charset_then_utf8():
    assert decode("café".encode("latin-1"), "latin-1", "text/plain") == ("café", None)
    meta = b'<meta charset="windows-1252"><p>caf\xe9</p>'
    assert decode(meta, None, "text/html")[0].endswith("café</p>")
    text, note = decode(b"ok \xff\xfe", None, "text/plain")
    assert text.startswith("ok ") and "replaced" in note


def test_fetching_follows_redirects_caps_the_size_and_refuses_private_addresses():
    def redirect(h):
        h.send_response(302)
        h.send_header("Location", "/big")
        h.send_header("Content-Length", "0")
        h.end_headers()

    with LoopbackServer({"/start": redirect, "/big": reply(200, "x" * 5000, "text/plain")}) as srv:
        fetcher = HttpFetcher(allow_private=True, max_bytes=1000, sleep=lambda s: None)
        got = fetcher.fetch(srv.base + "/start")
        assert got.url == srv.base + "/big" and got.redirects == [srv.base + "/big"]
        assert got.truncated and len(got.body) == 1000 and got.content_type == "text/plain"
        fetcher.close()
        guarded = HttpFetcher(sleep=lambda s: None)
        with pytest.raises(ToolError):
            guarded.fetch(srv.base + "/big")  # loopback is private: refused before any request
        guarded.close()
        assert srv.seen == ["/start", "/big"]


# -- online ----------------------------------------------------------------------------------------------

def test_serper_and_serpapi_read_their_replies_into_hits(monkeypatch):
    monkeypatch.setenv("SERPER_API_KEY", "sk")
    monkeypatch.setenv("SERPAPI_API_KEY", "pk")
    serper_reply = {"organic": [{"title": "Harbour City", "link": "https://a.example/h", "snippet": "a  port"},
                                {"title": "no link"}, {"title": "Ferries", "link": "https://a.example/f"}]}
    seen_keys: list[str | None] = []

    def serper(h):
        seen_keys.append(h.headers.get("X-API-KEY"))
        json.loads(h.rfile.read(int(h.headers["Content-Length"])))
        reply(200, json.dumps(serper_reply), "application/json")(h)

    serpapi_reply = {"organic_results": [{"title": "Astrolabe", "link": "https://a.example/a", "snippet": "brass"}]}
    with LoopbackServer({"/search": serper, "/search.json": reply(200, json.dumps(serpapi_reply),
                                                                  "application/json")}) as srv:
        s = online.Serper(base_url=srv.base, sleep=lambda x: None)
        assert s.text("harbour", 5) == [
            {"title": "Harbour City", "url": "https://a.example/h", "snippet": "a port"},
            {"title": "Ferries", "url": "https://a.example/f", "snippet": ""}]
        assert seen_keys == ["sk"]
        s.close()
        p = online.SerpAPI(base_url=srv.base, sleep=lambda x: None)
        assert p.text("astrolabe", 5) == [{"title": "Astrolabe", "url": "https://a.example/a", "snippet": "brass"}]
        p.close()
        assert any("api_key=pk" in path for path in srv.seen)


def test_a_service_without_a_key_fails_at_its_first_call_when_the_key_was_optional(monkeypatch):
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    s = online.Serper(require_key=False)
    with pytest.raises(BackendUnavailable, match="set SERPER_API_KEY"):
        s.text("q", 3)
    s.close()


# -- image index -----------------------------------------------------------------------------------------

def test_the_image_index_finds_a_picture_again_and_an_unrelated_one_not(tmp_path, small_world):
    import random

    from PIL import Image as PILImage
    from PIL import ImageDraw

    from r1v4_nb.tools.backends.image_index import ImageIndex

    entries = []
    for n in range(3):
        rnd = random.Random(n)
        im = PILImage.new("RGB", (320, 240), (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
        draw = ImageDraw.Draw(im)
        for _ in range(40):
            x, y = rnd.randrange(300), rnd.randrange(220)
            draw.rectangle((x, y, x + rnd.randrange(8, 40), y + rnd.randrange(8, 40)),
                           fill=(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
        im.save(tmp_path / f"p{n}.png")
        entries.append((tmp_path / f"p{n}.png", f"https://a.example/p{n}", f"Picture {n}"))
    index = ImageIndex.build(entries, tmp_path / "images.sqlite")
    assert len(index) == 3 and index.thumbnail(0)
    again = index.search(PILImage.open(tmp_path / "p1.png").resize((640, 480)), k=3)
    assert again and again[0]["url"] == "https://a.example/p1" and again[0]["similarity"] >= 0.5
    world_picture = next(small_world.root.rglob("*.png"))
    assert index.search(PILImage.open(world_picture), k=3) == []  # a picture it never saw matches nothing
