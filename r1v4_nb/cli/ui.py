"""`r1v4-nb export-html FILE -o OUT.html`: a standalone HTML page of a recorded run."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-html", help="write a standalone HTML page of a run (no script, images inline)")
    p.add_argument("file", help="trajectory file (.jsonl)")
    p.add_argument("-o", "--out", help="output file (default: FILE with .html)")
    p.set_defaults(func=_export_html)


def _export_html(args: argparse.Namespace) -> int:
    from ..ui.api import export_html

    out = export_html(args.file, args.out)
    print(json.dumps({"html": str(out), "bytes": out.stat().st_size}))
    return 0
