"""Seeded task generators for training and evaluating agents that crop, zoom and search.

Four kinds, written as a task file (JSON Lines, images beside it) that the evaluation
runner and the expert policy both read:

- zoom: a 1024 px scene with coloured plaques, each carrying a two-character code in a font
  small enough (about 3 px tall at a 128 px view) that it cannot be read without cropping;
  a crop of the plaque seen at the scene's own resolution (17-22 px glyphs) makes it readable.
  Every plaque sits inside one cell of a 4x4 grid; the question names the plaque by colour.
- search: a picture of an object of the offline world; its facts are on the object's page
  (image_search on the whole image, then web_visit).
- interleaved: the object's picture is inset small into a cell of a scene whose background is
  the picture of another entity, so an image search on the whole image finds the wrong page;
  crop the cell first, search the crop, visit the page, answer.
- locate: a zoom scene, asking which grid cell holds the named plaque (the answer is the cell,
  "C2"): a skill the tutorial teaches the shipped model on top of what it knows.

`level` sets the difficulty of zoom scenes (a curriculum): 0 plain white, one plaque, no
distractors; 1 textured background and shapes; 2 (the evaluation level) several plaques of
different colours, shapes, size and colour jitter.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CODE_DIGITS", "CODE_LETTERS", "GRID", "KINDS", "LEVELS", "PLAQUE_COLOURS", "SCENE", "Task", "cell_box", "cell_name",
    "generate", "make_locate_task", "make_search_task", "make_zoom_task", "write_tasks",
]

KINDS = ("zoom", "search", "interleaved", "locate")
LEVELS = (0, 1, 2)  # zoom difficulty: plain page, one plaque; textured page and shapes; several plaques
SCENE = 1024  # pixels on each side of a scene
GRID = 4  # cells per side; cell names are column letter + row number: A1 (top left) .. D4
PLAQUE_COLOURS = {
    "red": (205, 40, 40), "green": (40, 150, 60), "blue": (45, 80, 210),
    "yellow": (235, 200, 40), "purple": (135, 60, 175), "orange": (240, 130, 30),
}
# Distractor shapes never take a plaque colour, so "the red plaque" is always one object.
SHAPE_COLOURS = [(120, 120, 120), (140, 95, 60), (235, 150, 190), (60, 170, 170), (40, 40, 40), (170, 200, 120)]
CODE_LETTERS = "AEHKMRTX"
CODE_DIGITS = "23456789"
SEARCH_FACTS = {  # fact of an object page -> the question that asks it
    "material": "What is the object in this picture made of?",
    "made": "In what year was the object in this picture made?",
}
INTERLEAVED_FACTS = {
    "material": "What is the small object in the picture inset made of?",
    "made": "In what year was the small object in the picture inset made?",
}


@dataclass
class Task:
    """One task record, in the task-file format (images relative to the file's folder)."""

    id: str
    question: str
    images: list[str]
    answer: str
    category: str
    split: str = "test"
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "question": self.question, "images": self.images, "answer": self.answer,
                "answers": [self.answer], "category": self.category, "split": self.split, "meta": self.meta}


def cell_name(col: int, row: int) -> str:
    """'A1' for the top-left cell, 'D4' for the bottom-right one."""
    return f"{'ABCDEFGH'[col]}{row + 1}"


def cell_box(cell: str, grid: int = GRID) -> tuple[float, float, float, float]:
    """The cell's box as fractions of the image (x0, y0, x1, y1)."""
    col, row = "ABCDEFGH".index(cell[0]), int(cell[1:]) - 1
    return col / grid, row / grid, (col + 1) / grid, (row + 1) / grid


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)  # Pillow's bundled scalable font: the same on every machine


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)  # type: ignore[return-value]


def _background(rng: random.Random, level: int):
    import numpy as np
    from PIL import Image, ImageDraw

    if level == 0:
        return Image.new("RGB", (SCENE, SCENE), (255, 255, 255))
    base = np.array([rng.randint(185, 245) for _ in range(3)], dtype=np.float32)
    nrng = np.random.default_rng(rng.randrange(2**32))
    small = nrng.normal(0, 18, (16, 16, 3)).astype(np.float32)
    noise = np.asarray(Image.fromarray(np.clip(small + 128, 0, 255).astype(np.uint8)).resize(
        (SCENE, SCENE), Image.Resampling.BICUBIC), dtype=np.float32) - 128
    im = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(rng.randint(3, 8)):
        c = tuple(int(v) for v in base - rng.randint(20, 60))
        d.line([(rng.randrange(SCENE), rng.randrange(SCENE)), (rng.randrange(SCENE), rng.randrange(SCENE))],
               fill=c, width=rng.randint(2, 6))
    return im


def _shapes(im, rng: random.Random, n: int) -> None:
    from PIL import ImageDraw

    d = ImageDraw.Draw(im)
    for _ in range(n):
        r = rng.randint(12, 40)
        x, y = rng.randint(r, SCENE - r), rng.randint(r, SCENE - r)
        colour = _jitter(rng.choice(SHAPE_COLOURS), rng, 15)
        kind = rng.choice(("circle", "triangle", "ellipse", "bar"))
        if kind == "circle":
            d.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        elif kind == "ellipse":
            d.ellipse((x - r, y - r // 2, x + r, y + r // 2), fill=colour)
        elif kind == "triangle":
            d.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour)
        else:
            d.rectangle((x - r, y - 4, x + r, y + 4), fill=colour)


def _plaque(im, rng: random.Random, cell: str, colour: tuple[int, int, int], code: str, level: int) -> list[int]:
    """Draw a plaque with `code` inside `cell`; returns its box in pixels."""
    from PIL import ImageDraw

    size = 28 if level == 0 else rng.randint(24, 30)
    font = _font(size)
    d = ImageDraw.Draw(im)
    tx0, ty0, tx1, ty1 = d.textbbox((0, 0), code, font=font)
    pad_x, pad_y = rng.randint(10, 16), rng.randint(8, 12)
    w, h = tx1 - tx0 + 2 * pad_x, ty1 - ty0 + 2 * pad_y
    cx0, cy0, cx1, cy1 = (round(v * SCENE) for v in cell_box(cell))
    margin = 10
    x = rng.randint(cx0 + margin, cx1 - margin - w)
    y = rng.randint(cy0 + margin, cy1 - margin - h)
    fill = colour if level == 0 else _jitter(colour, rng, 12)
    dark = sum(fill) / 3 < 150 or fill[1] < 100
    ink = (250, 250, 250) if dark else (20, 20, 20)
    border = tuple(max(0, c - 60) for c in fill)
    d.rectangle((x, y, x + w, y + h), fill=fill, outline=border, width=3)
    d.text((x + pad_x - tx0, y + pad_y - ty0), code, font=font, fill=ink)
    return [x, y, x + w, y + h]


def make_locate_task(seed: int, index: int, level: int = 2) -> tuple[Task, Any]:
    """A zoom scene asking for the grid cell of the named plaque."""
    task, im = make_zoom_task(seed, index, level, _salt="locate")
    colour, cell = task.meta["colour"], task.meta["cell"]
    task_id = task.id.replace("zoom-", "locate-", 1)
    meta = {**task.meta, "kind": "locate", "tool_path": []}
    return Task(task_id, f"Which grid cell holds the {colour} plaque? Columns A-D, rows 1-4.",
                [f"images/{task_id}.jpg"], cell, "locate", meta=meta), im


def make_zoom_task(seed: int, index: int, level: int = 2, _salt: str = "zoom") -> tuple[Task, Any]:
    """One zoom task and its scene (a PIL image); a pure function of (seed, index, level)."""
    rng = random.Random(f"{_salt}/{seed}/{index}/{level}")
    im = _background(rng, level)
    if level >= 1:
        _shapes(im, rng, rng.randint(4, 12))
    n_plaques = 1 if level <= 1 else rng.randint(2, 4)
    cells = rng.sample([cell_name(c, r) for r in range(GRID) for c in range(GRID)], n_plaques)
    colours = rng.sample(sorted(PLAQUE_COLOURS), n_plaques)
    codes: list[str] = []
    while len(codes) < n_plaques:
        code = rng.choice(CODE_LETTERS) + rng.choice(CODE_DIGITS)
        if code not in codes:
            codes.append(code)
    plaques = []
    for cell, colour, code in zip(cells, colours, codes, strict=True):
        box = _plaque(im, rng, cell, PLAQUE_COLOURS[colour], code, level)
        plaques.append({"cell": cell, "colour": colour, "code": code, "box": box})
    target = plaques[0]
    task_id = f"zoom-s{seed}-l{level}-{index:05d}"
    task = Task(task_id, f"What code is on the {target['colour']} plaque?", [f"images/{task_id}.jpg"],
                target["code"], "zoom", meta={
                    "seed": seed, "kind": "zoom", "level": level, "grid": GRID, "cell": target["cell"],
                    "box": target["box"], "colour": target["colour"], "plaques": plaques,
                    "tool_path": ["code"]})
    return task, im


def _objects(world: Any) -> list[dict[str, Any]]:
    return [e for e in world.load_entities() if e["kind"] == "object"]


def make_search_task(seed: int, index: int, world: Any, kind: str = "search") -> tuple[Task, Any]:
    """A search or interleaved task over the offline world: a pure function of (seed, index, world)."""
    from PIL import Image

    rng = random.Random(f"{kind}/{seed}/{index}")
    entities = world.load_entities()
    obj = rng.choice(_objects(world))
    fact = rng.choice(sorted(SEARCH_FACTS))
    answer = str(obj["facts"][fact])
    picture = Image.open(world.root / obj["image"]).convert("RGB")
    task_id = f"{kind}-s{seed}-{index:05d}"
    meta: dict[str, Any] = {"seed": seed, "kind": kind, "url": obj["url"], "title": obj["title"], "fact": fact}
    if kind == "search":
        w, h = picture.size
        im = picture.resize((w * 2, h * 2), Image.Resampling.BICUBIC)
        meta["tool_path"] = ["image_search", "web_visit"]
        return Task(task_id, SEARCH_FACTS[fact], [f"images/{task_id}.png"], answer, "search", meta=meta), im
    others = [e for e in entities if e["url"] != obj["url"] and e["kind"] != "object"]
    decoy = rng.choice(others)
    im = Image.open(world.root / decoy["image"]).convert("RGB").resize((SCENE, SCENE), Image.Resampling.BICUBIC)
    cell = cell_name(rng.randrange(GRID), rng.randrange(GRID))
    cx0, cy0, cx1, cy1 = (round(v * SCENE) for v in cell_box(cell))
    inset = picture.resize((cx1 - cx0, cy1 - cy0), Image.Resampling.BICUBIC)
    im.paste(inset, (cx0, cy0))
    meta.update({"cell": cell, "grid": GRID, "box": [cx0, cy0, cx1, cy1], "decoy_url": decoy["url"],
                 "tool_path": ["code", "image_search", "web_visit"]})
    return Task(task_id, INTERLEAVED_FACTS[fact], [f"images/{task_id}.png"], answer, "interleaved", meta=meta), im


def generate(kind: str, seed: int, n: int, *, level: int = 2, world: Any = None) -> list[tuple[Task, Any]]:
    """`n` tasks of `kind` with their images (PIL), in order."""
    from ..errors import UsageError

    if kind not in KINDS:
        raise UsageError(f"unknown task kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind in ("zoom", "locate"):
        if level not in LEVELS:
            raise UsageError(f"zoom level {level} does not exist; use 0 (easy), 1 or 2 (the full task)")
        make = make_zoom_task if kind == "zoom" else make_locate_task
        return [make(seed, i, level) for i in range(n)]
    if world is None:
        from . import ensure_world

        world = ensure_world()
    return [make_search_task(seed, i, world, kind) for i in range(n)]


def write_tasks(path: str | Path, kind: str, seed: int, n: int, *, level: int = 2, split: str = "test",
                world: Any = None, progress: Callable[[int, int], None] | None = None) -> list[Task]:
    """Write `n` tasks as a task file at `path`, with their images under `images/` beside it."""
    from ..errors import UsageError

    if n < 1:
        raise UsageError(f"--n {n}: ask for at least one task")
    path = Path(path)
    (path.parent / "images").mkdir(parents=True, exist_ok=True)
    if kind not in KINDS:
        raise UsageError(f"unknown task kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind in ("zoom", "locate") and level not in LEVELS:
        raise UsageError(f"zoom level {level} does not exist; use 0 (easy), 1 or 2 (the full task)")
    if kind in ("search", "interleaved") and world is None:
        from . import ensure_world

        world = ensure_world()
    tasks = []
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            if kind == "zoom":
                task, im = make_zoom_task(seed, i, level)
            elif kind == "locate":
                task, im = make_locate_task(seed, i, level)
            else:
                task, im = make_search_task(seed, i, world, kind)
            task.split = split
            _save(im, path.parent / task.images[0])
            f.write(json.dumps(task.to_json(), ensure_ascii=False) + "\n")
            tasks.append(task)
            if progress:
                progress(i + 1, n)
    return tasks



def _save(im: Any, path: Path) -> None:
    """JPEG for scenes (quality 92: the glyphs stay crisp after a crop, and it is fast to write), PNG else."""
    if path.suffix == ".jpg":
        im.save(path, quality=92)
    else:
        im.save(path, compress_level=1)
