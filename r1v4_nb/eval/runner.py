"""Run a model on a task set in one or more modes, item by item, into a run folder that survives a kill.

A run folder holds::

    manifest.json            what was run: tasks (file, digest), model, modes, seeds, every setting
    results.jsonl            one record per (item, mode), appended as each finishes
    trajectories/<mode>/     each item's trajectory (with its images), meta.task = the task id
    report.json, report.md   the figures (r1v4_nb.eval.report), rewritten at the end

A killed run loses at most the items in flight: `resume=True` (`--resume`) reads results.jsonl and
runs only what is missing. Endpoint models run `concurrency` items at once in threads (vLLM and SGLang
batch them); a local model runs one item at a time. `replay=RUN_DIR` re-runs a recorded run with each
item's model turns replayed, and with `cache_mode="read-only"` the search tools answer only from the
tool cache: an offline re-run that must give the same scores.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import R1V4Error, UsageError
from .scoring import SCORERS, Judge, Score, describe_scorer, score_answer
from .tasks import Task, TaskSet, load_tasks

EVAL_MODES = ("direct", "general", "deepresearch")
RESULTS = "results.jsonl"
MANIFEST = "manifest.json"
SEARCH_TOOLS = ("text_search", "image_search", "web_visit")
# Manifest fields that must match for --resume to continue a run rather than mix two.
_RESUME_KEYS = ("tasks_digest", "modes", "model", "scorer", "seed", "generation", "budgets", "dialect")


@dataclass
class EvalSettings:
    """Every knob of a run; all of it goes into the manifest."""

    modes: list[str] = field(default_factory=lambda: ["direct", "general"])
    scorer: str = "auto"
    concurrency: int = 1
    limit: int | None = None
    seed: int = 0
    temperature: float = 0.0
    max_tokens: int = 2048
    max_steps: int = 12
    max_tool_calls: int = 10
    max_total_tokens: int = 20480
    max_wall_s: float = 600.0
    dialect: str = "r1v4"
    cache: str | None = None
    cache_mode: str | None = None

    def check(self) -> None:
        bad = [m for m in self.modes if m not in EVAL_MODES]
        if bad or not self.modes:
            raise UsageError(f"unknown mode {bad[0] if bad else '(none)'!r}; choose from: {', '.join(EVAL_MODES)}")
        if len(set(self.modes)) != len(self.modes):
            raise UsageError(f"modes {','.join(self.modes)}: each mode once")
        if self.scorer not in SCORERS:
            raise UsageError(f"unknown scorer {self.scorer!r}; choose one of: {', '.join(SCORERS)}")
        if self.concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"limit must be at least 1, got {self.limit}")


class EvalProgress:
    """Receives a run's progress; the terminal bar below and the notebook panel (r1v4_nb.ui) implement it."""

    def on_start(self, total: int, done: int, modes: Sequence[str]) -> None: ...

    def on_item(self, record: dict[str, Any], done: int, total: int) -> None: ...

    def on_end(self, report: dict[str, Any]) -> None: ...


class TerminalProgress(EvalProgress):
    """A tqdm bar on stderr with the running accuracy per mode."""

    def __init__(self, file: Any = None):
        self.file = file or sys.stderr
        self.bar: Any = None
        self.right: Counter[str] = Counter()
        self.seen: Counter[str] = Counter()

    def on_start(self, total: int, done: int, modes: Sequence[str]) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=done, file=self.file, unit="item", desc="eval", mininterval=0.5,
                        dynamic_ncols=True)

    def on_item(self, record: dict[str, Any], done: int, total: int) -> None:
        self.seen[record["mode"]] += 1
        self.right[record["mode"]] += bool(record["correct"])
        if self.bar is not None:
            self.bar.set_postfix_str("  ".join(f"{m} {self.right[m]}/{n}" for m, n in self.seen.items()),
                                     refresh=False)
            self.bar.update(1)

    def on_end(self, report: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class EvalRun:
    """A finished (or resumed) run: its folder, records and report."""

    out: Path
    results: list[dict[str, Any]]
    report: dict[str, Any]

    def accuracy(self, mode: str) -> float | None:
        return (self.report.get("modes", {}).get(mode) or {}).get("accuracy")

    def markdown(self) -> str:
        from .report import to_markdown

        return to_markdown(self.report)

    def _repr_markdown_(self) -> str:
        return self.markdown()


ModelFactory = Callable[[Task, str], Any]
ToolsFactory = Callable[[str], list]


def safe_name(task_id: str) -> str:
    """A file name for a task id; ids that had to change get a short hash so two never collide."""
    name = re.sub(r"[^\w.-]", "_", task_id)[:80] or "task"
    if name != task_id:
        name += "-" + hashlib.sha256(task_id.encode()).hexdigest()[:8]
    return name


def tasks_digest(tasks: Sequence[Task]) -> str:
    """A digest of what the tasks ask and accept (not of where their images sit)."""
    h = hashlib.sha256()
    for t in tasks:
        h.update(json.dumps([t.id, t.question, t.golds, t.choices], ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def item_seed(seed: int, task_id: str, mode: str) -> int:
    """The generation seed of one item: fixed by the run's seed, the task and the mode."""
    return (seed * 1_000_003 + zlib.crc32(f"{task_id}\0{mode}".encode())) % 2**31


def read_results(out: str | Path) -> list[dict[str, Any]]:
    """The records of a run folder; a line cut off by a kill is ignored."""
    p = Path(out) / RESULTS
    if not p.is_file():
        return []
    records = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # the one line a kill can cut short
        if isinstance(rec, dict) and "id" in rec and "mode" in rec:
            records.append(rec)
    return records


def default_tools(settings: EvalSettings) -> ToolsFactory:
    """The mode's tools (`modes.py`); the search tools share the run's cache file and mode."""
    from ..modes import get_mode
    from ..runs import live_tools

    def make(mode: str) -> list:
        kw: dict[str, Any] = {}
        if settings.cache is not None:
            kw["cache"] = settings.cache
        if settings.cache_mode is not None:
            kw["cache_mode"] = settings.cache_mode
        names = get_mode(mode).tools
        return live_tools(names, {name: kw for name in names if name in SEARCH_TOOLS})

    return make


def replay_models(run_dir: str | Path) -> ModelFactory:
    """Each item's model turns replayed from a recorded run folder (matched by task id and mode)."""
    from ..models.replay import ReplayModel
    from ..trajectory import read

    base = Path(run_dir)
    records = {(r["id"], r["mode"]): r for r in read_results(base)}
    if not records:
        raise UsageError(f"{base}: no results.jsonl to replay (pass a run folder written by 'r1v4-nb eval run')")

    def make(task: Task, mode: str) -> Any:
        rec = records.get((task.id, mode))
        if rec is None or not rec.get("trajectory"):
            raise UsageError(f"{base}: no recorded {mode} trajectory for task {task.id!r}")
        traj = read(base / rec["trajectory"])
        return ReplayModel.from_trajectory(traj) if traj.model_steps else _Silent()

    return make


class _Silent:
    """A recorded item whose model never wrote a turn: replaying it writes nothing."""

    name = "replay (no turns)"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "backend": "replay"}

    def stream(self, messages: Any, *, stop: Any, settings: Any, cancel: Any = None) -> Any:
        from ..models.base import Delta, Usage

        yield Delta(finish_reason="stop", usage=Usage(0, 0))


def _describe(model: Any) -> dict[str, Any]:
    if model is None:
        return {}
    try:
        return dict(model.describe())
    except Exception:  # a model without describe() still runs; the manifest says what it is
        return {"name": type(model).__name__}


def run(
    tasks: TaskSet | Sequence[Task] | str | Path,
    model: Any = None,
    *,
    endpoint: str | None = None,
    model_name: str | None = None,
    api_key_env: str | None = None,
    modes: Sequence[str] | str = ("direct", "general"),
    out: str | Path | None = None,
    concurrency: int = 1,
    limit: int | None = None,
    resume: bool = False,
    scorer: str = "auto",
    judge: Judge | None = None,
    cache: str | Path | None = None,
    cache_mode: str | None = None,
    seed: int = 0,
    temperature: float = 0.0,
    max_tokens: int = 2048,
    max_steps: int = 12,
    max_tool_calls: int = 10,
    dialect: str = "r1v4",
    tools: ToolsFactory | None = None,
    replay: str | Path | None = None,
    skip_bad: bool = False,
    progress: EvalProgress | str | None = "auto",
    command: str | None = None,
    plots: bool = True,
) -> EvalRun:
    """Evaluate `model` (an instance, a factory `(task, mode) -> model`, or `endpoint=`) on `tasks`."""
    from ..agent import Agent, Budgets
    from ..models.base import GenerationSettings
    from .report import build_report, write_report

    settings = EvalSettings(modes=[m.strip() for m in modes.split(",")] if isinstance(modes, str) else list(modes),
                            scorer=scorer, concurrency=concurrency, limit=limit, seed=seed, temperature=temperature,
                            max_tokens=max_tokens, max_steps=max_steps, max_tool_calls=max_tool_calls,
                            dialect=dialect, cache=str(cache) if cache is not None else None, cache_mode=cache_mode)
    settings.check()
    taskset = tasks if isinstance(tasks, TaskSet) else (
        load_tasks(tasks, skip_bad=skip_bad) if isinstance(tasks, (str, Path)) else None)
    task_list = list(taskset if taskset is not None else tasks)[: limit or None]
    if not task_list:
        raise UsageError("no tasks to run")
    factory: ModelFactory | None = None
    shared = model
    if replay is not None:
        factory = replay_models(replay)
        shared = None
    elif endpoint is not None:
        from ..models.openai import OpenAIModel

        shared = OpenAIModel(endpoint, model=model_name, api_key_env=api_key_env)
    elif callable(model) and not hasattr(model, "stream"):
        factory, shared = model, None
    elif model is None:
        raise UsageError("no model given: pass model=, endpoint= or replay= (CLI: --model, --endpoint, --replay)")
    local = shared is not None and _describe(shared).get("backend") != "openai"
    workers = 1 if local else settings.concurrency
    out_dir = Path(out) if out is not None else Path("runs") / f"eval-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    manifest = {
        "format": "r1v4-eval-run", "version": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tasks": {"file": str(taskset.source) if taskset is not None else None,
                  "format": taskset.format if taskset is not None else None, "count": len(task_list),
                  "skipped": list(taskset.skipped) if taskset is not None else []},
        "tasks_digest": tasks_digest(task_list),
        "modes": settings.modes,
        "model": {"replay": str(replay)} if replay is not None else (
            _describe(shared) if shared is not None else {"factory": getattr(model, "__name__", repr(model))}),
        "scorer": describe_scorer(settings.scorer, judge),
        "seed": settings.seed,
        "generation": {"temperature": settings.temperature, "max_tokens": settings.max_tokens},
        "budgets": {"max_steps": settings.max_steps, "max_tool_calls": settings.max_tool_calls,
                    "max_total_tokens": settings.max_total_tokens, "max_wall_s": settings.max_wall_s},
        "dialect": settings.dialect,
        "settings": asdict(settings),
        "concurrency": {"asked": settings.concurrency, "used": workers,
                        **({"note": "a local model runs one item at a time"} if local and workers != settings.concurrency
                           else {})},
        "command": command,
        "python": sys.version.split()[0],
    }
    if taskset is None:  # tasks given as objects: keep them with the run, so a re-score can find them
        from .tasks import write_tasks

        manifest["tasks"]["file"] = str(out_dir / "tasks.jsonl")
        if not (resume and (out_dir / "tasks.jsonl").is_file()):
            out_dir.mkdir(parents=True, exist_ok=True)
            write_tasks(out_dir / "tasks.jsonl", task_list)
    done = _prepare_folder(out_dir, manifest, resume)
    todo = [(t, m) for m in settings.modes for t in task_list if (t.id, m) not in done]
    bar = _progress(progress)
    total = len(task_list) * len(settings.modes)
    bar.on_start(total, total - len(todo), settings.modes)
    make_tools = tools or default_tools(settings)
    lock = threading.Lock()
    results_path = out_dir / RESULTS
    counter = [total - len(todo)]

    def one(task: Task, mode: str) -> dict[str, Any]:
        m = factory(task, mode) if factory is not None else shared
        gen = GenerationSettings(temperature=settings.temperature, max_tokens=settings.max_tokens,
                                 seed=item_seed(settings.seed, task.id, mode))
        budgets = Budgets(max_steps=settings.max_steps, max_tool_calls=settings.max_tool_calls,
                          max_tokens_per_turn=settings.max_tokens, max_total_tokens=settings.max_total_tokens,
                          max_wall_s=settings.max_wall_s)
        rel = Path("trajectories") / mode / f"{safe_name(task.id)}.jsonl"
        meta = {"task": task.id, "gold": task.golds, "category": task.category, "split": task.split,
                "eval": {"mode": mode, "run": out_dir.name}}
        t0 = time.monotonic()
        error = None
        try:
            agent = Agent(m, tools=make_tools(mode), dialect=settings.dialect, mode=mode, budgets=budgets,
                          settings=gen)
            result = agent.collect(agent.run(task.prompt(), task.images, out=out_dir / rel, meta=meta))
            traj = result.trajectory
        except (R1V4Error, OSError) as exc:
            traj, error = None, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug in a model or tool: recorded for this item, the run goes on
            traj, error = None, f"{type(exc).__name__}: {exc}"
        if traj is None and (out_dir / rel).is_file():
            from ..trajectory import read

            try:
                traj = read(out_dir / rel)
            except R1V4Error:
                traj = None
        rec = item_record(task, mode, traj, score_answer(traj.answer if traj else None, task, settings.scorer, judge),
                          rel if (out_dir / rel).is_file() else None, time.monotonic() - t0, error)
        with lock:
            with results_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                fh.flush()
            counter[0] += 1
            bar.on_item(rec, counter[0], total)
        return rec

    run_items(todo, one, workers)
    records = read_results(out_dir)
    report = build_report(records, manifest)
    write_report(out_dir, report, plots=plots)
    bar.on_end(report)
    return EvalRun(out_dir, records, report)


def run_items(todo: list[tuple[Any, Any]], one: Callable[[Any, Any], dict[str, Any]], workers: int) -> None:
    """Call `one(*item)` for every item, `workers` at a time in threads (in order when 1)."""
    if workers <= 1:
        for task, mode in todo:
            one(task, mode)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: set[Future] = set()
        queue = list(todo)
        while queue or pending:
            while queue and len(pending) < workers:
                task, mode = queue.pop(0)
                pending.add(pool.submit(one, task, mode))
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                f.result()


def _progress(progress: EvalProgress | str | None) -> EvalProgress:
    if isinstance(progress, EvalProgress):
        return progress
    if progress is None or progress == "none":
        return EvalProgress()
    if progress != "auto":
        raise UsageError(f"progress={progress!r}: pass 'auto', None or an EvalProgress")
    if _NOTEBOOK_PROGRESS and "ipykernel" in sys.modules:
        return _NOTEBOOK_PROGRESS[-1]()
    return TerminalProgress()


# The notebook's progress view, registered by the UI layer (`%load_ext r1v4_nb`): eval sits below ui and
# must not import it, so the widget is handed down instead.
_NOTEBOOK_PROGRESS: list[Callable[[], EvalProgress]] = []


def set_notebook_progress(factory: Callable[[], EvalProgress] | None) -> None:
    """Use `factory()` as the progress view of runs inside a Jupyter kernel (None: back to the terminal bar)."""
    _NOTEBOOK_PROGRESS.clear()
    if factory is not None:
        _NOTEBOOK_PROGRESS.append(factory)


def _prepare_folder(out: Path, manifest: dict[str, Any], resume: bool) -> set[tuple[str, str]]:
    """Create the run folder, or check that a resumed one was run with the same settings; returns what is done."""
    from ..trajectory import atomic_write_text

    path = out / MANIFEST
    if path.is_file():
        if not resume:
            raise UsageError(f"{out} already holds an eval run; pass --resume (resume=True) to finish it, or "
                             "choose another --out")
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise UsageError(f"{path} is not valid JSON; choose another --out") from None
        changed = [k for k in _RESUME_KEYS if old.get(k) != manifest.get(k)]
        if changed:
            raise UsageError(f"{out} was run with other settings ({', '.join(changed)} differ); resume with the "
                             "same command, or choose another --out")
        manifest = {**manifest, "created": old.get("created"), "resumed": [*old.get("resumed", []),
                    datetime.now(timezone.utc).isoformat(timespec="seconds")]}
    elif resume and out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} holds files but no {MANIFEST}; it is not an eval run folder")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(manifest, ensure_ascii=False, indent=1) + "\n")
    records = read_results(out)
    _drop_torn_line(out / RESULTS)
    return {(r["id"], r["mode"]) for r in records}


def _drop_torn_line(path: Path) -> None:
    """A kill in the middle of a write leaves a line without its newline: cut it before appending."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)
            os.fsync(fh.fileno())


def item_record(task: Task, mode: str, traj: Any, score: Score, trajectory: Path | None, wall_s: float,
                error: str | None = None) -> dict[str, Any]:
    """The results.jsonl record of one item in one mode (also used when re-scoring)."""
    from ..records import ToolStep

    rec: dict[str, Any] = {"id": task.id, "mode": mode, "correct": bool(score.correct),
                           "answer": traj.answer if traj is not None else None, "gold": task.answer,
                           "golds": task.golds, "scorer": score.scorer, "score_reason": score.reason,
                           "extracted": score.extracted, "value": score.value, "answered": score.answered,
                           "category": task.category, "split": task.split}
    if traj is not None:
        model_steps, tool_steps = traj.model_steps, traj.tool_steps
        end = traj.end
        rec.update(
            end=end.reason if end else "incomplete",
            wall_s=round(end.elapsed_s if end and end.elapsed_s else wall_s, 4),
            model_s=round(sum(s.elapsed_s for s in model_steps), 4),
            tool_s=round(sum(s.elapsed_s for s in tool_steps), 4),
            tokens_in=sum(s.tokens_in for s in model_steps),
            tokens_out=sum(s.tokens_out for s in model_steps),
            turns=len(model_steps),
            tool_calls=dict(Counter(s.call.name for s in tool_steps)),
            tool_errors=sum(1 for s in tool_steps if isinstance(s, ToolStep) and (s.observation.error or s.call.error)),
        )
    else:
        rec.update(end="error", wall_s=round(wall_s, 4), model_s=0.0, tool_s=0.0, tokens_in=0, tokens_out=0,
                   turns=0, tool_calls={}, tool_errors=0)
    rec["trajectory"] = trajectory.as_posix() if trajectory is not None else None
    if error or (traj is not None and traj.end is not None and traj.end.error):
        rec["error"] = error or traj.end.error
    return rec


__all__ = ["EVAL_MODES", "EvalProgress", "EvalRun", "EvalSettings", "TerminalProgress", "item_record", "item_seed",
           "read_results", "replay_models", "run", "run_items", "safe_name", "set_notebook_progress", "tasks_digest"]
