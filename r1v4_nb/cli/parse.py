"""`r1v4-nb parse [--dialect NAME] FILE|-`: model output (or a whole transcript) as segments in JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..dialects import DIALECTS, get_dialect
from . import bounded_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("parse", help="parse model output into segments and tool calls (JSON)")
    p.add_argument("file", help="a text file of model output or a transcript; - reads stdin")
    p.add_argument("--dialect", default="r1v4", help=f"the text format: {', '.join(DIALECTS)} (default r1v4)")
    p.add_argument("--chunk", type=bounded_int(1, 1 << 30), default=None, metavar="BYTES",
                   help="feed the parser this many bytes at a time, as a stream would (default: all at once)")
    p.set_defaults(func=cmd_parse)


def cmd_parse(args: argparse.Namespace) -> int:
    dialect = get_dialect(args.dialect)
    data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    parser = dialect.parser()
    size = args.chunk or max(1, len(data))
    for i in range(0, len(data), size):
        parser.feed(data[i:i + size])
    parser.finish()
    segments = parser.segments
    out = {
        "dialect": dialect.name,
        "segments": [s.to_json() for s in segments],
        "calls": sum(s.call is not None for s in segments),
        "errors": sum(bool(s.call and s.call.error) for s in segments),
    }
    json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    return 0
