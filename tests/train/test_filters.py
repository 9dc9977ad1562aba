"""Selecting clean trajectories (correct, no tool errors, no re-crops) and the stats table."""

from __future__ import annotations

import pytest

from r1v4_nb.errors import UsageError
from r1v4_nb.train.filters import answer_matches, normalise, recrops, select, stats, tool_errors
from tests.support.train import written


@pytest.fixture(scope="module")
def trajs(tmp_path_factory):
    return written(tmp_path_factory.mktemp("filters"), ("clean", "search", "wrong", "tool_error", "recrop"))


def test_answer_matching():
    assert normalise("  The Red!  ") == "red"
    assert answer_matches("The red.", "red") and not answer_matches("The red.", "red", "exact")
    assert answer_matches("red", "red", "exact") and answer_matches("crimson", ["blue", "crimson"])
    assert answer_matches("crimson", "red", lambda a, g: {a, g} == {"crimson", "red"})
    assert not answer_matches(None, "red")
    with pytest.raises(UsageError, match="match="):
        answer_matches("a", "a", "fuzzy")


def test_select_keeps_clean_runs_and_says_why_others_go(trajs):
    clean, search, wrong, err, recrop = trajs
    assert tool_errors(err) == 1 and tool_errors(clean) == 0
    assert recrops(recrop) == 1 and recrops(search) == 0
    sel = select(trajs)
    assert sel.kept == [clean, search]
    assert [len(sel.dropped[k]) for k in ("wrong", "tool_error", "recrop")] == [1, 1, 1]
    assert sel.summary() == "kept 2, wrong 1, tool_error 1, recrop 1"
    # a gold mapping overrides meta["gold"]; the rules can be switched off one by one
    gold = {t.header.meta["task"]: "no such colour" for t in trajs}
    assert select(trajs, gold=gold).kept == []
    assert len(select(trajs, require_correct=False, drop_tool_errors=False, drop_recrops=False).kept) == 5


def test_stats_table(trajs, tiny_moe_path):
    from r1v4_nb.models.processor import load_processor
    from r1v4_nb.train.data import render_examples

    sel = select(trajs)
    exs = render_examples(sel.kept, load_processor(tiny_moe_path)).examples
    table = stats(trajs, exs, sel)
    d = table.as_dict()
    assert d["trajectories"] == "5" and d["examples"] == "2"
    assert d["tools used"] == "code 6, text_search 1"
    assert d["images / example"].startswith("min 2")
    assert d["tokens in loss"] == f"{sum(e.loss_tokens for e in exs)} of {sum(e.length for e in exs)}"
    assert "selection" in table.table() and "kept 2" in table.table()
