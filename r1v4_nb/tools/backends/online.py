"""Online search services: DuckDuckGo (ddgs), Serper and SerpAPI (web search and Google Lens).

Each turns the service's reply into the same result records as the offline
backends ({"title", "url", "snippet"} for text; {"title", "url", "thumbnail_url"}
for Lens), so everything after the HTTP layer is shared with the offline path.
Base URLs are settings, so tests point them at a loopback server replaying
recorded replies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from .http import BackendUnavailable, api_key, request_json

SERPER_URL = "https://google.serper.dev"
SERPAPI_URL = "https://serpapi.com"


def _hit(title: Any, url: Any, snippet: Any) -> dict[str, str] | None:
    if not url or not isinstance(url, str):
        return None
    return {"title": str(title or url).strip(), "url": url.strip(), "snippet": " ".join(str(snippet or "").split())}


class _Service:
    """What Serper and SerpAPI share: a key, a base URL, an HTTP client and the retry policy."""

    name = ""
    default_env = ""
    default_url = ""

    def __init__(self, api_key_env: str | None = None, base_url: str | None = None, timeout: float = 20.0,
                 retries: int = 3, backoff: float = 1.0, require_key: bool = True,
                 sleep: Callable[[float], None] = time.sleep):
        self.api_key_env = api_key_env or self.default_env
        self.key = api_key(self.name, self.api_key_env, required=require_key)
        self.base_url = (base_url or self.default_url).rstrip("/")
        self.retries, self.backoff, self.sleep = retries, backoff, sleep
        self.client = httpx.Client(timeout=timeout, trust_env=True)

    def _key(self) -> str:
        if not self.key:
            raise BackendUnavailable(f"{self.name} has no API key: set {self.api_key_env}")
        return self.key

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return request_json(self.client, method, self.base_url + path, backend=self.name, retries=self.retries,
                            backoff=self.backoff, sleep=self.sleep, **kwargs)

    def close(self) -> None:
        self.client.close()


class Serper(_Service):
    """google.serper.dev: POST /search and POST /lens with an X-API-KEY header."""

    name = "serper"
    default_env = "SERPER_API_KEY"
    default_url = SERPER_URL

    def text(self, query: str, k: int) -> list[dict[str, str]]:
        reply = self._call("POST", "/search", json={"q": query, "num": k}, headers={"X-API-KEY": self._key()})
        hits = [_hit(r.get("title"), r.get("link"), r.get("snippet")) for r in reply.get("organic") or []]
        return [h for h in hits if h][:k]

    def lens(self, image_url: str, k: int) -> list[dict[str, Any]]:
        reply = self._call("POST", "/lens", json={"url": image_url}, headers={"X-API-KEY": self._key()})
        out = []
        for r in (reply.get("organic") or [])[:k]:
            h = _hit(r.get("title"), r.get("link"), r.get("source"))
            if h:
                out.append({**h, "thumbnail_url": r.get("thumbnailUrl") or r.get("imageUrl")})
        return out


class SerpAPI(_Service):
    """serpapi.com: GET /search.json with engine=google or engine=google_lens and an api_key parameter."""

    name = "serpapi"
    default_env = "SERPAPI_API_KEY"
    default_url = SERPAPI_URL

    def text(self, query: str, k: int) -> list[dict[str, str]]:
        reply = self._call("GET", "/search.json",
                           params={"engine": "google", "q": query, "num": k, "api_key": self._key()})
        if reply.get("error") and not reply.get("organic_results"):
            if "hasn't returned any results" in str(reply["error"]):
                return []
            raise BackendUnavailable(f"serpapi: {reply['error']}")
        hits = [_hit(r.get("title"), r.get("link"), r.get("snippet")) for r in reply.get("organic_results") or []]
        return [h for h in hits if h][:k]

    def lens(self, image_url: str, k: int) -> list[dict[str, Any]]:
        reply = self._call("GET", "/search.json",
                           params={"engine": "google_lens", "url": image_url, "api_key": self._key()})
        if reply.get("error") and not reply.get("visual_matches"):
            raise BackendUnavailable(f"serpapi: {reply['error']}")
        out = []
        for r in (reply.get("visual_matches") or [])[:k]:
            h = _hit(r.get("title"), r.get("link"), r.get("source"))
            if h:
                out.append({**h, "thumbnail_url": r.get("thumbnail")})
        return out


class DuckDuckGo:
    """DuckDuckGo and friends through the maintained `ddgs` package (no key; rate limits are common)."""

    name = "ddgs"

    def __init__(self, timeout: float = 10.0, retries: int = 3, backoff: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep, client: Any = None, region: str = "us-en"):
        self.timeout, self.retries, self.backoff, self.sleep, self.region = timeout, retries, backoff, sleep, region
        self._client = client

    def _ddgs(self) -> Any:
        if self._client is None:
            try:
                from ddgs import DDGS
            except ImportError as exc:
                raise BackendUnavailable("the ddgs backend needs the ddgs package: "
                                         "pip install 'r1v4-nb[search]'") from exc
            self._client = DDGS(timeout=self.timeout)
        return self._client

    def text(self, query: str, k: int) -> list[dict[str, str]]:
        from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

        last = ""
        for attempt in range(self.retries):
            try:
                rows = self._ddgs().text(query, region=self.region, max_results=k) or []
            except RatelimitException:
                last = "ddgs is rate-limited"
            except TimeoutException:
                last = "ddgs timed out"
            except DDGSException as exc:
                if "No results found" in str(exc):
                    return []
                last = f"ddgs failed ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})"
            else:
                hits = [_hit(r.get("title"), r.get("href") or r.get("url"), r.get("body")) for r in rows]
                return [h for h in hits if h][:k]
            if attempt + 1 < self.retries:
                self.sleep(self.backoff * (2 ** attempt))
        raise BackendUnavailable(f"{last} after {self.retries} tries; try again later or use another backend")

    def close(self) -> None:
        self._client = None
