"""`r1v4-nb corpus build | images` and `r1v4-nb world build`: make the offline search backends' data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import UsageError, read_text_file

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("corpus", help="build offline search data: a text corpus (FTS5) or an image index")
    cmds = p.add_subparsers(dest="corpus_command", metavar="ACTION", parser_class=type(p))
    cmds.required = True
    b = cmds.add_parser("build", help="index a folder of HTML/Markdown/text files (or a JSONL of pages)")
    b.add_argument("source", type=Path, metavar="DIR|FILE.jsonl")
    b.add_argument("--out", type=Path, help="corpus file (default: DIR/corpus.sqlite)")
    b.add_argument("--base-url", help="URL of the folder's root (default: file:// URLs)")
    b.set_defaults(func=run_build)
    i = cmds.add_parser("images", help="index a folder of images, each linked to a page")
    i.add_argument("source", type=Path, metavar="DIR")
    i.add_argument("--out", type=Path, help="index file (default: DIR/images.sqlite)")
    i.add_argument("--pages", type=Path, metavar="FILE.jsonl",
                   help='lines {"image": "rel/path.png", "url": ..., "title": ...} (default: DIR/images.jsonl if '
                        "present; otherwise each image links to its own file URL)")
    i.set_defaults(func=run_images)

    w = sub.add_parser("world", help="generate the offline demo world (pages, pictures, corpus, index, questions)")
    wc = w.add_subparsers(dest="world_command", metavar="ACTION", parser_class=type(w))
    wc.required = True
    g = wc.add_parser("build", help="generate a world into OUT (default: the cache folder)")
    g.add_argument("out", type=Path, nargs="?", metavar="OUT")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--per-kind", type=int, default=80, help="places, people and objects each")
    g.set_defaults(func=run_world)
    from .agentbuild import add_world_tasks

    add_world_tasks(wc)


def _progress(what: str):  # noqa: ANN202
    return lambda n: print(f"{what}: {n}", file=sys.stderr)


def run_build(args: argparse.Namespace) -> int:
    from itertools import chain

    from ..tools.backends.corpus import TEXT_SUFFIXES, Corpus, pages_from_path

    out = args.out or ((args.source if args.source.is_dir() else args.source.parent) / "corpus.sqlite")
    pages = pages_from_path(args.source, args.base_url)
    first = next(pages, None)
    if first is None:  # an empty corpus finds nothing, silently: almost surely the wrong folder
        raise UsageError(f"no pages in {args.source} (files ending {', '.join(sorted(TEXT_SUFFIXES))}, "
                         "or JSONL lines); nothing indexed")
    corpus = Corpus.build(chain([first], pages), out, _progress("pages indexed"))
    print(json.dumps({"corpus": str(out), "pages": len(corpus), "id": corpus.id}))
    return 0


def run_images(args: argparse.Namespace) -> int:
    from ..tools.backends.image_index import ImageIndex

    if not args.source.is_dir():
        raise UsageError(f"{args.source} is not a folder of images")
    pages_file = args.pages or (args.source / "images.jsonl")
    links: dict[str, tuple[str, str]] = {}
    if pages_file.is_file():
        lines = read_text_file(pages_file, 'a JSONL file of {"image", "url", "title"} lines').splitlines()
        for n, line in enumerate(lines, 1):
            if line.strip():
                try:
                    d = json.loads(line)
                    links[str(d["image"])] = (str(d["url"]), str(d.get("title") or d["url"]))
                except (ValueError, KeyError, TypeError) as exc:
                    raise UsageError(f"{pages_file}:{n}: expected {{\"image\", \"url\", \"title\"}} ({exc})") from exc
    files = sorted(p for p in args.source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"no images (.png, .jpg, .webp, .gif, .bmp) under {args.source}")
    entries = []
    for f in files:
        rel = f.relative_to(args.source).as_posix()
        url, title = links.get(rel, (f.resolve().as_uri(), f.stem))
        entries.append((f, url, title))
    out = args.out or (args.source / "images.sqlite")
    index = ImageIndex.build(entries, out, _progress("images indexed"))
    print(json.dumps({"index": str(out), "images": len(index), "id": index.id}))
    return 0


def run_world(args: argparse.Namespace) -> int:
    from ..world import DEFAULT_PER_KIND, build_world, ensure_world

    if args.per_kind < 2:
        raise UsageError("--per-kind must be at least 2")
    if args.out is None:
        world = ensure_world(seed=args.seed, per_kind=args.per_kind or DEFAULT_PER_KIND)
    else:
        world = build_world(args.out, args.seed, args.per_kind)
    print(json.dumps({"root": str(world.root), "corpus": str(world.corpus), "image_index": str(world.image_index),
                      "mirror": str(world.mirror), "questions": str(world.questions),
                      "n_questions": len(world.load_questions())}))
    return 0
