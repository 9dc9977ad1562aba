import json

import pytest

from r1v4_nb.errors import UsageError
from r1v4_nb.tools.backends.corpus import Corpus, Page, fts_query, pages_from_path
from r1v4_nb.tools.base import ToolContext
from r1v4_nb.tools.cache import ToolCache
from r1v4_nb.tools.search import TextSearchTool
from tests.support.search import LoopbackServer, reply

PAGES = [
    Page("https://a.example/lighthouse", "Velmora lighthouse", "The lighthouse of Velmora was lit in 1821."),
    Page("https://a.example/bell", "The Orrin Bell", "A bronze bell cast by Tamsin Vell for the harbour."),
    Page("https://a.example/fish", "Fish market", "Fish, tides and weather. Nothing about bells."),
]


def ctx(tmp_path):
    return ToolContext("t", tmp_path)


def test_corpus_ranks_by_bm25_and_survives_operator_syntax(tmp_path):
    corpus = Corpus.build(PAGES, tmp_path / "c.sqlite")
    hits = corpus.search("bronze bell", k=3)
    assert hits[0]["url"] == "https://a.example/bell" and len(corpus) == 3
    assert corpus.search('lighthouse" OR NEAR( * AND', k=1)[0]["url"].endswith("/lighthouse")
    assert corpus.search("the of and", k=3) == [] or all("url" in h for h in corpus.search("the of", k=3))
    assert fts_query('a "b" c') == '"b" OR "c"'
    assert Corpus.build(PAGES[::-1], tmp_path / "d.sqlite").id != corpus.id


def test_corpus_from_a_folder_and_a_jsonl(tmp_path):
    src = tmp_path / "site"
    (src / "sub").mkdir(parents=True)
    (src / "a.html").write_text("<html><head><title>Alpha</title></head><body><nav>menu</nav>"
                                "<p>The quartz tower.</p></body></html>")
    (src / "sub" / "b.md").write_text("# Beta notes\nThe granite bridge.")
    (src / "c.txt").write_text("Gamma\nThe basalt well.")
    (src / "skip.bin").write_bytes(b"\x00")
    corpus = Corpus.build(pages_from_path(src, "https://mirror.example"), tmp_path / "c.sqlite")
    assert len(corpus) == 3
    assert corpus.search("granite")[0] == {"title": "Beta notes", "url": "https://mirror.example/sub/b.md",
                                           "snippet": "# Beta notes The granite bridge."}
    assert corpus.search("menu") == []  # boilerplate is not indexed
    jl = tmp_path / "pages.jsonl"
    jl.write_text(json.dumps({"url": "u1", "title": "T", "text": "obsidian"}) + "\n\n")
    assert Corpus.build(pages_from_path(jl), tmp_path / "j.sqlite").search("obsidian")[0]["url"] == "u1"
    jl.write_text("{not json\n")
    with pytest.raises(UsageError, match="pages.jsonl:1"):
        list(pages_from_path(jl))
    with pytest.raises(UsageError, match="no corpus"):
        Corpus(tmp_path / "absent.sqlite")


def test_tool_queries_dedup_and_cache(tmp_path):
    Corpus.build(PAGES, tmp_path / "c.sqlite")
    cache = ToolCache(tmp_path / "cache.sqlite")
    tool = TextSearchTool(corpus=tmp_path / "c.sqlite", cache=cache, k=2)
    obs = tool.run({"queries": ["bell harbour", "Bell  HARBOUR", "bronze bell"]}, ctx(tmp_path))
    assert [q["query"] for q in obs.data["queries"]] == ["bell harbour", "Bell  HARBOUR", "bronze bell"]
    assert obs.data["queries"][0]["results"][0]["url"] == "https://a.example/bell"
    assert "same page as [1.1]" in obs.text and obs.text.count("https://a.example/bell") == 1
    assert cache.hits >= 1  # the second spelling of the first query came from the cache
    assert tool.run({"queries": "lighthouse"}, ctx(tmp_path)).data["queries"][0]["results"]
    assert "No results." in tool.run({"queries": ["zzzz"]}, ctx(tmp_path)).text
    many = tool.run({"queries": [f"q{i}" for i in range(8)]}, ctx(tmp_path))  # max_queries is 5
    assert len(many.data["queries"]) == 5
    assert many.text.endswith("Note: only the first 5 queries were used; 3 more were left out (give at most 5 "
                              "per call).")
    from r1v4_nb.tools.base import ToolError
    with pytest.raises(ToolError, match="non-empty list"):
        tool.run({"queries": []}, ctx(tmp_path))


SERPER_SEARCH = {"organic": [{"title": "Velmora - Wiki", "link": "https://w.example/velmora",
                              "snippet": "Velmora is a  town."},
                             {"title": "Dup", "link": "https://www.w.example/velmora/"},
                             {"title": "no link"}]}
SERPAPI_SEARCH = {"organic_results": [{"title": "Orrin Bell", "link": "https://b.example/orrin", "snippet": "A bell"}]}


@pytest.fixture()
def api(monkeypatch):
    monkeypatch.setenv("SERPER_API_KEY", "test-serper")
    monkeypatch.setenv("SERPAPI_API_KEY", "test-serpapi")
    state = {"flaky": 0}

    def flaky(h):
        state["flaky"] += 1
        if state["flaky"] < 3:
            reply(429, "slow down", "text/plain", {"Retry-After": "0"})(h)
        else:
            reply(200, json.dumps(SERPER_SEARCH), "application/json")(h)

    def serpapi(h):
        assert "api_key=test-serpapi" in h.path and "engine=google" in h.path
        reply(200, json.dumps(SERPAPI_SEARCH), "application/json")(h)

    def serper(h):
        body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
        assert h.headers["X-API-KEY"] == "test-serper" and body["q"]
        reply(200, json.dumps(SERPER_SEARCH), "application/json")(h)

    routes = {"/ok/search": serper, "/flaky/search": flaky, "/search.json": serpapi,
              "/down/search": reply(503, "down", "text/plain"), "/nokey/search": reply(401, "bad key", "text/plain"),
              "/html/search": reply(200, "<html>captcha</html>")}
    with LoopbackServer(routes) as s:
        yield s


def online(backend, base_url, tmp_path, **kw):
    return TextSearchTool(backend, base_url=base_url, cache=ToolCache(tmp_path / "c.sqlite"), backoff=0.0, **kw)


def test_serper_and_serpapi_replies_become_results(api, tmp_path):
    obs = online("serper", api.base + "/ok", tmp_path).run({"queries": ["velmora"]}, ctx(tmp_path))
    results = obs.data["queries"][0]["results"]
    assert results[0] == {"title": "Velmora - Wiki", "url": "https://w.example/velmora", "snippet": "Velmora is a town."}
    assert len(results) == 2 and "same page as [1.1]" in obs.text
    obs = online("serpapi", api.base, tmp_path).run({"queries": ["orrin bell"]}, ctx(tmp_path))
    assert obs.data["queries"][0]["results"][0]["url"] == "https://b.example/orrin"


def test_rate_limits_are_retried_and_outages_are_one_line(api, tmp_path):
    obs = online("serper", api.base + "/flaky", tmp_path, retries=3).run({"queries": ["q"]}, ctx(tmp_path))
    assert obs.error is None and obs.data["queries"][0]["results"]
    down = online("serper", api.base + "/down", tmp_path, retries=2).run({"queries": ["q2"]}, ctx(tmp_path))
    assert down.error == "serper is down (HTTP 503) after 2 tries; try again later or use another backend"
    assert "\n" not in down.error and "Error: serper is down" in down.text
    assert "check the API key" in online("serper", api.base + "/nokey", tmp_path).run(
        {"queries": ["q3"]}, ctx(tmp_path)).error
    assert "not JSON" in online("serper", api.base + "/html", tmp_path).run({"queries": ["q4"]}, ctx(tmp_path)).error
    unreachable = online("serper", "http://127.0.0.1:9", tmp_path, retries=1).run({"queries": ["q5"]}, ctx(tmp_path))
    assert "unreachable" in unreachable.error
    # successes are cached, failures are not (the query is asked again once the service is back)
    check = ToolCache(tmp_path / "c.sqlite")
    assert check.get("text_search", "serper", {"query": "q", "k": 5}) is not None
    assert check.get("text_search", "serper", {"query": "q2", "k": 5}) is None


def test_missing_key_is_a_clear_usage_error(monkeypatch, tmp_path):
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    with pytest.raises(UsageError, match="set the environment variable SERPER_API_KEY"):
        TextSearchTool("serper", cache=ToolCache(tmp_path / "c.sqlite"))
    with pytest.raises(UsageError, match="MY_KEY"):
        TextSearchTool("serpapi", api_key_env="MY_KEY", cache=ToolCache(tmp_path / "c.sqlite"))
    # replaying from a read-only cache needs no key
    TextSearchTool("serper", cache=ToolCache(tmp_path / "c.sqlite", "read-only"))
    with pytest.raises(UsageError, match="unknown text_search backend"):
        TextSearchTool("bing")


def test_k_below_one_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="k must be at least 1"):
        TextSearchTool(k=0, cache=ToolCache(tmp_path / "c.sqlite"))


class RecordedDDGS:
    """Stands in for ddgs.DDGS (which talks to many engines itself): replays recorded rows or raises."""

    def __init__(self, outcomes):
        self.outcomes = list(outcomes)

    def text(self, query, **kw):
        out = self.outcomes.pop(0)
        if isinstance(out, Exception):
            raise out
        return out


def test_ddgs_rows_rate_limits_and_empty_results(tmp_path):
    from ddgs.exceptions import DDGSException, RatelimitException

    rows = [{"title": "Velmora", "href": "https://d.example/v", "body": "A town"}]
    tool = TextSearchTool("ddgs", client=RecordedDDGS([RatelimitException("202"), rows]), backoff=0.0,
                          cache=ToolCache(tmp_path / "c.sqlite"))
    assert tool.run({"queries": ["velmora"]}, ctx(tmp_path)).data["queries"][0]["results"][0]["url"] == "https://d.example/v"
    tool = TextSearchTool("ddgs", client=RecordedDDGS([RatelimitException("x")] * 2 + [DDGSException("No results found.")]),
                          backoff=0.0, retries=2, cache=ToolCache(None, "off"))
    assert tool.run({"queries": ["a"]}, ctx(tmp_path)).error.startswith("ddgs is rate-limited after 2 tries")
    assert "No results." in tool.run({"queries": ["b"]}, ctx(tmp_path)).text


def test_pages_with_every_term_come_first_and_the_tiers_widen_only_when_short(tmp_path):
    pages = [Page(f"https://t.example/{i}", f"page {i}", text) for i, text in enumerate([
        "amber quartz basalt", "amber quartz", "amber basalt", "quartz basalt", "amber amber amber amber",
        "quartz", "unrelated words only"])]
    corpus = Corpus.build(pages, tmp_path / "c.sqlite")
    one = [h["url"] for h in corpus.search("amber quartz basalt", k=1)]
    assert one == ["https://t.example/0"]  # the only page with every term
    four = [h["url"] for h in corpus.search("amber quartz basalt", k=4)]
    assert four[0] == "https://t.example/0" and set(four[1:]) == {f"https://t.example/{i}" for i in (1, 2, 3)}
    every = corpus.search("amber quartz basalt", k=10)
    assert len(every) == 6 and "https://t.example/6" not in [h["url"] for h in every]
    # the widest tier and the exhaustive query rank the same pages the same way
    assert every == corpus.search("amber quartz basalt", k=10, exhaustive=True)
    # snippets are made for the pages kept, whichever tier they came from
    assert {h["url"]: h["snippet"] for h in every}["https://t.example/0"] == "amber quartz basalt"
    assert all(h["snippet"] for h in every)


def test_tiers_rank_as_the_any_term_query_does():
    from r1v4_nb.tools.backends.corpus import _tiers, query_terms

    phrases = query_terms("amber quartz basalt")
    tiers = _tiers(phrases)
    assert tiers[0] == '"amber" AND "quartz" AND "basalt"' and tiers[-1] == fts_query("amber quartz basalt")
    middle = tiers[1]
    # each term appears equally often in the all-but-one tier, so BM25 scales every page alike
    assert all(middle.count(p) == 2 for p in phrases)
    assert _tiers(['"x"']) == ['"x"'] and len(_tiers(query_terms("a1 b2 c3 d4 e5 f6"))) == 2
