"""tools/passages.py: the parts of a long page that matter for a question, within a budget."""

from __future__ import annotations

from r1v4_nb.tools.passages import GAP, bm25, chunks, select


def _page() -> str:
    filler = ["Weather in the valley is mild and the roads are long." for _ in range(12)]
    return "\n".join(["# Harbour City", "Harbour City is a port on the grey coast.", *filler,
                      "## History", "The lighthouse of Harbour City was founded in 1483 by the guild.",
                      *filler, "## Today", "Fishing and ferries keep the port busy.", *filler])


def test_chunks_start_at_headings_and_stay_near_the_size():
    parts = chunks(_page(), size=200)
    assert parts[0].startswith("# Harbour City")
    assert any(p.startswith("## History") for p in parts) and any(p.startswith("## Today") for p in parts)
    assert all(len(p) <= 200 + 60 for p in parts)  # a chunk closes before the line that would overflow it
    assert "\n".join(parts) == _page()  # nothing lost, order kept


def test_one_enormous_line_is_cut():
    parts = chunks("x" * 5000, size=600)
    assert "".join(parts) == "x" * 5000 and max(len(p) for p in parts) <= 1200


def test_bm25_ranks_the_chunk_with_the_query_terms_first():
    docs = ["the port and its ferries", "the lighthouse was founded in 1483", "mild weather"]
    scores = bm25("when was the lighthouse founded", docs)
    assert scores.index(max(scores)) == 1 and scores[2] == 0.0
    assert bm25("", docs) == [0.0, 0.0, 0.0] and bm25("anything", []) == []


def test_a_text_within_budget_comes_back_whole():
    assert select("short page", "question", 100) == ("short page", False)


def test_a_long_page_keeps_its_opening_and_the_relevant_passage_in_page_order():
    page = _page()
    text, cut = select(page, "when was the lighthouse founded", budget=1300)
    assert cut and len(text) <= 1300
    assert text.startswith("# Harbour City")
    assert "founded in 1483" in text and GAP in text and "Fishing" not in text
    assert text.index("Harbour City is a port") < text.index("founded in 1483")


def test_no_matching_terms_gives_the_opening_cut_at_a_line():
    text, cut = select(_page(), "zzzz qqqq", budget=300)
    assert cut and _page().startswith(text) and len(text) <= 300 and not text.endswith(" ")
