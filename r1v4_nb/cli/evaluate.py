"""`r1v4-nb eval tasks | run | score | report | compare`: evaluation from the shell.

Every subcommand writes what scripts need as files (results.jsonl, report.json) or JSON on stdout
(`--json`), and prints a readable table otherwise.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate models on task sets: tasks, run, score, report, compare")
    esub = p.add_subparsers(dest="eval_command", metavar="SUBCOMMAND")
    esub.required = True

    t = esub.add_parser("tasks", help="read a task file and print what was read")
    t.add_argument("file", help="our JSONL, a VLMEvalKit TSV, a saved datasets folder, parquet, or JSON")
    _task_options(t)
    t.add_argument("--json", action="store_true", help="print the summary as JSON")
    t.add_argument("--convert", default=None, metavar="OUT.jsonl", help="also write the tasks as our JSONL")
    t.set_defaults(func=cmd_tasks)


def _task_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skip-bad", action="store_true", help="skip bad rows (counted in the report) instead of "
                   "stopping at the first")
    p.add_argument("--format", default=None, choices=["jsonl", "json", "tsv", "hf", "parquet"],
                   help="the file's format (default: from its name)")
    p.add_argument("--image-dir", default=None, help="where images given as bytes are written "
                   "(default: the cache folder's eval-images/)")


def _load(args: argparse.Namespace, path: str) -> Any:
    from ..eval.tasks import load_tasks

    return load_tasks(path, skip_bad=args.skip_bad, format=args.format, image_dir=args.image_dir)


def cmd_tasks(args: argparse.Namespace) -> int:
    from ..eval.tasks import write_tasks

    ts = _load(args, args.file)
    if args.convert:
        write_tasks(args.convert, list(ts))
    s = ts.summary()
    if args.json:
        print(json.dumps(s, ensure_ascii=False, indent=1))
        return 0
    print(f"{s['file']} ({s['format']}): {s['tasks']} tasks, {s['skipped']} skipped")
    for line in ts.skipped[:10]:
        print(f"  skipped {line}")
    if len(ts.skipped) > 10:
        print(f"  ... and {len(ts.skipped) - 10} more skipped")
    rows = [("categories", _counts(s["categories"])), ("splits", _counts(s["splits"])),
            ("multiple choice", f"{s['multiple_choice']} (choices per question: {_counts(s['choices_per_question'])}; "
                                f"gold letters: {_counts(s['gold_letters'])})" if s["multiple_choice"] else "0"),
            ("images", f"{s['images']} (per task: {_counts(s['images_per_task'])})"),
            ("image size", ", ".join(f"{k} {v}" for k, v in s["image_size"].items()) or "-")]
    if args.convert:
        rows.append(("written", args.convert))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
    return 0


def _counts(d: dict[Any, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "-"
