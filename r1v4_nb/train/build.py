"""`r1v4-nb build-demo-model`: the default agent, made the way R1V4 was made, at toy scale.

generate tasks -> expert rollouts with the real tools -> curation filters -> SFT (full
parameters, from a freshly initialised tiny Qwen3-VL-MoE, in a curriculum of stages) ->
evaluation on held-out tasks -> a model folder with its model card. Every step is seeded, so
the same seed rebuilds the same model on the same software.

The curriculum follows what the probes showed: read one plaque on a plain page first, then on a
textured page with distractor shapes, then find the named plaque among several (the full task),
with a share of no-tool runs (answer from the full view) so the direct mode is measured on a
model that was trained for it; then the interleaved runs (crop the inset, search, visit, answer) with
fresh zoom runs, then everything at once at a lower learning rate.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError

__all__ = ["BuildPlan", "Stage", "build_demo_model", "evaluate_model", "load_task_file", "rollout"]


@dataclass
class Stage:
    """One step of the curriculum: the runs it trains on and how long."""

    name: str
    data: list[str]  # names of rollout sets (see BuildPlan.sets)
    steps: int
    lr: float = 1e-3
    warmup: int = 30
    batch_size: int | None = None  # the plan's unless set


@dataclass
class BuildPlan:
    """The sizes of a build. The defaults are what the shipped model was built with."""

    seed: int = 0
    # rollout sets: name -> (kind, level, n tasks, mode); mode "tools" or "direct"
    sets: dict[str, tuple[str, int, int, str]] = field(default_factory=lambda: {
        "read-easy": ("zoom", 0, 400, "tools"),
        "zoom": ("zoom", 2, 2400, "tools"),
        "direct": ("zoom", 2, 150, "direct"),
        "interleaved": ("interleaved", 2, 800, "tools"),
        "review": ("zoom", 2, 400, "tools"),
    })
    # lr 1e-3: at 3e-3 the vision tower's output norm ran away (1.3 -> 175) and the reading stayed at chance;
    # at 1e-3 the same model read the crops (probes in docs/default-agent.md)
    stages: list[Stage] = field(default_factory=lambda: [
        Stage("read-easy", ["read-easy"], 200, lr=1e-3),
        Stage("find-and-read", ["read-easy", "zoom", "direct"], 2600, lr=1e-3),
        # interleaved runs are 3-4x longer (a page of text, three images); fresh zoom runs keep the reading.
        # 700 steps of 8 reached 48% interleaved and 77.5% zoom; 600 of 16 60% and 80%
        Stage("search", ["interleaved", "review", "direct"], 600, lr=1e-3),
        # a lower learning rate on everything at once: zoom 80% -> 94%, interleaved 60% -> 80%
        Stage("polish", ["zoom", "interleaved", "direct"], 400, lr=3e-4),
    ])
    batch_size: int = 16
    # evaluation sets: name -> (kind, level, modes, n tasks); every mode runs on the same tasks
    eval_sets: dict[str, tuple[str, int, tuple[str, ...], int]] = field(default_factory=lambda: {
        "zoom": ("zoom", 2, ("general", "direct"), 200),
        "interleaved": ("interleaved", 2, ("deepresearch",), 50),
    })
    # One torch thread: on a shared 2-core machine two threads spin against each other (measured here:
    # 0.9 s a step with one thread, 3.5 s with two, at a load average of 6-8).
    threads: int = 1

    def scaled(self, factor: float) -> BuildPlan:
        """The same plan with every task count and step count multiplied by `factor` (at least 1 each)."""
        from dataclasses import replace

        def n(x: int) -> int:
            return max(1, round(x * factor))

        return replace(
            self,
            sets={k: (kind, level, n(count), mode) for k, (kind, level, count, mode) in self.sets.items()},
            stages=[replace(s, steps=n(s.steps), warmup=min(s.warmup, n(s.steps))) for s in self.stages],
            eval_sets={k: (kind, level, modes, n(count)) for k, (kind, level, modes, count) in self.eval_sets.items()})

    @property
    def eval_seed(self) -> int:
        return 10_000 + self.seed  # never a training seed


def load_task_file(path: str | Path) -> list[dict[str, Any]]:
    """The records of a task file (JSON Lines), with image paths made absolute."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no task file at {path}; write one with `r1v4-nb world tasks`")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{n}: not JSON ({exc.msg})") from None
        rec["images"] = [str((path.parent / p).resolve()) for p in rec.get("images", [])]
        out.append(rec)
    return out


def _tools_for(kind: str, mode: str) -> list[Any]:
    from ..tools.registry import build_tool

    if mode == "direct":
        return []
    names = {"zoom": ["code"], "locate": ["code"], "search": ["image_search", "web_visit"],
             "interleaved": ["code", "image_search", "web_visit"]}[kind]
    return [build_tool(n) for n in names]


def agent_mode(kind: str, mode: str) -> str:
    """The agent mode (and prompt) of a task kind: zoom runs in general, search in deepresearch."""
    if mode == "direct":
        return "direct"
    return "general" if kind in ("zoom", "locate") else "deepresearch"


def rollout(tasks: Sequence[dict[str, Any]], out_dir: str | Path, mode: str = "tools",
            say: Callable[[str], None] | None = None, workers: int = 3) -> list[Path]:
    """Run the expert on each task with the real tools; one trajectory file per task, in task order.

    `workers` runs go at once (each with its own tools): a run spends most of its time waiting for
    its sandbox to start, so a few in flight keep the CPUs busy."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from ..agent import Agent
    from ..models.default import PROMPTS
    from ..world.expert import ExpertModel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    local = threading.local()
    opened: list[Any] = []
    lock = threading.Lock()
    done = [0]
    t0 = time.monotonic()

    def one(task: dict[str, Any]) -> Path:
        kind = task["meta"]["kind"]
        cache = getattr(local, "tools", None)
        if cache is None:
            cache = local.tools = {}
        if kind not in cache:
            cache[kind] = _tools_for(kind, mode)
            with lock:
                opened.extend(cache[kind])
        prompt_mode = agent_mode(kind, mode)
        agent = Agent(ExpertModel(task, mode), tools=cache[kind],
                      mode="general" if prompt_mode == "direct" else prompt_mode,
                      system_prompt=PROMPTS[prompt_mode], runs_dir=out_dir)
        path = out_dir / f"{task['id']}.jsonl"
        if not _finished(path):
            agent.ask(task["question"], task["images"], out=path,
                      meta={"task": task["id"], "gold": task["answer"], "kind": kind, "mode": mode})
        with lock:
            done[0] += 1
            if say and (done[0] % 200 == 0 or done[0] == len(tasks)):
                say(f"  {done[0]}/{len(tasks)} runs ({time.monotonic() - t0:.0f}s)")
        return path

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            paths = list(pool.map(one, tasks))
    finally:
        for tool in opened:
            close = getattr(tool, "close", None)
            if close:
                close()
    return paths


def _stage_done(stage_dir: Path, stage: Stage, tokenizer_file: Path) -> dict[str, Any] | None:
    """The record of a stage a previous (killed) run of the same build finished, else None.

    The stage's model must have been trained with this build's tokenizer (it is trained on the kept
    runs, so a change to the expert or the sets changes it) and for the same number of steps."""
    path = stage_dir / "losses.json"
    saved = stage_dir / "model" / "tokenizer.json"
    if not (path.is_file() and (stage_dir / "model" / "config.json").is_file() and saved.is_file()):
        return None
    if saved.read_bytes() != tokenizer_file.read_bytes():
        return None
    done = json.loads(path.read_text(encoding="utf-8"))
    return done if done.get("steps") == stage.steps and done.get("losses") else None


def _finished(path: Path) -> bool:
    """A trajectory file a run completed (its last line is the end record): a resumed build keeps it."""
    if not path.is_file():
        return False
    lines = path.read_bytes().rstrip().splitlines()
    return bool(lines) and lines[-1].startswith(b'{"type": "end"')


def _valid(step: Any) -> bool:
    """A model turn that is a well-formed tool call or an answer."""
    if any(seg.kind == "answer" for seg in step.segments):
        return True
    return bool(step.calls) and all(c.error is None for c in step.calls)


def evaluate_model(model: Any, tasks_file: str | Path, modes: Sequence[str], out_dir: str | Path) -> dict[str, Any]:
    """Run a loaded model on a task file with the real tools through the evaluation runner (the code behind
    `r1v4-nb eval run`); per mode its report's accuracy, plus the share of turns that are valid calls or answers."""
    from ..eval.runner import run
    from ..trajectory import read

    t0 = time.monotonic()
    result = run(tasks_file, model, modes=list(modes), out=out_dir, temperature=0.0, max_tokens=256, max_steps=6,
                 max_tool_calls=4, progress=None)
    out: dict[str, Any] = {"report": str(Path(out_dir) / "report.json"), "seconds": round(time.monotonic() - t0, 1)}
    for mode in modes:
        figures = result.report["modes"][mode]
        turns = valid = 0
        for f in sorted((Path(out_dir) / "trajectories" / mode).glob("*.jsonl")):
            steps = read(f).model_steps
            turns += len(steps)
            valid += sum(_valid(st) for st in steps)
        out[mode] = {"n": figures["n"], "accuracy": figures["accuracy"], "answered": figures.get("answer_rate"),
                     "valid_turns": valid / max(1, turns), "turns": turns}
    return out


def _say(msg: str) -> None:
    print(f"[build] {msg}", file=sys.stderr, flush=True)


def build_demo_model(out: str | Path, plan: BuildPlan | None = None, work: str | Path | None = None,
                     say: Callable[[str], None] = _say) -> dict[str, Any]:
    """Build the default model into `out` (see the module docstring); returns the build record."""
    import torch

    from ..models.default import build_tokenizer, make_model, write_agent_info
    from ..models.hf import load
    from ..world.tasks import write_tasks
    from .config import TrainConfig
    from .data import load_trajectories, render_examples
    from .filters import select, stats
    from .sft import Trainer

    plan = plan or BuildPlan()
    torch.set_num_threads(plan.threads)
    out = Path(out)
    work = Path(work) if work is not None else Path("runs") / f"build-{out.name}-seed{plan.seed}"
    work.mkdir(parents=True, exist_ok=True)  # a killed build resumes: finished runs and task files are kept
    t_start = time.monotonic()
    record: dict[str, Any] = {"seed": plan.seed, "plan": _plan_json(plan), "timings": {}, "filters": {},
                              "stages": [], "eval": {}, "reused": []}

    say("1/5 tasks and expert rollouts (real tools)")
    trajs: dict[str, list[Any]] = {}
    for k, (name, (kind, level, n, mode)) in enumerate(plan.sets.items()):
        t0 = time.monotonic()
        task_seed = plan.seed * 100 + k
        task_file = work / "tasks" / name / "tasks.jsonl"
        if not (task_file.is_file() and len(task_file.read_text(encoding="utf-8").splitlines()) == n):
            write_tasks(task_file, kind, task_seed, n, level=level, split="train")
        records = load_task_file(task_file)
        say(f"{name}: {len(records)} {kind} tasks (level {level}, seed {task_seed}), expert in mode {mode}")
        reused = sum(_finished(work / "rollouts" / name / f"{r['id']}.jsonl") for r in records)
        if reused:
            record["reused"].append(f"{reused} {name} runs")
        paths = rollout(records, work / "rollouts" / name, mode, say)
        loaded = load_trajectories(paths)
        sel = select(loaded, require_correct=True)
        record["filters"][name] = {"runs": len(loaded), **{r: len(v) for r, v in sel.dropped.items()},
                                   "kept": len(sel.kept)}
        say(f"{name}: filters: {sel.summary()}")
        trajs[name] = sel.kept
        record["timings"][f"rollouts/{name}"] = round(time.monotonic() - t0, 1)

    say("2/5 tokenizer and a fresh model")
    corpus = [p for p in _prompts_corpus()]
    for kept in trajs.values():
        for t in kept:
            corpus.append(t.header.question)
            corpus += [s.text for s in t.steps if hasattr(s, "text")]
            corpus += [s.observation.text for s in t.tool_steps]
    tokenizer = build_tokenizer(corpus)
    init = make_model(work / "init", tokenizer, seed=plan.seed)
    loaded_model = load(init, progress=None)
    model, processor = loaded_model.model, loaded_model.processor
    n_params = sum(p.numel() for p in model.parameters())
    record["parameters"] = n_params
    say(f"model: {n_params / 1e6:.2f}M parameters, vocabulary {len(tokenizer)}")

    examples: dict[str, Any] = {}

    def examples_of(name: str) -> list[Any]:
        if name not in examples:
            examples[name] = render_examples(trajs[name], processor).examples
        return examples[name]

    say("3/5 SFT, every parameter, in stages")
    curves: list[dict[str, Any]] = []
    step0 = 0
    reuse = True
    for stage in plan.stages:
        t0 = time.monotonic()
        stage_dir = work / "sft" / stage.name
        done = _stage_done(stage_dir, stage, init / "tokenizer.json") if reuse else None
        reuse = done is not None  # a stage after a retrained one is trained again too
        if done is not None:  # a resumed build: this stage finished before
            say(f"stage {stage.name}: trained before ({stage.steps} steps), reusing {stage_dir / 'model'}")
            record["reused"].append(f"stage {stage.name}")
            model = load(stage_dir / "model", progress=None).model
            losses, seconds, n_examples = [x[1] for x in done["losses"]], done["seconds"], done["examples"]
            points = done["losses"]
        else:
            data = [e for name in stage.data for e in examples_of(name)]
            cfg = TrainConfig(model=str(init), output_dir=str(stage_dir), finetune="full",
                              learning_rate=stage.lr, warmup_steps=stage.warmup, max_steps=stage.steps,
                              batch_size=stage.batch_size or plan.batch_size, seed=plan.seed, weight_decay=0.01, log_every=25,
                              max_grad_norm=1.0)
            trainer = Trainer(cfg, data, model, processor, progress=_StageProgress(say, stage.name))
            result = trainer.run()
            model = trainer.model
            losses, seconds, n_examples = result.losses, round(time.monotonic() - t0, 1), len(data)
            points = [[i + 1, loss] for i, loss in enumerate(losses)]
            (stage_dir / "losses.json").write_text(json.dumps(
                {"steps": stage.steps, "losses": points, "seconds": seconds, "examples": n_examples}))
        for step, loss in points:
            curves.append({"step": step0 + step, "stage": stage.name, "loss": loss})
        step0 += stage.steps
        record["stages"].append({"name": stage.name, "data": stage.data, "examples": n_examples,
                                 "steps": stage.steps, "batch_size": stage.batch_size or plan.batch_size,
                                 "lr": stage.lr, "seconds": seconds,
                                 "first_loss": losses[0], "last_loss": losses[-1]})
        record["timings"][f"sft/{stage.name}"] = seconds
    record["curve"] = curves
    record["data"] = {name: stats(trajs[name], examples.get(name, [])).as_dict() for name in trajs}
    final = work / "sft" / plan.stages[-1].name / "model"
    write_agent_info(final)  # the prompts it was trained with, which the agent reads from the folder

    say("4/5 evaluation on held-out tasks (real tools)")
    model_eval = load(final, progress=None)
    for k, (name, (kind, level, modes, n)) in enumerate(plan.eval_sets.items()):
        t0 = time.monotonic()
        folder = work / "eval" / name
        task_seed = plan.eval_seed * 10 + k
        write_tasks(folder / "tasks.jsonl", kind, task_seed, n, level=level, split="test")
        if (folder / "run").exists():
            shutil.rmtree(folder / "run")
        res = evaluate_model(model_eval, folder / "tasks.jsonl", modes, folder / "run")
        res.update({"kind": kind, "level": level, "seed": task_seed, "n": n})
        record["eval"][name] = res
        say(f"eval {name}: {json.dumps(res)}")
        record["timings"][f"eval/{name}"] = round(time.monotonic() - t0, 1)

    say("5/5 model folder and card")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(final, out)
    write_agent_info(out, {"build": {"seed": plan.seed, "command": f"r1v4-nb build-demo-model --seed {plan.seed}"}})
    record["timings"]["total"] = round(time.monotonic() - t_start, 1)
    record["torch_threads"] = plan.threads
    (out / "build.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    from .card import write_card

    write_card(out, record)
    say(f"done in {record['timings']['total']:.0f}s: {out}")
    return record


def _prompts_corpus() -> list[str]:
    from ..models.default import PROMPTS

    return list(PROMPTS.values()) * 4


def _plan_json(plan: BuildPlan) -> dict[str, Any]:
    d = asdict(plan)
    d["eval_seed"] = plan.eval_seed
    return d


class _StageProgress:
    """Loss lines during a stage, in the build's log."""

    def __init__(self, say: Callable[[str], None], name: str):
        self.say, self.name = say, name

    def on_start(self, info: Any) -> None:
        self.say(f"stage {self.name}: {info.examples} examples, {info.total_steps} steps")

    def on_step(self, m: Any) -> None:
        self.say(f"  {self.name} step {m.step}/{m.total_steps} loss {m.loss:.4f} lr {m.lr:.2e} "
                 f"({m.elapsed_s:.0f}s, eta {m.eta_s:.0f}s)")

    def on_checkpoint(self, step: int, path: Path) -> None:
        pass

    def on_end(self, result: Any) -> None:
        pass
