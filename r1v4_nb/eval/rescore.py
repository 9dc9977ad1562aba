"""Score recorded trajectories again, without running any model.

`rescore(RUN_DIR)` reads a run folder's trajectories and scores their answers with another scorer (or a
judge); `rescore(FOLDER, tasks=TASKS, out=OUT)` scores trajectories recorded anywhere else, matched to
the tasks by `meta.task` (or, failing that, the trajectory id), and writes the same results.jsonl and
report.json as a run.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import R1V4Error, UsageError
from .runner import EVAL_MODES, MANIFEST, RESULTS, EvalRun, item_record, read_results, tasks_digest
from .scoring import Judge, describe_scorer, score_answer
from .tasks import TaskSet, load_tasks


def rescore(source: str | Path, *, tasks: Any = None, scorer: str = "auto", judge: Judge | None = None,
            out: str | Path | None = None, skip_bad: bool = False) -> EvalRun:
    """Re-score a run folder (in place unless `out`), or score a folder of foreign trajectories into `out`.

    `tasks` is a task file or a list of Task objects (default: the run's own task file).
    """
    from ..trajectory import atomic_write_text, read
    from .report import build_report, write_report

    src = Path(source)
    if not src.is_dir():
        raise UsageError(f"{src}: not a folder (pass a run folder, or a folder of trajectories with --tasks)")
    manifest_path = src / MANIFEST
    own = manifest_path.is_file() and (src / RESULTS).is_file()
    if own:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        task_file = tasks or (manifest.get("tasks") or {}).get("file")
        if not task_file:
            raise UsageError(f"{src}: the manifest names no task file; pass --tasks FILE")
    else:
        if tasks is None:
            raise UsageError(f"{src} is not an eval run folder; to score trajectories recorded elsewhere pass "
                             "--tasks TASKS and --out OUT")
        if out is None:
            raise UsageError("scoring a folder of foreign trajectories writes a new run folder: pass --out OUT")
        task_file, manifest = tasks, {}
    taskset = task_file if isinstance(task_file, TaskSet) else (
        load_tasks(task_file, skip_bad=skip_bad) if isinstance(task_file, (str, Path))
        else TaskSet(list(task_file), Path("(given tasks)"), "objects"))
    by_id = taskset.by_id()
    out_dir = Path(out) if out is not None else src
    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    unmatched: list[str] = []
    if own:
        for rec in read_results(src):
            task = by_id.get(rec["id"])
            if task is None:
                unmatched.append(rec["id"])
                continue
            traj = read(src / rec["trajectory"], check_images=False) if rec.get("trajectory") else None
            s = score_answer(traj.answer if traj else None, task, scorer, judge)
            path = (src / rec["trajectory"]) if rec.get("trajectory") else None
            records.append(item_record(task, rec["mode"], traj, s, _rel(path, out_dir), float(rec.get("wall_s") or 0),
                                       rec.get("error")))
    else:
        for path in sorted(src.rglob("*.jsonl")):
            if path.name == RESULTS or ".images" in path.parent.name:
                continue
            try:
                traj = read(path, check_images=False)
            except R1V4Error:
                continue  # not a trajectory (a task file, notes): skipped, as a folder scan must
            key = traj.header.meta.get("task") or traj.header.id
            task = by_id.get(str(key))
            if task is None:
                unmatched.append(str(path))
                continue
            mode = traj.header.mode if traj.header.mode in EVAL_MODES else traj.header.mode or "general"
            s = score_answer(traj.answer, task, scorer, judge)
            records.append(item_record(task, mode, traj, s, _rel(path, out_dir), traj.end.elapsed_s if traj.end else 0))
        if not records:
            raise UsageError(f"{src}: no trajectory matched a task of {task_file} (by meta.task or trajectory id)")
        manifest = {"format": "r1v4-eval-run", "version": 1, "source": str(src),
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "modes": sorted({r["mode"] for r in records}), "model": {"name": f"trajectories in {src}"},
                    "seed": None, "tasks": {"file": str(taskset.source), "count": len(taskset),
                                            "skipped": list(taskset.skipped)}}
    _check_duplicates(records)
    manifest = {**manifest, "scorer": describe_scorer(scorer, judge), "tasks_digest": tasks_digest(list(taskset)),
                "rescored": [*manifest.get("rescored", []), {
                    "at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "scorer": scorer,
                    "unmatched": len(unmatched)}]}
    atomic_write_text(out_dir / RESULTS, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1) + "\n")
    report = build_report(records, manifest)
    report["run"]["unmatched"] = len(unmatched)
    write_report(out_dir, report)
    return EvalRun(out_dir, records, report)


def _rel(path: Path | None, base: Path) -> Path | None:
    if path is None:
        return None
    try:
        return Path(os.path.relpath(path.resolve(), base.resolve()))
    except ValueError:  # another drive on Windows
        return path.resolve()


def _check_duplicates(records: list[dict[str, Any]]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for r in records:
        key = (r["id"], r["mode"])
        if key in seen:
            raise UsageError(f"two trajectories for task {r['id']!r} in mode {r['mode']}: {seen[key]} and "
                             f"{r['trajectory']}; keep one")
        seen[key] = str(r["trajectory"])


__all__ = ["rescore"]
