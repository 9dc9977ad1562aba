"""Latency of the offline search backends and of the tool cache, measured side by side in one run.

Run: .venv/bin/python benchmarks/search.py [--pages 10000 100000] [--images 1000 10000] [--queries N]
                                           [--only cache|text|images]
Prints:
- FTS5 text-search latency (median, p95) over synthetic corpora of the given sizes, the tiered query
  (the default) against ranking every page with any term, their top-5 overlap and how often each
  finds the page the query was drawn from;
- image-index query latency at the given sizes against a brute-force scan of the same images
  (every image matched and checked geometrically), and their ratio, with the top-1 accuracy of both
  on crops of 1/4 area;
- cache-hit against cache-miss latency of text_search, image_search and web_visit on the demo world.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image as PILImage

from r1v4_nb.images import Image
from r1v4_nb.tools.backends.corpus import Corpus, Page
from r1v4_nb.tools.backends.image_index import ImageIndex
from r1v4_nb.tools.base import ToolContext
from r1v4_nb.tools.cache import ToolCache
from r1v4_nb.world import build_world
from r1v4_nb.world.draw import DRAW


def ms(xs: list[float]) -> str:
    xs = sorted(xs)
    p95 = xs[max(0, math.ceil(0.95 * len(xs)) - 1)]
    return f"median {statistics.median(xs) * 1e3:8.2f} ms   p95 {p95 * 1e3:8.2f} ms"


def timed(fn, *args) -> float:  # noqa: ANN001
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def synthetic_pages(n: int, seed: int = 0):  # noqa: ANN201
    rng = random.Random(seed)
    syllables = [f"{a}{b}" for a in "bcdfghklmnprstvz" for b in "aeiou"]  # 80 syllables
    vocab = [a + b + c for a in syllables[:40] for b in syllables for c in syllables[:10]]  # 32,000 words
    cum = list(itertools.accumulate(1 / (i + 1) for i in range(len(vocab))))  # Zipf-like word frequencies
    for i in range(n):
        words = rng.choices(vocab, cum_weights=cum, k=120)
        yield Page(f"https://bench.example/{i}", " ".join(words[:5]), " ".join(words))


def bench_fts(sizes: list[int], queries: int, tmp: Path) -> None:
    print("FTS5 text search (BM25, 5 results, 3 words of one page as the query), goal: median < 10 ms at 100k")
    print("  tiered: every term, then all but one, then any (the default); exhaustive: every page with any")
    print("  term ranked (before the tiers); overlap: shared top-5 pages; source: the query's page in the top 5")
    rng = random.Random(1)
    for n in sizes:
        t = time.perf_counter()
        corpus = Corpus.build(synthetic_pages(n), tmp / f"fts-{n}.sqlite")
        built = time.perf_counter() - t
        pages = list(synthetic_pages(min(n, 2000), seed=0))
        picks = [rng.randrange(len(pages)) for _ in range(queries)]
        qs = [(" ".join(rng.sample(pages[i].text.split(), 3)), pages[i].url) for i in picks]
        corpus.search(qs[0][0])
        print(f"  {n:>7} pages (built in {built:.1f} s, load {os.getloadavg()[0]:.1f}):")
        found = {}
        for name, exhaustive in (("tiered", False), ("exhaustive", True)):
            lat, hits, tops = [], 0, []
            for q, url in qs:
                t = time.perf_counter()
                top = [h["url"] for h in corpus.search(q, 5, exhaustive=exhaustive)]
                lat.append(time.perf_counter() - t)
                hits += url in top
                tops.append(top)
            found[name] = tops
            print(f"    {name:<10} {ms(lat)}   source in top 5: {hits}/{len(qs)}")
        overlap = [len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(found["tiered"], found["exhaustive"],
                                                                         strict=True)]
        print(f"    top-5 overlap tiered vs exhaustive: mean {statistics.mean(overlap):.2f}, "
              f"all five shared in {sum(o == 1 for o in overlap)}/{len(overlap)} queries")
        corpus.close()


def bench_images(sizes: list[int], queries: int, tmp: Path) -> None:
    print("Image index: hash tables + geometric check vs brute-force scan (queries: crops of 1/4 area)")
    folder = tmp / "images"
    folder.mkdir(exist_ok=True)
    kinds = list(DRAW)
    largest = max(sizes)
    t = time.perf_counter()
    for i in range(largest):
        path = folder / f"{i:06d}.png"
        if not path.exists():
            DRAW[kinds[i % 3]](10_000_000 + i).save(path, compress_level=1)
        if i and i % 2000 == 0:
            print(f"  drew {i} pictures", file=sys.stderr)
    print(f"  drew {largest} pictures in {time.perf_counter() - t:.1f} s")
    rng = random.Random(2)
    for n in sizes:
        t = time.perf_counter()
        index = ImageIndex.build(((folder / f"{i:06d}.png", f"https://img.example/{i}", str(i)) for i in range(n)),
                                 tmp / f"img-{n}.sqlite")
        built = time.perf_counter() - t
        picks = rng.sample(range(n), queries)
        crops = []
        for i in picks:
            im = PILImage.open(folder / f"{i:06d}.png").convert("RGB")
            x, y = rng.randrange(0, 160), rng.randrange(0, 120)
            crops.append((i, im.crop((x, y, x + 160, y + 120))))
        index.search(crops[0][1])
        fast, slow, hit_fast, hit_slow = [], [], 0, 0
        for i, crop in crops:
            t = time.perf_counter()
            found = index.search(crop, k=1)
            fast.append(time.perf_counter() - t)
            hit_fast += bool(found and found[0]["url"].endswith(f"/{i}"))
        for i, crop in crops[: max(2, queries // 4)]:
            t = time.perf_counter()
            found = index.search(crop, k=1, exhaustive=True)
            slow.append(time.perf_counter() - t)
            hit_slow += bool(found and found[0]["url"].endswith(f"/{i}"))
        ratio = statistics.median(slow) / statistics.median(fast)
        print(f"  {n:>6} images (built in {built:.1f} s):")
        print(f"      index  {ms(fast)}   top-1 {hit_fast}/{len(fast)}")
        print(f"      brute  {ms(slow)}   top-1 {hit_slow}/{len(slow)}")
        print(f"      brute / index = {ratio:.1f}x")


def bench_cache(tmp: Path, queries: int) -> None:
    from r1v4_nb.tools.image_search import ImageSearchTool
    from r1v4_nb.tools.search import TextSearchTool
    from r1v4_nb.tools.web import WebVisitTool

    print("Tool cache on the offline backends (demo world, 240 pages): miss (backend + store) vs hit")
    world = build_world(tmp / "world", quiet=True)
    cache = ToolCache(tmp / "tools.sqlite")
    entities = world.load_entities()[:queries]
    qs = [q for q in world.load_questions() if q["image"]][:queries]
    ctx = ToolContext("bench", tmp)
    for q in qs:
        ctx.register_image(Image.from_file(world.root / q["image"]), q["id"])
    cases = {
        "text_search": (TextSearchTool(corpus=world.corpus, cache=cache),
                        [{"queries": [e["title"] + " history"]} for e in entities]),
        "image_search": (ImageSearchTool(index=world.image_index, cache=cache),
                         [{"image_paths": [q["id"]]} for q in qs]),
        "web_visit": (WebVisitTool(mirror=world.mirror, cache=cache), [{"urls": [e["url"]]} for e in entities]),
    }
    for name, (tool, calls) in cases.items():
        tool.run(calls[0], ctx)  # open the backend (corpus, index, mirror) outside the timing
        misses = [timed(tool.run, c, ctx) for c in calls[1:]]
        hits = [timed(tool.run, c, ctx) for c in calls[1:]]
        ratio = statistics.median(misses) / statistics.median(hits)
        print(f"  {name:<12} miss {ms(misses)}\n  {'':<12} hit  {ms(hits)}   miss / hit = {ratio:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--images", type=int, nargs="+", default=[1_000, 10_000])
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--only", choices=["cache", "text", "images"], help="run one section")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="r1v4-bench-search-") as d:
        tmp = Path(d)
        if args.only in (None, "cache"):
            bench_cache(tmp, args.queries)
        if args.only in (None, "text"):
            bench_fts(args.pages, args.queries * 5, tmp)
        if args.only in (None, "images"):
            bench_images(args.images, args.queries, tmp)


if __name__ == "__main__":
    main()
