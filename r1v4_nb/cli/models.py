"""`r1v4-nb tiny-model` and `r1v4-nb serve`: model commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UsageError
from . import bounded_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tiny-model", help="write a tiny random Qwen3-VL(-MoE) model folder for tests and tutorials")
    p.add_argument("out", metavar="OUT", help="folder to write")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--moe", dest="moe", action="store_true", default=True, help="Qwen3-VL-MoE (default)")
    kind.add_argument("--dense", dest="moe", action="store_false", help="dense Qwen3-VL")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden", type=bounded_int(64, 4096), default=64, help="hidden width (a multiple of 64)")
    p.add_argument("--layers", type=bounded_int(1, 64), default=2, help="decoder layers (1 to 64)")
    p.set_defaults(func=_tiny_model)

    s = sub.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions)")
    s.add_argument("model", metavar="MODEL", help="model folder, hub id, tiny / tiny-dense, or replay:PATH")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    s.add_argument("--port", type=_port, default=8000, help="port (0: any free port; default 8000)")
    q = s.add_mutually_exclusive_group()
    q.add_argument("--4bit", dest="quantization", action="store_const", const="4bit", help="NF4 weights and experts")
    q.add_argument("--8bit", dest="quantization", action="store_const", const="8bit", help="8-bit weights")
    s.add_argument("--adapter", help="LoRA adapter folder to apply")
    s.add_argument("--name", help="model name to report (default: the model's name)")
    s.add_argument("--verbose", action="store_true", help="log each request")
    s.set_defaults(func=_serve, quantization=None)


def _port(text: str) -> int:
    """A TCP port, checked before the model loads (a bad one used to fail only after loading, with a traceback)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (use 0-65535; 0 picks a free one)")
    return port


def _tiny_model(args: argparse.Namespace) -> int:
    from ..models.tiny import make_tiny_model

    path = make_tiny_model(args.out, moe=args.moe, seed=args.seed, hidden=args.hidden, layers=args.layers)
    print(json.dumps({"path": str(path), "moe": args.moe}))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from ..models.loader import load_model
    from ..models.serve import ModelServer

    if args.adapter is not None and not (Path(args.adapter).expanduser() / "adapter_config.json").is_file():
        raise UsageError(f"--adapter {args.adapter}: no LoRA adapter there (a folder with adapter_config.json, "
                         "as training writes); check the path")
    model = load_model(args.model, quantization=args.quantization, adapter=args.adapter)
    try:
        server = ModelServer(model, args.host, args.port, name=args.name, verbose=args.verbose)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}); pick another --port") from None
    print(json.dumps({"url": server.url, "model": server.model_name}), flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
