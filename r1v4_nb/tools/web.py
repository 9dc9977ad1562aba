"""web_visit: read pages by URL, as clean text within a budget, the passages that matter first.

Backends: "offline" (the demo world's mirror, the default) and "http" (live
fetching behind the SSRF guard). Fetched pages go through the shared cache
(keyed by the normalised URL); the choice of passages for the goal happens
after the cache, so one cached page serves every question.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..images import Image, Provenance
from ..records import Observation
from .backends.fetch import Fetched, HttpFetcher, decode
from .backends.http import BackendUnavailable
from .backends.mirror import Mirror, normalise_url
from .base import Tool, ToolContext, ToolError, left_out_note, string_list
from .cache import NotCached, ToolCache, open_cache
from .htmltext import extract
from .netguard import BlockedURL, Resolver, check_scheme
from .passages import select

BACKENDS = ("offline", "http")
_TEXT_TYPES = ("text/plain", "text/markdown", "text/csv", "application/json", "text/xml", "application/xml")
_HTML_TYPES = ("text/html", "application/xhtml+xml")
MAX_LINKS_SHOWN = 12


class WebVisitTool(Tool):
    name = "web_visit"
    description = ("Visit web pages and read their main text. Long pages are cut to the passages most "
                   "relevant to `goal` (or to the question).")
    parameters = {
        "type": "object",
        "properties": {
            "urls": {"type": "array", "items": {"type": "string"}, "description": "pages to read"},
            "goal": {"type": "string", "description": "what to look for on the pages (optional)"},
        },
        "required": ["urls"],
    }

    def __init__(self, backend: str = "offline", mirror: str | Path | None = None, budget: int = 6000,
                 max_urls: int = 5, allow_private: bool = False, allow_hosts: tuple[str, ...] | list[str] = (),
                 timeout: float = 10.0, deadline: float = 20.0, max_bytes: int = 2_000_000,
                 max_redirects: int = 5, resolver: Resolver | None = None, retries: int = 2,
                 cache: ToolCache | str | Path | None = None, cache_mode: str | None = None):
        if backend not in BACKENDS:
            raise UsageError(f"unknown web_visit backend {backend!r}; choose from: {', '.join(BACKENDS)}")
        self.backend, self.budget, self.max_urls = backend, budget, max_urls
        self.allow_private = allow_private
        self._mirror_path = mirror
        self._fetcher_settings = dict(timeout=timeout, deadline=deadline, max_bytes=max_bytes,
                                      max_redirects=max_redirects, allow_private=allow_private,
                                      allow_hosts=allow_hosts, resolver=resolver, retries=retries)
        self._fetcher: HttpFetcher | Mirror | None = None
        self.cache = open_cache(cache, cache_mode)

    @property
    def backend_id(self) -> str:
        if self.backend == "http":
            return "http+private" if self.allow_private else "http"
        return "offline:" + str(self._mirror().map_path.parent.name)

    def _mirror(self) -> Mirror:
        if not isinstance(self._fetcher, Mirror):
            if self._mirror_path is None:
                from ..paths import offline_data

                self._mirror_path = offline_data().mirror
            self._fetcher = Mirror(self._mirror_path)
        return self._fetcher

    def _source(self) -> HttpFetcher | Mirror:
        if self.backend == "offline":
            return self._mirror()
        if self._fetcher is None:
            self._fetcher = HttpFetcher(**self._fetcher_settings)
        return self._fetcher

    def settings(self) -> dict[str, Any]:
        return {"backend": self.backend, "budget": self.budget, "allow_private": self.allow_private,
                **self.cache.settings()}

    def load(self, url: str) -> dict[str, Any]:
        """Fetch and read one page into a cacheable record; permanent refusals become {"error": ...}."""
        try:
            fetched = self._source().fetch(url)
        except BlockedURL as exc:
            return {"url": url, "error": str(exc)}
        return self._read(fetched)

    def _read(self, f: Fetched) -> dict[str, Any]:
        rec: dict[str, Any] = {"url": f.url, "status": f.status, "content_type": f.content_type, "title": "",
                               "text": "", "links": [], "notes": []}
        if f.redirects:
            rec["notes"].append(f"redirected {len(f.redirects)} time(s)")
        if f.truncated:
            rec["notes"].append(f"page larger than {len(f.body)} bytes; cut")
            rec["size_capped"] = True
        if f.status >= 400:
            rec["error"] = f"HTTP {f.status} for {f.url}"
        if f.content_type in _HTML_TYPES or f.content_type in _TEXT_TYPES or f.content_type.startswith("text/"):
            text, note = decode(f.body, f.charset, f.content_type)
            if note:
                rec["notes"].append(note)
            if f.content_type in _HTML_TYPES or (f.content_type.startswith("text/")
                                                 and text.lstrip()[:15].lower().startswith(("<!doctype", "<html"))):
                doc = extract(text, f.url)
                rec.update(title=doc.title, text=doc.text, links=doc.links)
            else:
                rec["text"] = text
        elif f.content_type.startswith("image/") and not f.truncated and self.cache.mode != "off":
            rec["image"] = self.cache.put_blob(f.body, Path(f.url.split("?")[0]).suffix[:5] or ".img")
            rec["text"] = f"(an image, {f.content_type}, {len(f.body)} bytes; attached)"
        else:
            rec["error"] = (f"{f.url} is binary content ({f.content_type}, {len(f.body)} bytes"
                            f"{' or more' if f.truncated else ''}); web_visit reads text and HTML only")
        return rec

    def run(self, arguments: dict[str, Any], ctx: ToolContext) -> Observation:
        urls = string_list(arguments, "urls", self.max_urls)
        goal = arguments.get("goal")
        if goal is not None and not isinstance(goal, str):
            raise ToolError("argument 'goal' must be a string")
        query = (goal or ctx.question or "").strip()
        budget = max(500, self.budget // len(urls))
        pages, blocks, images, limits = [], [], [], []
        for n, url in enumerate(urls, 1):
            try:
                if self.backend == "http":  # the scheme check needs no network: refuse before the cache
                    check_scheme(url)
                rec = self.cache.fetch(self.name, self.backend_id, {"url": normalise_url(url)},
                                       lambda u=url: self.load(u))
            except (NotCached, BackendUnavailable, ToolError) as exc:
                rec = {"url": url, "error": str(exc)}
            if rec.get("error") and not rec.get("text"):
                pages.append({"url": url, "title": "", "text": "", "links": [], "error": rec["error"]})
                blocks.append(f"[{n}] {url}\nError: {rec['error']}")
                continue
            text, cut = select(rec["text"], query, budget)
            if cut:
                limits.append("budget")
            if rec.get("size_capped"):
                limits.append("size")
            shown = [i for i, link in enumerate(rec["links"], 1) if f"[{i}]" in text][:MAX_LINKS_SHOWN]
            head = f"[{n}] {rec['title'] or rec['url']}\nURL: {rec['url']}"
            notes = list(rec.get("notes", [])) + (["showing the passages most relevant to the goal"] if cut else [])
            if rec.get("error"):
                notes.insert(0, rec["error"])
            block = head + (f"\nNote: {'; '.join(notes)}" if notes else "") + f"\n{text}"
            if shown:
                block += "\nLinks:\n" + "\n".join(f"[{i}] {rec['links'][i - 1]['url']}" for i in shown)
            blocks.append(block)
            pages.append({"url": rec["url"], "title": rec["title"], "text": text, "links": rec["links"],
                          "truncated": cut})
            if rec.get("image") and self.cache.blob(rec["image"]).is_file():
                images.append(Image.from_file(self.cache.blob(rec["image"]),
                                              Provenance("visit", step=ctx.step, name=rec["url"])))
        note = left_out_note(arguments, "urls", self.max_urls)
        if note:
            blocks.append(note)
        failed = [p for p in pages if p.get("error")]
        error = failed[0]["error"] if failed and len(failed) == len(pages) else None
        return Observation(text="\n\n".join(blocks), images=images, error=error,
                           data={"backend": self.backend, "pages": pages}, limits_hit=sorted(set(limits)))

    def close(self) -> None:
        if self._fetcher is not None:
            self._fetcher.close()
        self.cache.close()
