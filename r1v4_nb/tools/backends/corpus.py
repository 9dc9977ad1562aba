"""The offline text-search backend: a SQLite FTS5 corpus ranked by BM25.

Built from a folder of HTML / Markdown / text files or a JSONL of pages
(`r1v4-nb corpus build DIR`). Every corpus carries an id (a hash of its
content) so cached results of one corpus are never served for another.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ...errors import UsageError
from .sqlitefile import building

_WORD = re.compile(r"\w+", re.UNICODE)
_LINK_REF = re.compile(r" ?\[\d+\]")
STOPWORDS = frozenset(
    "a an and are as at be by for from has have he her his in is it its of on or she that the their them "
    "they this to was were what when where which who whom whose why how with did does do".split()
)
TEXT_SUFFIXES = {".html", ".htm", ".md", ".markdown", ".txt"}


@dataclass
class Page:
    """One searchable document."""

    url: str
    title: str
    text: str


def terms(text: str) -> list[str]:
    """Lower-cased word tokens without stop words (shared by FTS queries and the BM25 passage ranker)."""
    return [w for w in (t.casefold() for t in _WORD.findall(text)) if w not in STOPWORDS]


def query_terms(query: str) -> list[str]:
    """The distinct terms of a free-text query, each quoted as an FTS5 phrase (no operator injection);
    stop words only when the query has nothing else."""
    words = list(dict.fromkeys(terms(query))) or list(dict.fromkeys(t.casefold() for t in _WORD.findall(query)))
    return ['"' + w.replace('"', '""') + '"' for w in words[:32]]


def fts_query(query: str) -> str:
    """A free-text query as an FTS5 expression: its terms OR-ed (every page with any term matches)."""
    return " OR ".join(query_terms(query))


def _tiers(phrases: list[str]) -> list[str]:
    """FTS5 expressions from narrowest to widest: every term; all but one (for up to _COORDINATED terms);
    any term. Each ranks its pages exactly as the any-term query does (a term repeated across the
    clauses scales every page's BM25 by the same factor), so a narrower tier's top k is the any-term
    top k among the pages it matches, at a fraction of the cost: BM25 is computed per matching page,
    and a typical any-term query matches most of the corpus."""
    if len(phrases) == 1:
        return phrases
    tiers = [" AND ".join(phrases)]
    if 2 < len(phrases) <= _COORDINATED:
        tiers.append(" OR ".join("(" + " AND ".join(phrases[:i] + phrases[i + 1:]) + ")"
                                 for i in range(len(phrases))))
    tiers.append(" OR ".join(phrases))
    return tiers


_COORDINATED = 5
_RANK = "ORDER BY bm25(pages, 0.0, 4.0, 1.0)"  # title weighted 4x


def page_from_file(path: Path, url: str) -> Page:
    """Title and clean text of one HTML, Markdown or text file."""
    raw = path.read_bytes().decode("utf-8", errors="replace")
    if path.suffix.lower() in (".html", ".htm"):
        from ..htmltext import extract

        doc = extract(raw, url)
        title = doc.title or path.stem
        body = _LINK_REF.sub("", doc.text)  # link numbers mean nothing without the link list
        first, _, rest = body.partition("\n")
        if first.lstrip("# ").strip() and first.lstrip("# ").strip() in title:
            body = rest
        return Page(doc.url or url, title, body)
    lines = [ln for ln in raw.splitlines() if ln.strip()]
    title = lines[0].lstrip("# ").strip() if lines else path.stem
    return Page(url, title or path.stem, raw)


def pages_from_path(source: str | Path, base_url: str | None = None) -> Iterator[Page]:
    """Pages from a folder (HTML/Markdown/text, recursively) or from a JSONL file of {"url","title","text"}."""
    source = Path(source)
    if source.is_file() and source.suffix == ".jsonl":
        with source.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                    yield Page(str(d["url"]), str(d.get("title") or d["url"]), str(d["text"]))
                except (ValueError, KeyError, TypeError) as exc:
                    raise UsageError(f"{source}:{n}: each line must be a JSON object with url and text ({exc})") from exc
        return
    if not source.is_dir():
        raise UsageError(f"corpus source {source} is neither a folder nor a .jsonl file")
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.suffix.lower() in TEXT_SUFFIXES:
            rel = path.relative_to(source).as_posix()
            url = f"{base_url.rstrip('/')}/{rel}" if base_url else path.resolve().as_uri()
            yield page_from_file(path, url)


class Corpus:
    """A built FTS5 corpus file, opened for searching."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise UsageError(f"no corpus at {self.path}; build one with 'r1v4-nb corpus build DIR'")
        self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        try:
            self.id = self._conn.execute("SELECT value FROM meta WHERE key = 'id'").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"{self.path} is not an r1v4-nb corpus ({exc}); rebuild it") from exc

    @classmethod
    def build(cls, pages: Iterable[Page], path: str | Path,
              progress: Callable[[int], None] | None = None) -> Corpus:
        """Write a new corpus file (replacing any old one) from pages; duplicate URLs keep the first page."""
        path = Path(path)
        schema = ("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
                  "CREATE VIRTUAL TABLE pages USING fts5(url UNINDEXED, title, body, tokenize='porter unicode61');")
        digest = hashlib.sha256()
        seen: set[str] = set()
        with building(path, schema) as conn:
            batch: list[tuple[str, str, str]] = []
            for page in pages:
                if page.url in seen:
                    continue
                seen.add(page.url)
                digest.update(json.dumps([page.url, page.title, page.text]).encode("utf-8"))
                batch.append((page.url, page.title, page.text))
                if len(batch) >= 1000:
                    conn.executemany("INSERT INTO pages VALUES (?, ?, ?)", batch)
                    batch.clear()
                    if progress:
                        progress(len(seen))
            conn.executemany("INSERT INTO pages VALUES (?, ?, ?)", batch)
            conn.execute("INSERT INTO pages(pages) VALUES ('optimize')")
            conn.executemany("INSERT INTO meta VALUES (?, ?)",
                             [("id", digest.hexdigest()[:16]), ("pages", str(len(seen)))])
        if progress:
            progress(len(seen))
        return cls(path)

    def search(self, query: str, k: int = 5, exhaustive: bool = False) -> list[dict[str, str]]:
        """The k best pages for a free-text query (BM25, title weighted 4x), with a snippet around the hits.

        Pages with every term first, then pages missing one term, then pages with any term, each tier
        asked only while fewer than k pages were found (see `_tiers`); `exhaustive=True` ranks every
        page with any term at once (the reference the tiers are measured against). Snippets are made
        for the k pages kept, not for every page ranked."""
        phrases = query_terms(query)
        if not phrases:
            return []
        tiers = [" OR ".join(phrases)] if exhaustive else _tiers(phrases)
        for expr in tiers:
            ids = [r for (r,) in self._conn.execute(
                f"SELECT rowid FROM pages WHERE pages MATCH ? {_RANK} LIMIT ?", (expr, k))]
            if len(ids) >= k:
                break
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = {r: (u, t, s) for r, u, t, s in self._conn.execute(
            f"SELECT rowid, url, title, snippet(pages, 2, '', '', ' … ', 28) FROM pages "
            f"WHERE pages MATCH ? AND rowid IN ({marks})", (expr, *ids))}
        return [{"title": rows[r][1], "url": rows[r][0], "snippet": " ".join(rows[r][2].split())} for r in ids]

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT value FROM meta WHERE key = 'pages'").fetchone()[0])

    def close(self) -> None:
        self._conn.close()
