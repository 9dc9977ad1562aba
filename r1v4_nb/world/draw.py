"""Procedural pictures for the demo world: each entity gets its own, drawn from its seed.

Reverse image search needs pictures that differ from each other in many small,
cornered details (so local features find a crop) and in overall layout (so
perceptual hashes tell near-duplicates apart). Places are landscapes with
buildings, objects are emblem-like compositions, people are stylised portraits;
all carry seeded confetti of polygons and stripes.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

SIZE = (320, 240)


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


def _polygon(rng: np.random.Generator, cx: float, cy: float, r: float, sides: int) -> list[tuple[float, float]]:
    start = rng.uniform(0, 2 * math.pi)
    return [(cx + r * rng.uniform(0.6, 1.0) * math.cos(start + 2 * math.pi * i / sides),
             cy + r * rng.uniform(0.6, 1.0) * math.sin(start + 2 * math.pi * i / sides)) for i in range(sides)]


def _confetti(d: ImageDraw.ImageDraw, rng: np.random.Generator, n: int, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    for _ in range(n):
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        r = rng.uniform(4, 16)
        kind = rng.integers(0, 3)
        if kind == 0:
            d.polygon(_polygon(rng, cx, cy, r, int(rng.integers(3, 7))), fill=_colour(rng), outline=_colour(rng, 0, 80))
        elif kind == 1:
            d.rectangle([cx - r, cy - r / 2, cx + r, cy + r / 2], fill=_colour(rng), outline=_colour(rng, 0, 80))
        else:
            d.line([(cx - r, cy - r), (cx + r, cy + r)], fill=_colour(rng), width=int(rng.integers(2, 5)))


def _gradient(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    t = np.linspace(0, 1, SIZE[1])[:, None, None]
    arr = (np.array(top)[None, None, :] * (1 - t) + np.array(bottom)[None, None, :] * t)
    return Image.fromarray(np.repeat(arr, SIZE[0], axis=1).astype(np.uint8), "RGB")


def draw_place(seed: int) -> Image.Image:
    """A landscape: sky, a ridge of mountains, a row of buildings with windows, a sun."""
    rng = np.random.default_rng(seed)
    im = _gradient(_colour(rng, 90, 230), _colour(rng, 20, 160))
    d = ImageDraw.Draw(im)
    sx, sy = rng.uniform(30, 290), rng.uniform(20, 70)
    d.ellipse([sx - 18, sy - 18, sx + 18, sy + 18], fill=_colour(rng, 180, 256))
    ridge = [(0, 240)] + [(x, float(rng.uniform(60, 150))) for x in range(0, 340, int(rng.integers(25, 50)))] + [(320, 240)]
    d.polygon(ridge, fill=_colour(rng, 30, 140), outline=_colour(rng, 0, 60))
    x = float(rng.uniform(-10, 20))
    while x < 320:
        w, h = float(rng.uniform(18, 48)), float(rng.uniform(30, 110))
        d.rectangle([x, 240 - h, x + w, 240], fill=_colour(rng, 40, 220), outline=(20, 20, 20))
        if rng.random() < 0.5:
            d.polygon([(x, 240 - h), (x + w / 2, 240 - h - rng.uniform(8, 30)), (x + w, 240 - h)], fill=_colour(rng))
        ww, wh = float(rng.uniform(2, 7)), float(rng.uniform(3, 9))
        for wy in np.arange(240 - h + rng.uniform(3, 9), 232, wh + rng.uniform(4, 9)):
            for wx in np.arange(x + rng.uniform(2, 6), x + w - ww - 2, ww + rng.uniform(3, 7)):
                if rng.random() < 0.7:
                    d.rectangle([wx, wy, wx + ww, wy + wh], fill=_colour(rng, 150, 256))
        x += w + float(rng.uniform(2, 14))
    _confetti(d, rng, 25, (0, 0, 320, 150))
    return im


def draw_object(seed: int) -> Image.Image:
    """An emblem: concentric polygons, radial spokes and a patterned border."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", SIZE, _colour(rng, 0, 256))
    d = ImageDraw.Draw(im)
    for y in range(0, 240, int(rng.integers(8, 20))):
        d.line([(0, y), (320, y + rng.uniform(-30, 30))], fill=_colour(rng), width=int(rng.integers(1, 4)))
    cx, cy = rng.uniform(120, 200), rng.uniform(90, 150)
    for r in sorted(rng.uniform(20, 100, int(rng.integers(3, 6))), reverse=True):
        d.polygon(_polygon(rng, cx, cy, r, int(rng.integers(3, 10))), fill=_colour(rng), outline=_colour(rng, 0, 60))
    for i in range(int(rng.integers(6, 16))):
        a = 2 * math.pi * i / 16 + rng.uniform(0, 0.3)
        r = rng.uniform(40, 110)
        d.line([(cx, cy), (cx + r * math.cos(a), cy + r * math.sin(a))], fill=_colour(rng), width=2)
    _confetti(d, rng, 40, (0, 0, 320, 240))
    return im


def draw_person(seed: int) -> Image.Image:
    """A stylised portrait: patterned backdrop, head and shoulders, a few accessories."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", SIZE, _colour(rng, 60, 220))
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(25, 45))):
        gx, gy, r = rng.uniform(0, 320), rng.uniform(0, 240), rng.uniform(6, 22)
        d.polygon(_polygon(rng, gx, gy, r, int(rng.integers(4, 9))), fill=_colour(rng, 40, 256))
    cx, top = float(rng.uniform(110, 210)), float(rng.uniform(40, 80))
    fw, fh = float(rng.uniform(32, 52)), float(rng.uniform(45, 65))
    d.polygon([(cx - rng.uniform(70, 110), 240), (cx - rng.uniform(40, 70), top + 2 * fh),
               (cx + rng.uniform(40, 70), top + 2 * fh), (cx + rng.uniform(70, 110), 240)], fill=_colour(rng, 0, 200))
    d.ellipse([cx - fw, top, cx + fw, top + 2 * fh], fill=_colour(rng, 150, 256), outline=_colour(rng, 0, 60), width=2)
    ey, gap, er = top + fh * rng.uniform(0.7, 0.95), fw * rng.uniform(0.3, 0.55), float(rng.uniform(4, 10))
    for ex in (cx - gap, cx + gap):
        d.ellipse([ex - er, ey - er * 0.7, ex + er, ey + er * 0.7], fill=_colour(rng, 200, 256), outline=(0, 0, 0))
        d.ellipse([ex - er / 2, ey - er / 3, ex + er / 2, ey + er / 3], fill=_colour(rng, 0, 120))
    my = top + fh * rng.uniform(1.3, 1.6)
    d.arc([cx - fw * 0.5, my - 12, cx + fw * 0.5, my + 12], rng.uniform(0, 40), rng.uniform(140, 180),
          fill=_colour(rng, 60, 160), width=int(rng.integers(2, 5)))
    d.polygon(_polygon(rng, cx, top, fw * rng.uniform(0.7, 1.2), int(rng.integers(3, 8))), fill=_colour(rng),
              outline=(0, 0, 0))
    _confetti(d, rng, 20, (0, 0, 320, 240))
    return im


DRAW = {"place": draw_place, "object": draw_object, "person": draw_person}
