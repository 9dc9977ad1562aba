"""text_search: several queries per call, top-k results each (title, url, snippet), deduplicated.

Backends: "offline" (the FTS5 corpus of the demo world, or any corpus built
with `r1v4-nb corpus build`), "ddgs" (DuckDuckGo, no key), "serper" and
"serpapi" (with a key). Every query goes through the shared cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..records import Observation
from .backends.http import BackendUnavailable
from .base import Tool, ToolContext, ToolError, left_out_note, string_list
from .cache import NotCached, ToolCache, normalise_text, open_cache

BACKENDS = ("offline", "ddgs", "serper", "serpapi")


def _url_key(url: str) -> str:
    return url.split("#", 1)[0].rstrip("/").replace("://www.", "://").lower()


def make_text_backend(backend: str, corpus: str | Path | None = None, require_key: bool = True,
                      **settings: Any) -> Any:
    """A backend object with `.text(query, k)` and `.close()`; `name` and `id` name it in the cache."""
    from .backends import online

    if backend == "offline":
        return _CorpusBackend(corpus)
    if backend == "ddgs":
        return online.DuckDuckGo(**{k: v for k, v in settings.items() if k in ("timeout", "retries", "backoff",
                                                                                "sleep", "client", "region")})
    service = {"serper": online.Serper, "serpapi": online.SerpAPI}.get(backend)
    if service is None:
        raise UsageError(f"unknown text_search backend {backend!r}; choose from: {', '.join(BACKENDS)}")
    keep = ("api_key_env", "base_url", "timeout", "retries", "backoff", "sleep")
    return service(require_key=require_key, **{k: v for k, v in settings.items() if k in keep})


class _CorpusBackend:
    """The FTS5 corpus, opened on first use (the demo world is generated then if needed)."""

    name = "offline"

    def __init__(self, corpus: str | Path | None):
        self._path = corpus
        self._corpus: Any = None

    def corpus(self) -> Any:
        if self._corpus is None:
            from .backends.corpus import Corpus

            if self._path is None:
                from ..paths import offline_data

                self._path = offline_data().corpus
            self._corpus = Corpus(self._path)
        return self._corpus

    @property
    def id(self) -> str:
        return f"offline:{self.corpus().id}"

    def text(self, query: str, k: int) -> list[dict[str, str]]:
        return self.corpus().search(query, k)

    def close(self) -> None:
        if self._corpus is not None:
            self._corpus.close()
            self._corpus = None


class TextSearchTool(Tool):
    name = "text_search"
    description = "Search the web. Several queries per call; each returns the top results (title, url, snippet)."
    parameters = {
        "type": "object",
        "properties": {"queries": {"type": "array", "items": {"type": "string"}, "description": "search queries"}},
        "required": ["queries"],
    }

    def __init__(self, backend: str = "offline", k: int = 5, corpus: str | Path | None = None,
                 max_queries: int = 5, cache: ToolCache | str | Path | None = None, cache_mode: str | None = None,
                 **settings: Any):
        if k < 1:
            raise UsageError(f"k must be at least 1 (results per query), got {k}")
        self.cache = open_cache(cache, cache_mode)
        self.backend_name, self.k, self.max_queries = backend, k, max_queries
        self.backend = make_text_backend(backend, corpus, require_key=self.cache.mode != "read-only", **settings)

    def settings(self) -> dict[str, Any]:
        return {"backend": self.backend_name, "k": self.k, **self.cache.settings()}

    def _backend_id(self) -> str:
        return getattr(self.backend, "id", self.backend_name)

    def search(self, query: str) -> dict[str, Any]:
        """One query's results through the cache: {"query", "results"} or {"query", "error"}."""
        try:
            value = self.cache.fetch(self.name, self._backend_id(), {"query": normalise_text(query), "k": self.k},
                                     lambda: {"results": self.backend.text(query, self.k)})
        except (NotCached, BackendUnavailable, ToolError) as exc:
            return {"query": query, "results": [], "error": str(exc)}
        return {"query": query, "results": value["results"]}

    def run(self, arguments: dict[str, Any], ctx: ToolContext) -> Observation:
        queries = list(dict.fromkeys(string_list(arguments, "queries", self.max_queries)))
        out = [self.search(q) for q in queries]
        seen: dict[str, str] = {}
        lines: list[str] = []
        for qn, item in enumerate(out, 1):
            lines.append(f'Query {qn}: "{item["query"]}"')
            if item.get("error"):
                lines.append(f"  Error: {item['error']}")
                continue
            if not item["results"]:
                lines.append("  No results.")
            for rn, r in enumerate(item["results"], 1):
                ref = f"{qn}.{rn}"
                key = _url_key(r["url"])
                if key in seen:
                    lines.append(f"  [{ref}] same page as [{seen[key]}]")
                    continue
                seen[key] = ref
                lines.append(f"  [{ref}] {r['title']}\n      {r['url']}" + (f"\n      {r['snippet']}" if r["snippet"] else ""))
        note = left_out_note(arguments, "queries", self.max_queries)
        if note:
            lines.append(note)
        errors = [o["error"] for o in out if o.get("error")]
        return Observation(text="\n".join(lines), error=errors[0] if len(errors) == len(out) else None,
                           data={"backend": self.backend_name, "queries": out})

    def close(self) -> None:
        self.backend.close()
        self.cache.close()
