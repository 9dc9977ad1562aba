"""`r1v4-nb tool text_search | image_search | web_visit`: run a DeepSearch tool by hand; prints JSON.

Offline by default (the generated demo world); `--backend` picks an online
service. The observation is printed as JSON: text for the model, the
structured data the views use, thumbnails as file paths.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import UsageError
from ..images import Image, Provenance
from ..tools.base import ToolContext, ToolError
from . import bounded_int


def _cache_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", type=Path, metavar="FILE", help="tool cache file (default: the shared cache)")
    p.add_argument("--cache-mode", choices=["read-write", "read-only", "off"], help="default: read-write")
    p.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the backend's API key")
    p.add_argument("--base-url", metavar="URL", help="the online backend's base URL (a proxy or a test server)")


def register(tools: argparse._SubParsersAction) -> None:
    p = tools.add_parser("text_search", help="web text search (offline corpus, ddgs, serper, serpapi)")
    p.add_argument("queries", nargs="+", metavar="QUERY")
    p.add_argument("--backend", default="offline", choices=["offline", "ddgs", "serper", "serpapi"])
    p.add_argument("-k", type=bounded_int(1, 100), default=5, help="results per query (1 to 100)")
    p.add_argument("--corpus", type=Path, metavar="FILE", help="an FTS5 corpus built with 'r1v4-nb corpus build'")
    _cache_flags(p)
    p.set_defaults(func=run_text_search)

    p = tools.add_parser("image_search", help="reverse image search (offline index, serper, serpapi)")
    p.add_argument("images", nargs="+", metavar="IMG", help="image files (or http(s) URLs for online backends)")
    p.add_argument("--backend", default="offline", choices=["offline", "serper", "serpapi"])
    p.add_argument("-k", type=bounded_int(1, 100), default=5, help="matches per image (1 to 100)")
    p.add_argument("--index", type=Path, metavar="FILE", help="an image index built with 'r1v4-nb corpus images'")
    p.add_argument("--publish", metavar="TEMPLATE",
                   help="public URL of an uploaded image for Lens, e.g. 'https://host/{sha256}{ext}'")
    _cache_flags(p)
    p.set_defaults(func=run_image_search)

    p = tools.add_parser("web_visit", help="read web pages as clean text (offline mirror or live http)")
    p.add_argument("urls", nargs="+", metavar="URL")
    p.add_argument("--goal", default="", help="what to look for (chooses the passages of long pages)")
    p.add_argument("--backend", default="offline", choices=["offline", "http"])
    p.add_argument("--mirror", type=Path, metavar="FILE", help="URL-to-file map of an offline mirror")
    p.add_argument("--allow-private", action="store_true", help="allow loopback and private addresses")
    p.add_argument("--budget", type=bounded_int(500, 1_000_000), default=6000,
                   help="characters of page text in the observation (500 to 1000000)")
    p.add_argument("--cache", type=Path, metavar="FILE", help="tool cache file (default: the shared cache)")
    p.add_argument("--cache-mode", choices=["read-write", "read-only", "off"], help="default: read-write")
    p.set_defaults(func=run_web_visit)


def _context() -> ToolContext:
    workdir = Path(tempfile.mkdtemp(prefix="r1v4-search-"))
    return ToolContext(trajectory_id=uuid.uuid4().hex[:8], workdir=workdir, step=1)


def _online(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in (("api_key_env", args.api_key_env), ("base_url", args.base_url)) if v}


def _print(tool: Any, arguments: dict[str, Any], ctx: ToolContext) -> int:
    try:
        obs = tool.run(arguments, ctx)
    except ToolError as exc:
        raise UsageError(str(exc)) from exc
    finally:
        tool.close()
        if not _has_files(ctx.workdir):
            shutil.rmtree(ctx.workdir, ignore_errors=True)  # keep the folder only for images the output names
    print(json.dumps(obs.to_json(), indent=2, ensure_ascii=False))
    return 0 if obs.error is None else 1


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def run_text_search(args: argparse.Namespace) -> int:
    from ..tools.search import TextSearchTool

    tool = TextSearchTool(args.backend, k=args.k, corpus=args.corpus, cache=args.cache, cache_mode=args.cache_mode,
                          **_online(args))
    return _print(tool, {"queries": args.queries}, _context())


def run_image_search(args: argparse.Namespace) -> int:
    from ..tools.image_search import ImageSearchTool

    ctx = _context()
    names = []
    for path in args.images:
        if path.lower().startswith(("http://", "https://")):
            names.append(path)
            continue
        try:
            image = Image.from_file(path, Provenance("input", name=path))
        except ValueError as exc:
            raise UsageError(f"{exc}; pass a PNG, JPEG, WebP, GIF or BMP file") from exc
        ctx.register_image(image, path)
        names.append(path)
    tool = ImageSearchTool(args.backend, k=args.k, index=args.index, publish=args.publish, cache=args.cache,
                           cache_mode=args.cache_mode, **_online(args))
    return _print(tool, {"image_paths": names}, ctx)


def run_web_visit(args: argparse.Namespace) -> int:
    from ..tools.web import WebVisitTool

    tool = WebVisitTool(args.backend, mirror=args.mirror, allow_private=args.allow_private, budget=args.budget,
                        cache=args.cache, cache_mode=args.cache_mode)
    for url in args.urls:
        try:
            urlsplit(url)
        except ValueError as exc:
            raise UsageError(f"{url!r} is not a URL ({exc}); write it as https://host/path") from None
    arguments: dict[str, Any] = {"urls": args.urls}
    if args.goal:
        arguments["goal"] = args.goal
    return _print(tool, arguments, _context())
