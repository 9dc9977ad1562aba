"""The curated data set: a folder `r1v4-nb train` reads directly, with the filter table in its manifest.

    DATASET/
      manifest.json          sources, filters and their table (how many each dropped and why), counts
      trajectories/*.jsonl   the kept trajectories (with their images)
      plans/*.jsonl          Plan-mode examples extracted from the kept ones (optional)

Every .jsonl under the folder is a trajectory, so `data = ["DATASET"]` in a training config takes
both kinds; `export_sharegpt` writes LLaMA-Factory's ShareGPT file for larger runs elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..trajectory import Trajectory, atomic_write_text, write
from .filters import DEFAULT_FILTERS, Filter, FilterReport, apply_filters, parse_filters
from .plans import write_plan_example


@dataclass
class Dataset:
    out: Path
    report: FilterReport
    trajectories: list[Path]
    plans: list[Path]
    manifest: dict[str, Any]

    def summary(self) -> str:
        return f"{self.out}: {len(self.trajectories)} trajectories, {len(self.plans)} plans ({self.report.summary()})"


def build_dataset(sources: Sequence[str | Path | Trajectory], out: str | Path,
                  filters: Sequence[str | Filter] = DEFAULT_FILTERS, *, tasks: Any = None, judge: Any = None,
                  plans: bool = True, overwrite: bool = False) -> Dataset:
    """Filter trajectories (files, folders, globs or Trajectory objects) into a dataset folder."""
    from ..train.data import load_trajectories

    out = Path(out)
    if (out / "manifest.json").exists() and not overwrite:
        raise UsageError(f"{out} already holds a dataset; choose another folder or pass overwrite=True")
    trajs: list[Trajectory] = []
    paths = [s for s in sources if not isinstance(s, Trajectory)]
    trajs += [s for s in sources if isinstance(s, Trajectory)]
    if paths:
        trajs += [t for t in load_trajectories(paths) if t.header.mode != "plan" or t.header.dialect == "plan"]
    if not trajs:
        raise UsageError("no trajectories to curate")
    chain = parse_filters(filters, tasks=tasks, judge=judge)
    report = apply_filters(trajs, chain)
    kept_paths, plan_paths, plan_skipped = [], [], []
    for n, t in enumerate(report.kept):
        stem = f"{n:05d}-{t.header.id}"
        kept_paths.append(write(out / "trajectories" / f"{stem}.jsonl", t))
        if plans and t.header.mode != "plan":
            path, why = write_plan_example(t, out / "plans" / f"{stem}.plan.jsonl")
            if path is not None:
                plan_paths.append(path)
            else:
                plan_skipped.append({"trajectory": str(t.path or t.header.id), "reason": why})
    manifest = {
        "format": "r1v4-dataset", "version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sources": [str(p) for p in paths] + [str(t.path or t.header.id) for t in sources if isinstance(t, Trajectory)],
        "filters": [f.describe() for f in chain],
        "table": report.table,
        "dropped": report.dropped,
        "counts": {"in": len(trajs), "kept": len(report.kept), "plans": len(plan_paths)},
        "plans_not_extracted": plan_skipped,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "manifest.json", json.dumps(manifest, ensure_ascii=False, indent=1) + "\n")
    return Dataset(out, report, kept_paths, plan_paths, manifest)


def export_sharegpt(dataset: str | Path, out: str | Path) -> Path:
    """Every trajectory of a dataset folder as one LLaMA-Factory ShareGPT JSON file (images beside it)."""
    from ..formats.sharegpt import to_sharegpt
    from ..train.data import load_trajectories

    folder = Path(dataset)
    if not (folder / "manifest.json").is_file():
        raise UsageError(f"{folder} is not a dataset folder (no manifest.json); build one with build_dataset")
    target = Path(out)
    records = [to_sharegpt(t, target.parent) for t in load_trajectories(folder)]
    atomic_write_text(target, json.dumps(records, ensure_ascii=False, indent=1) + "\n")
    return target


__all__ = ["Dataset", "build_dataset", "export_sharegpt"]
