"""Scorers on hand-made surface forms: option letters, choices as text, numbers, units, casing, unicode; the judge."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from r1v4_nb.errors import UsageError
from r1v4_nb.eval.scoring import (
    Judge,
    extract_choice,
    is_number,
    normalise,
    numeric_match,
    parse_numbers,
    score_answer,
    token_f1,
)
from r1v4_nb.eval.tasks import Task
from tests.support import CHECKOUT
from tests.support.eval import LoopbackServer, user_text

CARS = {"A": "red car", "B": "blue car", "C": "green truck", "D": "white van"}
REDS = {"A": "red", "B": "dark red"}
RB = {"A": "red", "B": "blue"}

# (answer, choices, what VLMEvalKit's can_infer gives (None: no letter, incl. its 'Z'), what we give).
# VLMEvalKit's rule (vlmeval/utils/matching_util.py, VERBOSE unset): refusal phrases -> Z; split on
# .()[],:;!*#{} and spaces; exactly one option letter among the words -> it; else the one option whose
# text is a substring of the lower-cased answer.
CASES = [
    ("B", CARS, "B", "B"),
    ("(B)", CARS, "B", "B"),
    ("B.", CARS, "B", "B"),
    ("**B**", CARS, "B", "B"),
    ("The answer is B", CARS, "B", "B"),
    ("Answer: B) the blue car", CARS, "B", "B"),
    ("B. blue car", CARS, "B", "B"),
    ("blue car", CARS, "B", "B"),
    ("The blue car.", CARS, "B", "B"),
    ("A", CARS, "A", "A"),
    ("A cat sits on the blue car", CARS, "A", "B"),
    ("Sorry, I can't help with images of people yet.", CARS, None, None),
    ("Cannot determine the answer", CARS, None, None),
    ("b", CARS, None, "B"),
    ("\\boxed{C}", CARS, "C", "C"),
    ("C: green truck", CARS, "C", "C"),
    ("Option D", CARS, "D", "D"),
    ("I think it is B, not C.", CARS, None, None),
    ("C is wrong; the answer is B", CARS, None, "B"),
    ("B or C", CARS, None, None),
    ("The correct option is (D) white van.", CARS, "D", "D"),
    ("Z", CARS, None, None),
    ("red", REDS, "A", "A"),
    ("dark red", REDS, None, "B"),
    ("bored", RB, "A", None),
    ("It is a green truck.", CARS, "C", "C"),
    ("The final answer is: C.", CARS, "C", "C"),
    ("My answer: (A)", CARS, "A", "A"),
    ("A. red car", CARS, "A", "A"),
    ("A) red car", CARS, "A", "A"),
    ("A red car.", CARS, "A", "A"),
    ("A blue car.", CARS, "A", "B"),
    ("Ａ", CARS, None, "A"),
    ("The answer is B because the blue car is closer than the red car", CARS, "B", "B"),
    ("Both A and B are possible", CARS, None, None),
    ("Option A is correct", CARS, "A", "A"),
    ("None of the options", CARS, None, None),
    ("I'm sorry, but without the image provided I cannot answer.", CARS, None, None),
    ("(C) green truck", CARS, "C", "C"),
    ("c) green truck", CARS, "C", "C"),
    ("The image shows a white van parked near the red car.", CARS, None, None),
    ("ANSWER: D", CARS, "D", "D"),
    ("D\n\nExplanation: the van is white.", CARS, "D", "D"),
    ("Green truck", CARS, "C", "C"),
    ("I'd go with B.", CARS, "B", "B"),
    ("B, the blue car", CARS, "B", "B"),
    ("Choice B", CARS, "B", "B"),
    ("A: red car", CARS, "A", "A"),
    ("答案是B", CARS, None, None),
]

DOCS = CHECKOUT / "docs" / "evaluation.md"


@pytest.mark.parametrize(("answer", "choices", "vlmevalkit", "ours"), CASES)
def test_choice_extraction(answer: str, choices: dict[str, str], vlmevalkit: str | None, ours: str | None) -> None:
    got, how = extract_choice(answer, choices)
    assert got == ours, how


def test_every_difference_from_vlmevalkit_is_documented() -> None:
    assert len(CASES) >= 40
    doc = DOCS.read_text(encoding="utf-8")
    table = doc.split("## Where our letter extraction differs from VLMEvalKit", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([^`]+)` \|", table, flags=re.M))
    differing = {a for a, _, v, o in CASES if v != o}
    assert differing == listed, (differing - listed, listed - differing)
    agree = sum(1 for _, _, v, o in CASES if v == o)
    assert agree >= 40


def _t(gold: str | list[str], choices: dict[str, str] | None = None, question: str = "q?") -> Task:
    golds = [gold] if isinstance(gold, str) else gold
    return Task("t", question, answers=golds, choices=choices or {})


@pytest.mark.parametrize(("answer", "gold", "ok"), [
    ("1204", "1204", True), ("It was founded in 1204.", "1204", True), ("1,204", "1204", True),
    ("1204 AD", "1204", True), ("about 1200", "1204", False), ("1204.0", "1204", True),
    ("3.45", "3.5", True), ("3.6", "3.5", False), ("45 centimetres", "45 cm", True), ("0.45 m", "45 cm", False),
    ("25 percent", "25%", True), ("-3", "\u22123", True), ("2 400 metres", "2400", True),
    ("1204 and 1205", "1205", False), ("one thousand", "1000", False), ("１２０４", "1204", True),
])
def test_numeric(answer: str, gold: str, ok: bool) -> None:
    assert numeric_match(answer, [gold])[0] is ok
    assert score_answer(answer, _t(gold)).correct is ok  # auto picks numeric for a numeric gold


@pytest.mark.parametrize(("answer", "gold", "ok"), [
    ("The Kelmir Lantern", "Kelmir lantern", True), ("Café", "cafe", True), ("k7.", "K7", True),
    ("K-7", "K7", False), ("  Kelmir  ", "kelmir", True), ("Kelmir town", "Kelmir", False),
    ("ÉCOLE", "école", True), ("cartographer", "Cartographer", True), ("cartographers", "cartographer", False),
])
def test_normalised(answer: str, gold: str, ok: bool) -> None:
    assert score_answer(answer, _t(gold), "normalised").correct is ok
    assert score_answer(answer, _t(gold)).correct is ok


def test_exact_f1_and_no_answer() -> None:
    assert score_answer("K7 ", _t("K7"), "exact").correct
    assert not score_answer("k7", _t("K7"), "exact").correct
    s = score_answer("Ada Lovelace", _t("Ada"), "f1")
    assert s.correct and abs(s.value - 2 / 3) < 1e-9
    assert token_f1("the cat", "a cat") == 1.0 and token_f1("dog", "cat") == 0.0
    none = score_answer(None, _t("x"))
    assert not none.correct and not none.answered and none.reason == "no answer"
    assert not score_answer("   ", _t("x")).answered
    with pytest.raises(UsageError, match="unknown scorer"):
        score_answer("x", _t("x"), "fuzzy")
    with pytest.raises(UsageError, match="needs a judge"):
        score_answer("x", _t("x"), "judge")


def test_choice_scoring_and_helpers() -> None:
    t = _t("B", CARS)
    assert score_answer("Answer: B) the blue car", t).scorer == "auto:choice"
    assert score_answer("blue car", t).correct and not score_answer("C", t).correct
    assert not score_answer("B or C", t).correct
    assert parse_numbers("1,234 and −3.5 and .5") == [1234.0, -3.5, 0.5]
    assert is_number("25%") and is_number("45 cm") and not is_number("K7") and not is_number("1 or 2")
    assert normalise("The  Old-Town, Café!") == "old town cafe"


def _judge_rule(messages: list) -> str:
    """The scripted judge: YES when the reference's normalised text occurs in the candidate's."""
    text = user_text(messages)
    ref = re.search(r"Reference answer\(s\): (.*)", text).group(1)
    cand = re.search(r"Candidate answer: (.*)", text).group(1)
    if "garble" in cand:
        return "Maybe?"
    return "YES" if any(normalise(r) in normalise(cand) for r in ref.split(" | ")) else "NO"


def test_judge_on_a_loopback_endpoint_is_cached(tmp_path: Path) -> None:
    cache = tmp_path / "cache.sqlite"
    with LoopbackServer(_judge_rule) as srv:
        judge = Judge(srv.url, cache=cache)
        t = _t("Kelmir Lantern", question="What is this object?")
        s = score_answer("I believe it is the Kelmir lantern", t, judge=judge)
        assert s.correct and s.scorer == "auto:judge" and "judge: YES" in s.reason
        assert score_answer("the Kelmir lantern", t, "auto", judge).correct  # rule decides: no judge call
        assert len(srv.requests) == 1
        req = srv.requests[0]
        assert req["temperature"] == 0.0 and "What is this object?" in user_text(req["messages"])
        assert not score_answer("a brass bell", t, "judge", judge).correct
        assert len(srv.requests) == 2
        again = Judge(srv.url, cache=cache)
        assert score_answer("I believe it is the Kelmir lantern", t, judge=again).correct
        assert len(srv.requests) == 2  # from the cache
        odd = score_answer("garble", t, "judge", judge)
        assert not odd.correct and "not YES or NO" in odd.reason
        numeric = score_answer("1205", _t("1204"), judge=judge)  # a number read: the rule is decisive
        assert not numeric.correct and numeric.scorer == "auto:numeric"
    offline = Judge(srv.url, cache=cache, cache_mode="read-only")
    assert score_answer("I believe it is the Kelmir lantern", t, judge=offline).correct
    with pytest.raises(UsageError, match="not in the read-only cache"):
        score_answer("something new", t, "judge", offline)
