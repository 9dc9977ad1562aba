"""Scorers: is the text inside `<answer>` right? Rules first, an LLM judge where rules cannot decide.

Every scorer sees only the final answer (the agent's `<answer>` segment, the
trajectory's `end.answer`); no answer is wrong and counted apart. The rules:

- `exact`: the same text after stripping spaces;
- `normalised`: the same after case, accents, punctuation, articles and spacing are removed;
- `numeric`: the first number in the answer equals a gold number, within half a unit of the gold's
  last written digit (gold "3.5" accepts 3.45 to 3.55; gold "1204" needs 1204), units and thousands
  separators aside;
- `f1`: token F1 against the best gold (MMSearch's end-to-end metric); correct at >= `f1_threshold`;
- `choice`: the option letter a multiple-choice answer picks (`extract_choice`, which follows
  VLMEvalKit's rule-based matching except where docs/evaluation.md lists otherwise);
- `judge`: an LLM asked whether the answer means the gold (any OpenAI-compatible endpoint);
- `auto` (the default): `choice` for multiple choice, `numeric` when the gold is a number, otherwise
  `normalised`; a rule that finds no match and a judge that is configured let the judge decide.

Judge calls go through the tool cache (tool "judge"), so re-scoring is free and, with a read-only
cache, reproducible offline.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import UsageError

SCORERS = ("auto", "exact", "normalised", "numeric", "f1", "choice", "judge")
JUDGE_PROMPT_VERSION = 1

# Phrases with which a model declines to pick; an answer containing one picks nothing.
REFUSALS = (
    "sorry, i can't help with images of people",
    "i can't process this file",
    "i'm sorry, but without the image",
    "cannot determine the answer",
    "i cannot determine",
    "can't determine",
    "cannot be determined",
    "unable to determine",
    "i am unable to answer",
    "i'm unable to answer",
    "none of the options",
    "none of the choices",
)


@dataclass
class Score:
    """The verdict on one answer: `value` is 1/0, or the F1 for the f1 scorer."""

    correct: bool
    scorer: str
    reason: str
    extracted: str | None = None
    value: float = 0.0
    answered: bool = True

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- normalisation and the simple rules ------------------------------------------------------------


def normalise(text: str) -> str:
    """Lower case, accents and punctuation removed, articles dropped, spaces collapsed."""
    t = unicodedata.normalize("NFKD", text)
    t = "".join(c for c in t if not unicodedata.combining(c)).casefold()
    t = re.sub(r"[^\w\s]", " ", t)
    t = re.sub(r"\b(a|an|the)\b", " ", t)
    return " ".join(t.split())


def exact_match(answer: str, golds: Sequence[str]) -> bool:
    return any(answer.strip() == g.strip() for g in golds)


def normalised_match(answer: str, golds: Sequence[str]) -> bool:
    return any(normalise(answer) == normalise(g) for g in golds)


_NUMBER = re.compile(r"(?<![\w.])[-−+]?(?:\d{1,3}(?:[,\u202f\u00a0 ]\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?!\w)"
                     r"|(?<![\w.])[-−+]?\.\d+(?!\w)")


def parse_numbers(text: str) -> list[float]:
    """The numbers written in a text: 1,234 / 1 234 / −3.5 / .5 / 2e3 (a % sign is kept out of the value)."""
    t = unicodedata.normalize("NFKC", text)
    out = []
    for m in _NUMBER.finditer(t):
        s = re.sub(r"[,\u202f\u00a0 ]", "", m.group(0)).replace("−", "-")
        try:
            out.append(float(s))
        except ValueError:
            continue
    return out


def is_number(text: str) -> bool:
    """Whether a gold answer is one number (with optional unit or % sign)."""
    t = unicodedata.normalize("NFKC", text).strip()
    nums = parse_numbers(t)
    if len(nums) != 1:
        return False
    rest = _NUMBER.sub(" ", t, count=1).strip()
    return len(rest) <= 12 and not re.search(r"\d", rest)


def _tolerance(gold: str) -> float:
    m = re.search(r"\.(\d+)", unicodedata.normalize("NFKC", gold))
    return 0.5 * 10 ** -len(m.group(1)) if m else 0.0


def numeric_match(answer: str, golds: Sequence[str], rel_tol: float = 0.0) -> tuple[bool, float | None]:
    """Whether the answer's first number equals a gold number; returns the number read too."""
    nums = parse_numbers(answer)
    if not nums:
        return False, None
    got = nums[0]
    for g in golds:
        want = parse_numbers(g)
        if not want:
            continue
        tol = max(_tolerance(g), abs(want[0]) * rel_tol) + 1e-9
        if math.isclose(got, want[0], abs_tol=tol, rel_tol=0.0):
            return True, got
    return False, got


def token_f1(answer: str, gold: str) -> float:
    """Token F1 of the normalised texts (bag of words), as in SQuAD and MMSearch."""
    a, g = normalise(answer).split(), normalise(gold).split()
    if not a or not g:
        return float(a == g)
    common = sum((Counter(a) & Counter(g)).values())
    if common == 0:
        return 0.0
    p, r = common / len(a), common / len(g)
    return 2 * p * r / (p + r)


# -- multiple choice --------------------------------------------------------------------------------

_STRIP = ".()[],:;!*#{}"
_EXPLICIT = re.compile(r"(?i:\b(?:the\s+)?(?:final\s+|correct\s+)?(?:answer|option|choice)\s*(?:is|would\s+be|:)?"
                       r"\s*:?\s*)[\(\[\*\s]*([A-Z])(?![\w'])")


# Words after "A" that show it is the option letter, not the article ("A and B", "A is right").
_NOT_NOUNS = {"and", "or", "nor", "is", "was", "seems", "looks", "would", "could", "might", "must", "should",
              "vs", "versus", "then", "because", "since", "as", "but"}


def is_refusal(answer: str) -> bool:
    low = answer.casefold().replace("’", "'")
    return any(r in low for r in REFUSALS)


def extract_choice(answer: str, choices: dict[str, str]) -> tuple[str | None, str]:
    """The letter an answer picks among `choices`, or None, with how it was found.

    In order: a refusal picks nothing; `\\boxed{..}` is unwrapped; an answer that is only a letter
    ("B", "(b)", "**B**", "B."); an explicit "answer is B" / "Answer: B"; a leading "B." / "B)";
    then VLMEvalKit's rule (exactly one option letter among the words, "A" not counted as a letter in a
    sentence); then the option's text written out (whole words, the longest option wins over ones it
    contains).
    """
    letters = list(choices)
    text = unicodedata.normalize("NFKC", answer).strip()
    if not text:
        return None, "empty answer"
    if is_refusal(text):
        return None, "refusal"
    boxed = re.search(r"\\boxed\{([^{}]*)\}", text)
    if boxed:
        text = boxed.group(1).strip()
    alone = re.fullmatch(r"[\s\(\[\*\"'`]*([A-Za-z])[\s\)\]\.\:\*\"'`]*", text)
    if alone and alone.group(1).upper() in letters:
        return alone.group(1).upper(), "letter"
    explicit = [m.group(1) for m in _EXPLICIT.finditer(text) if m.group(1) in letters]
    if explicit:
        return explicit[-1], "answer is <letter>"
    lead = re.match(r"[\s\(\[\*]*([A-Z])(?:[\)\]\.\:]|\*\*)(?:\s|$)", text)
    if lead and lead.group(1) in letters:
        return lead.group(1), "leading letter"
    words = text
    for c in _STRIP:
        words = words.replace(c, " ")
    tokens = words.split()
    found = []
    for i, tok in enumerate(tokens):
        if tok in letters and tok not in found:
            article = (tok == "A" and i + 1 < len(tokens) and tokens[i + 1][:1].islower()
                       and tokens[i + 1] not in _NOT_NOUNS)
            if not article:
                found.append(tok)
    if len(found) == 1:
        return found[0], "one option letter"
    if len(found) > 1:
        return None, f"several option letters ({', '.join(found)})"
    return _choice_by_text(text, choices)


def _choice_by_text(text: str, choices: dict[str, str]) -> tuple[str | None, str]:
    low = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    hits = []
    for k, v in choices.items():
        opt = " ".join(v.casefold().split())
        if opt and re.search(r"(?<!\w)" + re.escape(opt) + r"(?!\w)", low):
            hits.append(k)
    if len(hits) > 1:  # "dark red" also contains "red": keep the options not inside another hit
        longest = [k for k in hits if not any(k != j and choices[k].casefold() in choices[j].casefold()
                                              for j in hits)]
        hits = longest
    if len(hits) == 1:
        return hits[0], "option text"
    if hits:
        return None, f"the texts of several options ({', '.join(hits)})"
    return None, "no option found"


# -- the judge --------------------------------------------------------------------------------------

JUDGE_SYSTEM = ("You grade answers to questions. You compare a candidate answer with the reference answer "
                "and decide whether they say the same thing. Reply with one word: YES or NO.")
JUDGE_USER = """\
Question: {question}
Reference answer(s): {golds}
Candidate answer: {answer}

Does the candidate answer give the same answer as a reference answer? Differences of wording, case, \
formatting, units written out or abbreviated, or extra explanation do not matter; a different value, \
a different entity, a hedge between several answers, or a missing answer does. Reply YES or NO."""


class Judge:
    """An equivalence judge over an OpenAI-compatible endpoint; each verdict is kept in the tool cache."""

    def __init__(self, endpoint: str, model: str | None = None, cache: Any = None, cache_mode: str | None = None,
                 api_key_env: str | None = "OPENAI_API_KEY", timeout: float = 60.0):
        from ..models.openai import OpenAIModel
        from ..tools.cache import open_cache

        self.client = OpenAIModel(endpoint, model=model, api_key_env=api_key_env, timeout=timeout, retries=2)
        self.model = model or ""  # as given: the cache key must not depend on what the server lists
        self.cache = open_cache(cache, cache_mode)
        self.calls = 0

    def describe(self) -> dict[str, Any]:
        return {"endpoint": self.client.endpoint, "model": self.client.model, "prompt_version": JUDGE_PROMPT_VERSION,
                **self.cache.settings()}

    def verdict(self, question: str, answer: str, golds: Sequence[str]) -> tuple[bool, str]:
        """Whether the judge says the answer matches a gold; the reason quotes the judge's reply."""
        from ..models.base import GenerationSettings

        args = {"question": question, "answer": answer, "golds": list(golds), "prompt": JUDGE_PROMPT_VERSION,
                "model": self.model}

        def ask() -> dict[str, Any]:
            self.calls += 1
            messages = [{"role": "system", "content": JUDGE_SYSTEM},
                        {"role": "user", "content": JUDGE_USER.format(
                            question=question, golds=" | ".join(golds), answer=answer)}]
            reply = self.client.complete(messages, settings=GenerationSettings(temperature=0.0, max_tokens=8,
                                                                                seed=0))
            return {"reply": self.client.last_raw, "model": reply.get("model")}

        from ..tools.cache import NotCached

        try:
            value = self.cache.fetch("judge", self.client.endpoint, args, ask)
        except NotCached:
            raise UsageError(f"the judge's verdict on {answer[:40]!r} is not in the read-only cache "
                             f"{self.cache.path}; re-score with a read-write cache to ask the judge") from None
        reply = str(value.get("reply", "")).strip()
        word = re.match(r"\W*(\w+)", reply)
        said = word.group(1).upper() if word else ""
        if said not in ("YES", "NO"):
            return False, f"judge replied {reply[:40]!r}, not YES or NO: counted wrong"
        return said == "YES", f"judge: {said}"


# -- scoring one answer -----------------------------------------------------------------------------


def score_answer(answer: str | None, task: Any, scorer: str = "auto", judge: Judge | None = None,
                 f1_threshold: float = 0.5) -> Score:
    """Score the final answer of a run against a task (`Task` from r1v4_nb.eval.tasks)."""
    if scorer not in SCORERS:
        raise UsageError(f"unknown scorer {scorer!r}; choose one of: {', '.join(SCORERS)}")
    if scorer == "judge" and judge is None:
        raise UsageError("scorer 'judge' needs a judge endpoint (--judge-endpoint URL / judge=Judge(...))")
    if answer is None or not answer.strip():
        return Score(False, scorer, "no answer", answered=False)
    golds = task.golds
    choices = getattr(task, "choices", None) or {}
    if scorer == "judge":
        ok, why = judge.verdict(task.question, answer, _judge_golds(task))
        return Score(ok, "judge", why, value=float(ok))
    if scorer == "auto":
        rule = "choice" if choices else ("numeric" if golds and all(is_number(g) for g in golds) else "normalised")
        s = score_answer(answer, task, rule, None, f1_threshold)
        decisive = s.correct or (rule == "numeric" and s.extracted is not None) or (
            rule == "choice" and s.extracted is not None)
        if judge is not None and not decisive:
            ok, why = judge.verdict(task.question, answer, _judge_golds(task))
            return Score(ok, "auto:judge", f"{s.reason}; {why}", s.extracted, float(ok))
        return Score(s.correct, f"auto:{rule}", s.reason, s.extracted, s.value)
    if scorer == "exact":
        ok = exact_match(answer, golds)
        return Score(ok, scorer, "exact match" if ok else "no exact match", answer.strip(), float(ok))
    if scorer == "normalised":
        ok = normalised_match(answer, golds)
        return Score(ok, scorer, "normalised match" if ok else "no normalised match", normalise(answer), float(ok))
    if scorer == "numeric":
        ok, got = numeric_match(answer, golds)
        why = "no number in the answer" if got is None else (f"{got:g} matches" if ok else f"{got:g} differs")
        return Score(ok, scorer, why, None if got is None else f"{got:g}", float(ok))
    if scorer == "f1":
        best = max((token_f1(answer, g) for g in golds), default=0.0)
        return Score(best >= f1_threshold, scorer, f"token F1 {best:.2f}", normalise(answer), best)
    # choice
    if not choices:
        ok = normalised_match(answer, golds)
        return Score(ok, scorer, "not multiple choice: normalised match" + ("" if ok else " failed"), None, float(ok))
    letter, how = extract_choice(answer, choices)
    if letter is None:
        return Score(False, scorer, how, None, 0.0)
    ok = letter in golds
    return Score(ok, scorer, f"{how}: {letter}", letter, float(ok))


def _judge_golds(task: Any) -> list[str]:
    choices = getattr(task, "choices", None) or {}
    if choices:
        return [f"{g}. {choices.get(g, '')}".strip() for g in task.golds]
    return list(task.golds)


def judge_from_args(endpoint: str | None, model: str | None = None, cache: Any = None,
                    cache_mode: str | None = None) -> Judge | None:
    """A Judge when an endpoint is given (CLI and notebook helpers)."""
    return Judge(endpoint, model=model, cache=cache, cache_mode=cache_mode) if endpoint else None


def describe_scorer(scorer: str, judge: Judge | None) -> dict[str, Any]:
    return {"scorer": scorer, "judge": judge.describe() if judge else None}


__all__ = ["JUDGE_PROMPT_VERSION", "REFUSALS", "SCORERS", "Judge", "Score", "describe_scorer", "exact_match",
           "extract_choice", "is_number", "is_refusal", "judge_from_args", "normalise", "normalised_match",
           "numeric_match", "parse_numbers", "score_answer", "token_f1"]
