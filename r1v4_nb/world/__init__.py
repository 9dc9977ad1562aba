"""The offline demo world: generated once per (seed, size) into the cache folder, then reused.

`ensure_world()` returns the paths the offline backends need. Generation writes
into a temporary folder and renames it into place, so several processes that
start at once never see half a world.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

WORLD_VERSION = 2
DEFAULT_SEED = 0
DEFAULT_PER_KIND = 80  # places, people and objects each: 240 pages


@dataclass(frozen=True)
class World:
    """Paths of a generated world."""

    root: Path

    @property
    def corpus(self) -> Path:
        return self.root / "corpus.sqlite"

    @property
    def image_index(self) -> Path:
        return self.root / "images.sqlite"

    @property
    def mirror(self) -> Path:
        return self.root / "mirror.json"

    @property
    def questions(self) -> Path:
        return self.root / "questions.jsonl"

    @property
    def entities(self) -> Path:
        return self.root / "entities.jsonl"

    def load_questions(self) -> list[dict]:
        return [json.loads(line) for line in self.questions.read_text(encoding="utf-8").splitlines() if line]

    def load_entities(self) -> list[dict]:
        return [json.loads(line) for line in self.entities.read_text(encoding="utf-8").splitlines() if line]


def build_world(out: str | Path, seed: int = DEFAULT_SEED, per_kind: int = DEFAULT_PER_KIND,
                quiet: bool = False, replace: bool = True) -> World:
    """Generate a world into `out`; progress goes to stderr.

    `replace=False` keeps a world that another process finished first (the generation is deterministic).
    """
    from .generate import write_world

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".world-", dir=out.parent))
    try:
        write_world(tmp, seed, per_kind, None if quiet else lambda s: print(f"world: {s}", file=sys.stderr))
        (tmp / "manifest.json").write_text(json.dumps({"version": WORLD_VERSION, "seed": seed,
                                                       "per_kind": per_kind}), encoding="utf-8")
        if out.exists() and replace:
            shutil.rmtree(out)
        try:
            os.replace(tmp, out)
        except OSError:
            if not (out / "manifest.json").is_file():  # lost a race to another process: theirs is as good
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return World(out)


def ensure_world(root: str | Path | None = None, seed: int = DEFAULT_SEED,
                 per_kind: int = DEFAULT_PER_KIND, quiet: bool = True) -> World:
    """The world for (seed, size), generated on first use under the cache folder (or `root`).

    `quiet=False` reports a first-use generation (about 10 s) on stderr, step by step.
    """
    from ..paths import cache_root

    base = Path(root) if root is not None else cache_root() / "world"
    folder = base / f"v{WORLD_VERSION}-seed{seed}-n{per_kind}"
    if (folder / "manifest.json").is_file():
        return World(folder)
    if not quiet:
        print(f"world: generating the offline demo world into {folder} (first use only, about 10 s)",
              file=sys.stderr)
    return build_world(folder, seed, per_kind, quiet=quiet, replace=False)
