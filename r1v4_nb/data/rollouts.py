"""Teacher rollouts: any model backend, k runs per task with our tools, recorded as trajectories.

`rollouts(tasks, model, k=4, out=DIR)` writes `DIR/trajectories/<task>-s<j>.jsonl` (the task's id, gold
answers and the sample number in `meta`), an index of what is done (`index.ndjson`, one line per
trajectory, appended as each ends) and `manifest.json`. Endpoint teachers (a large Qwen3-VL on vLLM)
run `concurrency` rollouts at once; a local model runs one at a time. `resume=True` runs only the
missing ones, so a killed rollout loses at most the runs in flight.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import R1V4Error, UsageError

INDEX = "index.ndjson"


@dataclass
class RolloutSet:
    out: Path
    index: list[dict[str, Any]]

    @property
    def paths(self) -> list[Path]:
        return [self.out / r["trajectory"] for r in self.index if r.get("trajectory")]


def read_index(out: str | Path) -> list[dict[str, Any]]:
    p = Path(out) / INDEX
    if not p.is_file():
        return []
    rows = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a kill
    return rows


def rollouts(tasks: Sequence[Any], model: Any = None, *, endpoint: str | None = None, model_name: str | None = None,
             k: int = 4, mode: str = "general", out: str | Path = "rollouts", concurrency: int = 1,
             temperature: float = 0.7, seed: int = 0, max_steps: int = 12, max_tool_calls: int = 10,
             max_tokens: int = 2048, tools: Any = None, cache: str | Path | None = None,
             cache_mode: str | None = None, resume: bool = False, progress: Any = None) -> RolloutSet:
    """Run the teacher k times per task; `model` is an instance or a factory `(task, sample) -> model`."""
    from ..agent import Agent, Budgets
    from ..eval.runner import EVAL_MODES, EvalSettings, default_tools, item_seed, run_items, safe_name
    from ..models.base import GenerationSettings
    from ..trajectory import atomic_write_text

    if mode not in EVAL_MODES:
        raise UsageError(f"unknown mode {mode!r}; choose from: {', '.join(EVAL_MODES)}")
    if k < 1:
        raise UsageError(f"k must be at least 1 (rollouts per task), got {k}")
    if endpoint is not None:
        from ..models.openai import OpenAIModel

        model = OpenAIModel(endpoint, model=model_name)
    if model is None:
        raise UsageError("no teacher model: pass model= or endpoint=")
    factory = model if callable(model) and not hasattr(model, "stream") else None
    desc = {} if factory is not None else dict(model.describe())
    workers = concurrency if factory is not None or desc.get("backend") == "openai" else 1
    out = Path(out)
    manifest = {"format": "r1v4-rollouts", "version": 1, "mode": mode, "k": k, "seed": seed,
                "teacher": desc or {"factory": getattr(model, "__name__", repr(model))},
                "generation": {"temperature": temperature, "max_tokens": max_tokens},
                "budgets": {"max_steps": max_steps, "max_tool_calls": max_tool_calls},
                "concurrency": workers, "tasks": len(tasks)}
    mpath = out / "manifest.json"
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    manifest["created"] = now
    if mpath.is_file():
        if not resume:
            raise UsageError(f"{out} already holds rollouts; pass resume=True (--resume) or choose another folder")
        old = json.loads(mpath.read_text(encoding="utf-8"))
        changed = [key for key in ("mode", "k", "seed", "teacher", "generation", "budgets") if old.get(key) != manifest[key]]
        if changed:
            raise UsageError(f"{out} was rolled out with other settings ({', '.join(changed)} differ); resume with "
                             "the same ones, or choose another folder")
        manifest.update(created=old.get("created"), resumed=[*old.get("resumed", []), now])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(mpath, json.dumps(manifest, ensure_ascii=False, indent=1) + "\n")
    done = {(r["task"], r["sample"]) for r in read_index(out)}
    todo = [(t, j) for t in tasks for j in range(k) if (t.id, j) not in done]
    make_tools = tools or default_tools(EvalSettings(modes=[mode], cache=str(cache) if cache else None,
                                                     cache_mode=cache_mode))
    lock = threading.Lock()

    def one(task: Any, j: int) -> dict[str, Any]:
        m = factory(task, j) if factory is not None else model
        rel = Path("trajectories") / f"{safe_name(task.id)}-s{j}.jsonl"
        gen = GenerationSettings(temperature=temperature, max_tokens=max_tokens,
                                 seed=item_seed(seed, f"{task.id}#{j}", mode))
        agent = Agent(m, tools=make_tools(mode), mode=mode, settings=gen,
                      budgets=Budgets(max_steps=max_steps, max_tool_calls=max_tool_calls, max_tokens_per_turn=max_tokens))
        row: dict[str, Any] = {"task": task.id, "sample": j, "trajectory": rel.as_posix()}
        try:
            res = agent.collect(agent.run(task.prompt(), task.images, out=out / rel,
                                          meta={"task": task.id, "gold": task.golds, "choices": task.choices,
                                                "category": task.category, "sample": j, "teacher": desc}))
            row.update(answer=res.answer, reason=res.reason)
        except R1V4Error as exc:
            row.update(answer=None, reason="error", error=str(exc))
        with lock:
            with (out / INDEX).open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            if progress is not None:
                progress(row)
        return row

    run_items(todo, one, workers)
    return RolloutSet(out, read_index(out))


__all__ = ["INDEX", "RolloutSet", "read_index", "rollouts"]
