"""`r1v4-nb train CONFIG`: the same SFT run as `%%r1v4 train`, with a progress bar on stderr.

The config is YAML, JSON or `key = value` lines (r1v4_nb.train.config); `--set
key=value` overrides single options. The result (adapter path, losses, steps)
is printed as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="LoRA / QLoRA SFT on trajectories (config: YAML, JSON or key = value lines)",
                       description="Train a LoRA adapter on trajectories. Ctrl-C saves a checkpoint and stops; "
                                   "rerun with --set resume=true to continue.")
    p.add_argument("config", help="the training config file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one option")
    p.add_argument("--dry-run", action="store_true", help="prepare the data, print its stats and stop")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..train import TrainConfig

    bad = [s for s in args.set if "=" not in s]
    if bad:
        raise UsageError(f"--set {bad[0]!r}: write KEY=VALUE")
    cfg = TrainConfig.from_file(args.config).with_overrides(args.set)
    if args.dry_run:
        return _dry_run(cfg)
    from ..train.progress import TerminalProgress
    from ..train.sft import train

    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        result = train(cfg, progress=TerminalProgress(), stop_event=stop)
    finally:
        signal.signal(signal.SIGINT, previous)
    print(json.dumps(result.to_json(), indent=1))
    return 0


def _dry_run(cfg: Any) -> int:
    from ..models.processor import load_processor
    from ..train.data import render_examples
    from ..train.filters import select, stats
    from ..train.sft import _read_sources

    if not cfg.data:
        from ..errors import UsageError

        raise UsageError("no training data: set data = [trajectory files, folders or globs]")
    trajs = _read_sources(cfg.data)
    sel = select(trajs, require_correct=cfg.require_correct, match=cfg.match,
                 drop_tool_errors=cfg.drop_tool_errors, drop_recrops=cfg.drop_recrops)
    examples = render_examples(sel.kept, load_processor(cfg.model, max_pixels=cfg.max_pixels or None), last_turn_only=cfg.last_turn_only,
                               max_length=cfg.max_length, overlong=cfg.overlong).examples if cfg.model else []
    print(stats(trajs, examples, sel).table())
    return 0
