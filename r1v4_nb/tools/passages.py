"""The passages of a long page that matter for a question, within a character budget.

R1V4 summarised long pages with a second LLM; we rank chunks of the page with
BM25 against the visit's goal (or the run's question) and keep the best ones,
in page order, so the model sees the relevant facts rather than the first N
characters.
"""

from __future__ import annotations

import math
from collections import Counter

from .backends.corpus import terms

GAP = "[…]"


def chunks(text: str, size: int = 600) -> list[str]:
    """Consecutive lines grouped into chunks of about `size` characters; a heading starts a new chunk."""
    out: list[str] = []
    current: list[str] = []
    length = 0
    for line in text.splitlines():
        while len(line) > size * 2:  # one enormous line (minified text): cut it
            head, line = line[:size], line[size:]
            if current:
                out.append("\n".join(current))
                current, length = [], 0
            out.append(head)
        if current and (length + len(line) > size or line.startswith("#")):
            out.append("\n".join(current))
            current, length = [], 0
        current.append(line)
        length += len(line) + 1
    if current:
        out.append("\n".join(current))
    return out


def bm25(query: str, docs: list[str], k1: float = 1.5, b: float = 0.75) -> list[float]:
    """BM25 score of each doc for the query."""
    q = set(terms(query))
    toks = [terms(d) for d in docs]
    if not q or not docs:
        return [0.0] * len(docs)
    avg = sum(len(t) for t in toks) / len(toks) or 1.0
    df = Counter(w for t in toks for w in set(t) if w in q)
    n = len(docs)
    scores = []
    for t in toks:
        tf = Counter(w for w in t if w in q)
        s = 0.0
        for w, f in tf.items():
            idf = math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
            s += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len(t) / avg))
        scores.append(s)
    return scores


def select(text: str, query: str, budget: int) -> tuple[str, bool]:
    """The text itself if it fits, else the best chunks for `query` (the opening chunk first); (text, cut)."""
    if len(text) <= budget:
        return text, False
    parts = chunks(text)
    scores = bm25(query, parts)
    if not any(scores):
        return text[:budget].rsplit("\n", 1)[0] if "\n" in text[:budget] else text[:budget], True
    order = [0] + sorted(range(1, len(parts)), key=lambda i: (-scores[i], i))
    chosen: list[int] = []
    used = 0
    for i in order:
        cost = len(parts[i]) + len(GAP) + 2
        if used + cost <= budget and (scores[i] > 0 or i == 0):
            chosen.append(i)
            used += cost
    if not chosen:
        best = max(range(len(parts)), key=lambda i: scores[i])
        return parts[best][:budget], True
    chosen.sort()
    out: list[str] = []
    for prev, i in zip([-1] + chosen, chosen, strict=False):
        if i != prev + 1:
            out.append(GAP)
        out.append(parts[i])
    if chosen[-1] != len(parts) - 1:
        out.append(GAP)
    return "\n".join(out), True
