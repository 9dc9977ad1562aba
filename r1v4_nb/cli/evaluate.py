"""`r1v4-nb eval tasks | run | score | report | compare | rollouts | curate`: evaluation and curation from the shell.

Every subcommand writes what scripts need as files (results.jsonl, report.json) or JSON on stdout
(`--json`), and prints a readable table otherwise.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
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

    r = esub.add_parser("run", help="run a model on a task set in one or more modes; writes a run folder")
    r.add_argument("tasks", help="the task file (any format 'eval tasks' reads)")
    r.add_argument("--model", default=None, help="'default' (the trained default agent), a model folder, hub id, "
                   "'tiny', 'demo', replay:TRAJECTORY.jsonl, or 'world-baseline' (the rule-based research baseline "
                   "for the offline world's questions)")
    r.add_argument("--endpoint", default=None, help="an OpenAI-compatible server URL (vLLM, SGLang, r1v4-nb serve)")
    r.add_argument("--model-name", default=None, help="the model name to ask the endpoint for (default: its first)")
    r.add_argument("--api-key-env", default=None, help="environment variable holding the endpoint's API key")
    r.add_argument("--replay", default=None, metavar="RUN_DIR", help="replay each item's model turns from a run "
                   "folder (with --cache-mode read-only: an offline re-run)")
    r.add_argument("--modes", default="direct,general", help="comma-separated: direct, general, deepresearch "
                   "(default direct,general)")
    r.add_argument("--concurrency", type=int, default=1, help="items at once against an endpoint (default 1)")
    r.add_argument("--limit", type=int, default=None, help="only the first N tasks")
    r.add_argument("--out", default=None, help="the run folder (default runs/eval-<time>)")
    r.add_argument("--resume", action="store_true", help="finish a run folder that was stopped")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--temperature", type=float, default=0.0)
    r.add_argument("--max-tokens", type=int, default=2048, help="tokens per model turn")
    r.add_argument("--max-steps", type=int, default=12)
    r.add_argument("--max-tool-calls", type=int, default=10)
    r.add_argument("--dialect", default="r1v4")
    r.add_argument("--cache", default=None, help="the tool cache file (default: the shared one)")
    r.add_argument("--cache-mode", default=None, choices=["read-write", "read-only", "off"])
    r.add_argument("--quiet", action="store_true", help="no progress bar; print only the report's JSON path")
    _scorer_options(r)
    _task_options(r)
    r.set_defaults(func=cmd_run)

    s = esub.add_parser("score", help="score recorded trajectories again (no model runs)")
    s.add_argument("source", help="a run folder, or a folder of trajectories recorded elsewhere (with --tasks)")
    s.add_argument("--tasks", default=None, help="the task file (default: the run's own)")
    s.add_argument("--out", default=None, help="write a new run folder (default: re-score the run in place)")
    _scorer_options(s)
    _task_options(s)
    s.set_defaults(func=cmd_score)

    c = esub.add_parser("compare", help="items that flipped between two runs, with McNemar's test")
    c.add_argument("run_a")
    c.add_argument("run_b")
    c.add_argument("--mode", default=None, help="compare this mode of A ...")
    c.add_argument("--mode-b", default=None, help="... with this mode of B (default: the same)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compare)

    ro = esub.add_parser("rollouts", help="teacher rollouts: k runs per task with the tools, as trajectories")
    ro.add_argument("tasks")
    ro.add_argument("--model", default=None, help="as for 'eval run' (a folder, 'tiny', 'world-baseline', ...)")
    ro.add_argument("--endpoint", default=None, help="an OpenAI-compatible teacher (a large model on vLLM)")
    ro.add_argument("--model-name", default=None)
    ro.add_argument("-k", type=int, default=4, help="runs per task (default 4)")
    ro.add_argument("--mode", default="general", choices=["direct", "general", "deepresearch"])
    ro.add_argument("--concurrency", type=int, default=1)
    ro.add_argument("--temperature", type=float, default=0.7)
    ro.add_argument("--seed", type=int, default=0)
    ro.add_argument("--out", required=True, help="the rollout folder")
    ro.add_argument("--resume", action="store_true")
    _task_options(ro)
    ro.set_defaults(func=cmd_rollouts)

    cu = esub.add_parser("curate", help="filter trajectories into a dataset folder (with plans) that train reads")
    cu.add_argument("sources", nargs="+", help="trajectory files, folders or globs")
    cu.add_argument("--out", required=True, help="the dataset folder")
    cu.add_argument("--filters", default="format,answer,tool_errors,repeats,consistency",
                    help="filters in order, separated by ',' or ';' (settings after ':', e.g. 'length:max_turns=8'; "
                    "use ';' between filters when one has several settings)")
    cu.add_argument("--tasks", default=None, help="the task file with the gold answers (else meta.gold)")
    cu.add_argument("--no-plans", action="store_true", help="do not extract Plan-mode examples")
    cu.add_argument("--sharegpt", default=None, metavar="FILE.json", help="also export LLaMA-Factory ShareGPT")
    _scorer_options(cu)
    _task_options(cu)
    cu.set_defaults(func=cmd_curate)

    rep = esub.add_parser("report", help="print (and rewrite) a run folder's report")
    rep.add_argument("run_dir")
    rep.add_argument("--json", action="store_true")
    rep.set_defaults(func=cmd_report)


def _scorer_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scorer", default="auto", choices=["auto", "exact", "normalised", "numeric", "f1", "choice",
                                                        "judge"])
    p.add_argument("--judge-endpoint", default=None, help="an OpenAI-compatible endpoint for the LLM judge")
    p.add_argument("--judge-model", default=None, help="the judge's model name (default: the endpoint's first)")
    p.add_argument("--judge-cache", default=None, help="the cache file for judge verdicts (default: the tool cache)")
    p.add_argument("--judge-cache-mode", default=None, choices=["read-write", "read-only", "off"])


def _judge(args: argparse.Namespace) -> Any:
    from ..eval.scoring import judge_from_args

    return judge_from_args(args.judge_endpoint, args.judge_model, args.judge_cache, args.judge_cache_mode)


def _model(args: argparse.Namespace) -> Any:
    if args.model == "world-baseline":
        from ..eval.baseline import WorldBaseline

        return WorldBaseline()
    if args.model:
        from ..models.loader import load_model

        return load_model(args.model)
    return None


def cmd_rollouts(args: argparse.Namespace) -> int:
    from ..data.rollouts import rollouts
    from ..errors import UsageError

    if bool(args.model) == bool(args.endpoint):
        raise UsageError("give exactly one of --model or --endpoint for the teacher")
    rs = rollouts(list(_load(args, args.tasks)), _model(args), endpoint=args.endpoint, model_name=args.model_name,
                  k=args.k, mode=args.mode, out=args.out, concurrency=args.concurrency, temperature=args.temperature,
                  seed=args.seed, resume=args.resume)
    ends = Counter(r.get("reason") for r in rs.index)
    print(f"{len(rs.index)} trajectories in {rs.out / 'trajectories'} ({', '.join(f'{k} {v}' for k, v in ends.items())})")
    return 0


def cmd_curate(args: argparse.Namespace) -> int:
    from ..data.dataset import build_dataset, export_sharegpt

    tasks = list(_load(args, args.tasks)) if args.tasks else None
    sep = ";" if ";" in args.filters else ","  # ';' lets one filter take several settings: 'length:a=1,b=2;format'
    filters = [f.strip() for f in args.filters.split(sep) if f.strip()]
    ds = build_dataset(args.sources, args.out, filters, tasks=tasks, judge=_judge(args), plans=not args.no_plans)
    print(ds.report.markdown())
    print(ds.summary())
    if args.sharegpt:
        print(f"ShareGPT: {export_sharegpt(ds.out, args.sharegpt)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from ..errors import UsageError
    from ..eval.runner import run

    given = [x for x in (args.model, args.endpoint, args.replay) if x]
    if len(given) != 1:
        raise UsageError("give exactly one of --model, --endpoint or --replay")
    model = _model(args)
    result = run(_load(args, args.tasks), model, endpoint=args.endpoint, model_name=args.model_name,
                 api_key_env=args.api_key_env, modes=args.modes, out=args.out, concurrency=args.concurrency,
                 limit=args.limit, resume=args.resume, scorer=args.scorer, judge=_judge(args), cache=args.cache,
                 cache_mode=args.cache_mode, seed=args.seed, temperature=args.temperature,
                 max_tokens=args.max_tokens, max_steps=args.max_steps, max_tool_calls=args.max_tool_calls,
                 dialect=args.dialect, replay=args.replay, progress=None if args.quiet else "auto",
                 command=shlex.join(["r1v4-nb", *sys.argv[1:]]))
    if args.quiet:
        print(result.out / "report.json")
    else:
        print(result.markdown())
        print(f"run folder: {result.out}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from ..eval.rescore import rescore

    result = rescore(args.source, tasks=args.tasks, scorer=args.scorer, judge=_judge(args), out=args.out,
                     skip_bad=args.skip_bad)
    print(result.markdown())
    unmatched = result.report["run"].get("unmatched")
    if unmatched:
        print(f"{unmatched} trajectories matched no task (by meta.task or trajectory id)")
    print(f"run folder: {result.out}")
    return 0


def _records(path: str) -> list[dict[str, Any]]:
    from pathlib import Path

    from ..errors import UsageError
    from ..eval.runner import read_results

    records = read_results(path)
    if not records:
        raise UsageError(f"{path}: no results.jsonl (pass a run folder written by 'r1v4-nb eval run')")
    if not Path(path).is_dir():
        raise UsageError(f"{path}: not a run folder")
    return records


def cmd_compare(args: argparse.Namespace) -> int:
    from ..eval.report import compare, compare_markdown

    result = compare(_records(args.run_a), _records(args.run_b), args.mode, args.mode_b)
    print(json.dumps(result, ensure_ascii=False, indent=1) if args.json else compare_markdown(result), end="")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..eval.report import build_report, to_markdown, write_report
    from ..eval.runner import MANIFEST

    records = _records(args.run_dir)
    mpath = Path(args.run_dir) / MANIFEST
    manifest = json.loads(mpath.read_text(encoding="utf-8")) if mpath.is_file() else {}
    report = build_report(records, manifest)
    write_report(args.run_dir, report)
    print(json.dumps(report, ensure_ascii=False, indent=1) if args.json else to_markdown(report), end="")
    return 0


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
