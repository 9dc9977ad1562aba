"""`r1v4-nb tiny-model` and `r1v4-nb serve`: model commands."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tiny-model", help="write a tiny random Qwen3-VL(-MoE) model folder for tests and tutorials")
    p.add_argument("out", metavar="OUT", help="folder to write")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--moe", dest="moe", action="store_true", default=True, help="Qwen3-VL-MoE (default)")
    kind.add_argument("--dense", dest="moe", action="store_false", help="dense Qwen3-VL")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden", type=int, default=64, help="hidden width (a multiple of 64)")
    p.add_argument("--layers", type=int, default=2)
    p.set_defaults(func=_tiny_model)


def _tiny_model(args: argparse.Namespace) -> int:
    from ..models.tiny import make_tiny_model

    path = make_tiny_model(args.out, moe=args.moe, seed=args.seed, hidden=args.hidden, layers=args.layers)
    print(json.dumps({"path": str(path), "moe": args.moe}))
    return 0
