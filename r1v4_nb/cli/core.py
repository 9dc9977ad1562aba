"""`r1v4-nb run | rerun | demo`: running the agent from the shell (`replay`: the old name of `rerun`)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from itertools import zip_longest
from pathlib import Path
from typing import Any

from ..errors import R1V4Error, UsageError
from ..modes import mode_names
from .printer import Printer

DEMO_SEED = 2026  # the default task of `r1v4-nb demo`


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the agent on a question about image(s)")
    p.add_argument("question", help="the question (use - to read it from stdin)")
    p.add_argument("--image", action="append", default=[], metavar="PATH", help="an input image (repeatable)")
    p.add_argument("--model", default=None, help="'default' (the shipped agent), a model folder, hub id, 'tiny', 'demo' or replay:TRAJECTORY.jsonl")
    p.add_argument("--endpoint", default=None, help="an OpenAI-compatible server URL (vLLM, SGLang, r1v4-nb serve)")
    p.add_argument("--api-key-env", default=None, help="environment variable holding the API key")
    p.add_argument("--4bit", dest="quantization", action="store_const", const="4bit")
    p.add_argument("--8bit", dest="quantization", action="store_const", const="8bit")
    _run_options(p)
    p.set_defaults(func=cmd_run)

    # `rerun`, not `replay`: `%r1v4 replay` opens the debugger. The old name stays as an alias.
    p = sub.add_parser("rerun", aliases=["replay"],
                       help="re-run a recorded trajectory (model turns replayed); 'replay' is the old name")
    p.add_argument("file", help="a trajectory .jsonl")
    p.add_argument("--live-tools", action="store_true", help="run the tools live instead of replaying them")
    p.add_argument("--out", default=None, help="where to write the new trajectory")
    p.add_argument("--quiet", action="store_true", help="print only the final JSON summary")
    p.set_defaults(func=cmd_rerun)

    p = sub.add_parser("demo", help="the main job: the default agent, live, on a generated task, step by step")
    p.add_argument("--mode", default="general", choices=["general", "deepresearch"],
                   help="general: find the named plaque, crop and zoom it with code, read it; deepresearch: crop "
                   "the inset, reverse image search it, read its page over the offline demo world")
    p.add_argument("--seed", type=int, default=None,
                   help=f"generate the task with this seed (default {DEMO_SEED}: the default task)")
    p.add_argument("--model", default="default", help="the model to run live (default: the trained default agent)")
    p.add_argument("--replay", action="store_true",
                   help="instead: the hand-written demonstration, replayed (its model turns are a recording)")
    p.add_argument("--replay-tools", action="store_true", help="with --replay: replay the tools from the record too")
    p.add_argument("--out", default=None, help="where to write the trajectory (default runs/demo-<id>.jsonl)")
    p.set_defaults(func=cmd_demo)


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", default="general", choices=mode_names())
    p.add_argument("--dialect", default="r1v4")
    p.add_argument("--max-steps", type=int, default=12)
    p.add_argument("--max-tool-calls", type=int, default=10)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--max-tokens", type=int, default=2048, help="tokens per model turn")
    p.add_argument("--out", default=None, help="trajectory path (default runs/<id>.jsonl)")
    p.add_argument("--quiet", action="store_true", help="print only the final JSON summary")


def _summary(result: Any) -> dict[str, Any]:
    t = result.trajectory
    return {"path": str(result.path), "answer": result.answer, "reason": result.reason,
            "steps": len(t.steps), "tool_calls": len(t.tool_steps)}


def _execute(agent: Any, events: Any, quiet: bool) -> int:
    if not quiet:
        agent.subscribe(Printer())
    result = agent.collect(events)
    if quiet:
        print(json.dumps(_summary(result)))
    else:
        print(f"trajectory: {result.path}")
    return 0 if result.reason == "answered" else 1


def cmd_run(args: argparse.Namespace) -> int:
    from ..agent import Agent, Budgets
    from ..models.base import GenerationSettings
    from ..models.loader import load_model

    if args.model is None and args.endpoint is None:
        raise UsageError("no model given: pass --model (a folder, a hub id, 'tiny') or --endpoint URL; "
                         "'r1v4-nb demo' shows the bundled demonstration")
    question = sys.stdin.read() if args.question == "-" else args.question
    model = load_model(args.model, endpoint=args.endpoint, api_key_env=args.api_key_env,
                       quantization=args.quantization)
    agent = Agent(model, dialect=args.dialect, mode=args.mode,
                  budgets=Budgets(max_steps=args.max_steps, max_tool_calls=args.max_tool_calls,
                                  max_tokens_per_turn=args.max_tokens),
                  settings=GenerationSettings(temperature=args.temperature, max_tokens=args.max_tokens))
    return _execute(agent, agent.run(question, args.image, out=args.out), args.quiet)


def cmd_rerun(args: argparse.Namespace) -> int:
    from ..runs import rerun
    from ..trajectory import read

    traj = read(args.file)
    for w in traj.warnings:
        print(f"warning: {w}", file=sys.stderr)
    agent, events = rerun(traj, live=args.live_tools, out=args.out)
    return _execute(agent, events, args.quiet)


def cmd_demo(args: argparse.Namespace) -> int:
    """The default agent deciding live on a generated task; `--replay` for the hand-written demonstrations."""
    if args.replay:
        return _replay_demo(args)
    if args.replay_tools:
        raise UsageError("--replay-tools goes with --replay (a live demo runs its tools live)")
    from ..agent import Agent, Budgets
    from ..models.base import GenerationSettings
    from ..models.loader import load_model
    from ..tools.registry import default_tools
    from ..trajectory import new_id
    from ..world.tasks import write_tasks

    seed = DEMO_SEED if args.seed is None else args.seed
    kind = "zoom" if args.mode == "general" else "interleaved"
    folder = Path("runs") / f"demo-task-{kind}-{seed}"
    if args.mode == "deepresearch":
        from ..world import ensure_world

        ensure_world(quiet=False)
    (task,) = write_tasks(folder / "tasks.jsonl", kind, seed, 1, split="demo")
    model = load_model(args.model)
    print(f"r1v4-nb demo: {model.describe().get('name')} decides live, with live tools, on a {kind} task "
          f"generated with seed {seed} (nothing is replayed).")
    print(f"task: {task.question}  image: {folder / task.images[0]}\n")
    agent = Agent(model, tools=default_tools(args.mode), mode=args.mode,
                  budgets=Budgets(max_steps=6, max_tool_calls=4, max_tokens_per_turn=256),
                  settings=GenerationSettings(temperature=0.0))
    out = Path(args.out) if args.out else Path("runs") / f"demo-{new_id()}.jsonl"
    agent.subscribe(Printer(max_obs_chars=1200))
    result = agent.collect(agent.run(task.question, [folder / task.images[0]], out=out,
                                     meta={"source": "r1v4-nb demo", "task": task.id, "gold": task.answer}))
    verdict = ("correct" if result.answer == task.answer else "wrong") if result.answer is not None else "no answer"
    print(f"\nanswer: {result.answer!r}   gold: {task.answer!r}   ({verdict})")
    print(f"trajectory written to {result.path}; open it:  r1v4-nb show {result.path}")
    return 0 if result.answer is not None else 1



def _replay_demo(args: argparse.Namespace) -> int:
    from ..agent import Agent
    from ..models.replay import DEMO_TRAJECTORIES, demo_model
    from ..runs import WORLD_TOOLS, recorded_tools
    from ..trajectory import new_id, read, run_file

    path = DEMO_TRAJECTORIES[args.mode]
    if not path.is_file():
        raise UsageError(f"the bundled demo is missing at {path}; reinstall r1v4-nb")
    demo = read(path)
    tools, how = recorded_tools(demo), "replayed from the record"
    if not args.replay_tools:
        try:
            if any(t["name"] in WORLD_TOOLS for t in demo.header.tools):
                from ..world import ensure_world

                ensure_world(quiet=False)
                how = "run live (searches over the offline demo world)"
            else:
                how = "run live"
            tools = recorded_tools(demo, live=True)
        except (ImportError, OSError, R1V4Error) as exc:
            how = "replayed from the record"
            print(f"note: live tools unavailable ({exc}); replaying them from the record", file=sys.stderr)
    print(f"r1v4-nb demo: the model turns are a hand-written demonstration, replayed; the tools are {how}.\n")
    agent = Agent.from_header(demo.header, demo_model(args.mode), tools)
    stem = "demo" if args.mode == "general" else f"demo-{args.mode}"
    out = Path(args.out) if args.out else run_file("runs", f"{stem}-{new_id()}")
    agent.subscribe(Printer(max_obs_chars=1200))
    result = agent.collect(agent.run(demo.header.question, demo.header.images, out=out,
                                     meta={"source": "r1v4-nb demo", "gold": demo.header.meta.get("gold")}))
    print(f"\ntrajectory written to {result.path} (images in {result.path.with_suffix('')}.images/)")
    print("open it:  r1v4-nb show " + str(result.path))
    print("   or in JupyterLab:  %load_ext r1v4_nb   then   %r1v4 replay " + str(result.path))
    gold = demo.header.meta.get("gold")
    if gold is not None and result.answer != gold:
        print(f"the answer {result.answer!r} differs from the demonstration's {gold!r}", file=sys.stderr)
        return 1
    moved = _diverged(demo, result.trajectory)
    if moved:
        print(f"{moved}: the demonstration's reasoning no longer follows from what the tools find (the demo world "
              f"or a tool changed); rebuild it with `python scripts/make_demo.py {args.mode}`", file=sys.stderr)
        return 1
    return 0


_SIMILARITY = re.compile(r"similarity \d\.\d+")  # image match scores move a little across OpenCV versions


def _diverged(recorded: Any, live: Any) -> str | None:
    """Where the live run's tool results first differ from the recording (image similarity figures aside)."""
    for want, got in zip_longest(recorded.tool_steps, live.tool_steps):
        if want is None or got is None:
            return f"the run made {len(live.tool_steps)} tool calls, the recording {len(recorded.tool_steps)}"
        a, b = (_SIMILARITY.sub("similarity ~", s.observation.text) for s in (want, got))
        if a != b:
            return f"the live {got.call.name} result at step {got.index} differs from the recorded one"
    return None
