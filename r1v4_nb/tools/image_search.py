"""image_search: reverse image search on the input image or a crop the code tool saved.

Backends: "offline" (the demo world's image index: near-duplicates, crops,
resizes, small rotations and recolourings) and "serper" / "serpapi" (Google
Lens with a key). Lens fetches the picture from a URL, so a local picture must
be published first: `publish` is a URL template ("https://host/{sha256}{ext}")
for a folder the user uploads to, or a callable that uploads an Image and
returns its URL. Results go through the shared cache, keyed by the picture's hash.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..images import Image, Provenance
from ..records import Observation
from .backends.http import BackendUnavailable
from .base import Tool, ToolContext, ToolError, left_out_note, string_list
from .cache import NotCached, ToolCache, open_cache

BACKENDS = ("offline", "serper", "serpapi")
_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp", "image/bmp": ".bmp"}


class ImageSearchTool(Tool):
    name = "image_search"
    description = ("Reverse image search: find web pages showing the given images (the input image or a crop "
                   "you saved). Returns page titles, URLs and similarities.")
    parameters = {
        "type": "object",
        "properties": {"image_paths": {"type": "array", "items": {"type": "string"},
                                       "description": "names or paths of images to search for"}},
        "required": ["image_paths"],
    }

    def __init__(self, backend: str = "offline", k: int = 5, index: str | Path | None = None,
                 threshold: float = 0.5, publish: str | Callable[[Image], str] | None = None,
                 max_images: int = 4, cache: ToolCache | str | Path | None = None, cache_mode: str | None = None,
                 **settings: Any):
        if backend not in BACKENDS:
            raise UsageError(f"unknown image_search backend {backend!r}; choose from: {', '.join(BACKENDS)}")
        if k < 1:
            raise UsageError(f"k must be at least 1 (matches per image), got {k}")
        self.cache = open_cache(cache, cache_mode)
        self.backend, self.k, self.threshold, self.max_images = backend, k, threshold, max_images
        self.publish = publish
        self._index_path = index
        self._index: Any = None
        self._service: Any = None
        if backend != "offline":
            from .backends import online

            cls = online.Serper if backend == "serper" else online.SerpAPI
            keep = ("api_key_env", "base_url", "timeout", "retries", "backoff", "sleep")
            self._service = cls(require_key=self.cache.mode != "read-only",
                                **{k: v for k, v in settings.items() if k in keep})

    def index(self) -> Any:
        if self._index is None:
            from .backends.image_index import ImageIndex

            if self._index_path is None:
                from ..paths import offline_data

                self._index_path = offline_data().image_index
            self._index = ImageIndex(self._index_path)
        return self._index

    def settings(self) -> dict[str, Any]:
        return {"backend": self.backend, "k": self.k, "threshold": self.threshold, **self.cache.settings()}

    def _backend_id(self) -> str:
        return f"offline:{self.index().id}" if self.backend == "offline" else self.backend

    def _image_url(self, name: str, image: Image | None) -> str:
        if image is None:
            return name  # an http(s) URL the model passed
        if callable(self.publish):
            return self.publish(image)
        if isinstance(self.publish, str):
            return self.publish.format(sha256=image.sha256, ext=_EXT.get(image.mime, ".png"), name=image.path.name)
        raise ToolError(f"{self.backend}'s Google Lens needs the picture at a public URL: construct the tool with "
                        "publish='https://your.host/{sha256}{ext}' (a folder you upload to) or a callable "
                        "that uploads an Image and returns its URL")

    def _offline(self, image: Image) -> dict[str, Any]:
        matches = []
        for m in self.index().search(image.path, self.k, self.threshold):
            thumb = self.cache.put_blob(self.index().thumbnail(m["index"])) if self.cache.mode == "read-write" else None
            matches.append({"title": m["title"], "url": m["url"], "similarity": m["similarity"], "how": m["how"],
                            "thumb": thumb, "index_row": None if thumb else m["index"]})
        return {"matches": matches}

    def _online(self, url: str) -> dict[str, Any]:
        hits = self._service.lens(url, self.k)
        return {"matches": [{"title": h["title"], "url": h["url"], "similarity": None, "how": h["snippet"],
                             "thumbnail_url": h.get("thumbnail_url"), "thumb": None} for h in hits]}

    def search(self, name: str, ctx: ToolContext) -> dict[str, Any]:
        """One picture's matches through the cache: {"image", "matches"} or {"image", "error"}."""
        is_url = name.lower().startswith(("http://", "https://"))
        image = None if is_url else ctx.resolve_image(name)
        if image is None and (not is_url or self.backend == "offline"):
            known = ", ".join(sorted({k for k in ctx.images if "/" not in k})[:6]) or "none"
            return {"image": name, "matches": [], "error": f"no image named {name!r} (known images: {known}; "
                                                           "a crop must be saved by the code tool first)"}
        key = {"image": image.sha256 if image else name, "k": self.k, "threshold": self.threshold}
        try:
            if self.backend == "offline":
                value = self.cache.fetch(self.name, self._backend_id(), key, lambda: self._offline(image))
            else:
                value = self.cache.fetch(self.name, self._backend_id(), key,
                                         lambda: self._online(self._image_url(name, image)))
        except (NotCached, BackendUnavailable, ToolError) as exc:
            return {"image": name, "matches": [], "error": str(exc)}
        return {"image": name, "matches": value["matches"]}

    def _thumbnail(self, match: dict[str, Any], ctx: ToolContext) -> Image | None:
        prov = Provenance("search", step=ctx.step, name=match["url"])
        if match.get("thumb") and self.cache.blob(match["thumb"]).is_file():
            return Image.from_file(self.cache.blob(match["thumb"]), prov)
        if match.get("index_row") is not None and self.backend == "offline":
            return Image.from_bytes(self.index().thumbnail(match["index_row"]), ctx.workdir / "thumbnails", prov)
        return None

    def run(self, arguments: dict[str, Any], ctx: ToolContext) -> Observation:
        names = list(dict.fromkeys(string_list(arguments, "image_paths", self.max_images)))
        results = [self.search(n, ctx) for n in names]
        lines: list[str] = []
        images: list[Image] = []
        matches: list[dict[str, Any]] = []
        for qn, item in enumerate(results, 1):
            lines.append(f"Image {qn} ({item['image']}):")
            if item.get("error"):
                lines.append(f"  Error: {item['error']}")
                continue
            if not item["matches"]:
                lines.append("  No matching pages found.")
            for rn, m in enumerate(item["matches"], 1):
                thumb = self._thumbnail(m, ctx)
                if thumb is not None:
                    images.append(thumb)
                sim = f" (similarity {m['similarity']:.2f})" if m.get("similarity") is not None else ""
                lines.append(f"  [{qn}.{rn}] {m['title']}{sim}\n      {m['url']}")
                matches.append({"image": item["image"], "title": m["title"], "url": m["url"],
                                "similarity": m.get("similarity"), "how": m.get("how"),
                                "thumbnail": len(images) - 1 if thumb is not None else None,
                                "thumbnail_url": m.get("thumbnail_url")})
        note = left_out_note(arguments, "image_paths", self.max_images)
        if note:
            lines.append(note)
        errors = [r["error"] for r in results if r.get("error")]
        return Observation(text="\n".join(lines), images=images,
                           error=errors[0] if len(errors) == len(results) else None,
                           data={"backend": self.backend, "matches": matches,
                                 "errors": [{"image": r["image"], "error": r["error"]} for r in results
                                            if r.get("error")]})

    def close(self) -> None:
        if self._service is not None:
            self._service.close()
        self.cache.close()
