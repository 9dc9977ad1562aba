"""`r1v4-nb world tasks` (generated task files) and `r1v4-nb build-demo-model` (the default agent)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import UsageError

__all__ = ["add_world_tasks", "register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-demo-model",
                       help="rebuild the default agent: tasks, expert rollouts, filters, SFT, evaluation, model card")
    p.add_argument("--seed", type=int, default=0, help="the build's seed (tasks, initialisation, data order)")
    p.add_argument("--out", type=Path, default=Path("runs/default-model"),
                   help="the model folder to write (the shipped one is r1v4_nb/demo/model)")
    p.add_argument("--work", type=Path, default=None,
                   help="where tasks, trajectories and stage checkpoints go (default: OUT beside, .build-NAME)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply every task count and step count (0.1: a quick check of the pipeline)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared 2-core machine two threads are slower)")
    p.set_defaults(func=cmd_build)


def add_world_tasks(world_commands: argparse._SubParsersAction) -> None:
    """`r1v4-nb world tasks`, registered under the `world` command."""
    t = world_commands.add_parser("tasks", help="write a generated task file (zoom, search or interleaved) "
                                  "with its images beside it")
    t.add_argument("--kind", required=True, choices=["zoom", "search", "interleaved", "locate"])
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--n", type=int, default=100, help="number of tasks")
    t.add_argument("--level", type=int, default=2, help="zoom difficulty: 0 easy, 1, 2 the full task (default)")
    t.add_argument("--split", default="test")
    t.add_argument("-o", "--out", type=Path, required=True, metavar="FILE.jsonl")
    t.set_defaults(func=cmd_tasks)


def cmd_tasks(args: argparse.Namespace) -> int:
    from ..world.tasks import write_tasks

    if args.out.suffix != ".jsonl":
        raise UsageError(f"{args.out}: the task file is JSON Lines; name it FILE.jsonl")

    def progress(i: int, n: int) -> None:
        if i % 100 == 0 or i == n:
            print(f"tasks: {i}/{n}", file=sys.stderr)

    tasks = write_tasks(args.out, args.kind, args.seed, args.n, level=args.level, split=args.split,
                        progress=progress)
    print(json.dumps({"tasks": str(args.out), "kind": args.kind, "seed": args.seed, "n": len(tasks),
                      "images": str(args.out.parent / "images")}))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from ..train.build import BuildPlan, build_demo_model

    if args.scale <= 0:
        raise UsageError(f"--scale {args.scale}: must be above 0")
    plan = BuildPlan(seed=args.seed, threads=args.threads).scaled(args.scale)
    record = build_demo_model(args.out, plan, work=args.work)
    print(json.dumps({"model": str(args.out), "eval": record["eval"], "minutes": round(record["timings"]["total"] / 60, 1)}))
    return 0
