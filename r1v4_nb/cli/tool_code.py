"""`r1v4-nb tool code`: run Python in the code tool's sandbox by hand; prints the observation as JSON."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import uuid
from pathlib import Path

from ..errors import UsageError
from ..images import Image, Provenance
from ..tools.base import ToolContext, ToolError
from . import bounded_int


def register(tools: argparse._SubParsersAction) -> None:
    p = tools.add_parser("code", help="run Python on images in the sandbox (the `code` tool)")
    p.add_argument("source", nargs="?", default="-", metavar="FILE|-", help="Python file to run ('-': stdin)")
    p.add_argument("--image", action="append", default=[], metavar="IMG",
                   help="an input image (repeatable): image_1, image_2, ... in the code")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="wall time limit in seconds")
    p.add_argument("--memory-mb", type=bounded_int(64, 1 << 20), default=4096, metavar="N",
                   help="memory limit in MiB (64 to 1048576)")
    p.add_argument("--workdir", type=Path, help="scratch folder (default: a new temporary folder, kept)")
    p.add_argument("--require-network-isolation", action="store_true",
                   help="refuse to run where a network namespace cannot be created")
    p.add_argument("--require-isolation", action="store_true",
                   help="refuse to run unless model code sees nothing of the host (private root, /proc, network)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..tools.code import CodeTool

    if not (0 < args.timeout < math.inf) or args.memory_mb < 64:  # `not (...)` also refuses nan
        raise UsageError("--timeout must be a positive number of seconds and --memory-mb at least 64")
    try:
        code = sys.stdin.read() if args.source == "-" else Path(args.source).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{args.source} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                         "save the code as UTF-8") from None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="r1v4-code-"))
    if workdir.exists() and not workdir.is_dir():
        raise UsageError(f"--workdir {workdir} is a file; give a folder (it is created when missing)")
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = ToolContext(trajectory_id=uuid.uuid4().hex[:8], workdir=workdir.resolve(), step=1)
    for i, path in enumerate(args.image, 1):
        try:
            image = Image.from_file(path, Provenance("input", name=str(path)))
        except ValueError as exc:
            raise UsageError(f"{exc}; pass a PNG, JPEG, WebP, GIF or BMP file to --image") from exc
        ctx.register_image(image, f"image_{i}", Path(path).name, str(path))
    tool = CodeTool(timeout_s=args.timeout, memory_mb=args.memory_mb,
                    require_network_isolation=args.require_network_isolation,
                    require_isolation=args.require_isolation)
    try:
        tool.start(ctx)
        obs = tool.run({"code": code}, ctx)
    except ToolError as exc:
        raise UsageError(f"the sandbox could not run: {exc}") from exc
    finally:
        tool.finish(ctx)
    # the files the code saved, in the (kept) scratch folder; the checked copies went with the worker
    images = [os.path.normpath(workdir.resolve() / (im.provenance.name or im.path.name)) for im in obs.images]
    print(json.dumps({
        "text": obs.text, "images": images, "error": obs.error,
        "elapsed_s": obs.data.get("elapsed_s"), "limits_hit": obs.limits_hit,
    }, indent=2))
    return 0
