"""`show`, `validate`, `export`, `import-api`, `import-sharegpt`: trajectory files from the shell.

`show` prints a run for people (`--json` for programs); the others print JSON.
An unreadable file is one line on stderr and exit code 2 (`validate` also
prints `{"ok": false, "error": ...}` on stdout).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..records import ModelStep, NoteStep, ToolStep
from ..trajectory import Trajectory, TrajectoryError, read
from .printer import terminal_safe


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="print a trajectory step by step (--json: a JSON summary)")
    p.add_argument("file", help="trajectory .jsonl")
    p.add_argument("--json", action="store_true", help="a JSON summary instead of text")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("validate", help="check a trajectory file and its images; prints JSON")
    p.add_argument("file", help="trajectory .jsonl")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("export", help="convert trajectories to OpenAI / Hugging Face / ShareGPT records")
    p.add_argument("files", nargs="+", metavar="FILE", help="trajectory .jsonl file(s)")
    p.add_argument("--to", required=True, choices=["openai", "hf", "sharegpt"], help="target format")
    p.add_argument("-o", "--out", help="output file (default: stdout)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import-api", help="turn a saved reply of the hosted Skywork-R1V4 API into a trajectory")
    p.add_argument("response", help="the reply as JSON (a chat completion, or {request, response})")
    p.add_argument("-o", "--out", required=True, help="trajectory .jsonl to write")
    p.add_argument("--question", help="the question asked (when the file does not hold the request)")
    p.add_argument("--image", action="append", default=[], help="an input image file (repeatable)")
    p.set_defaults(func=cmd_import_api)

    p = sub.add_parser("import-sharegpt", help="turn LLaMA-Factory ShareGPT records into trajectories")
    p.add_argument("file", help="ShareGPT .json or .jsonl (image paths relative to its folder)")
    p.add_argument("-o", "--out", required=True, help="folder for the trajectories (<id>.jsonl each)")
    p.add_argument("--dialect", help="dialect of the model turns (default: the record's, else r1v4)")
    p.set_defaults(func=cmd_import_sharegpt)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2))


def cmd_show(args: argparse.Namespace) -> int:
    traj = read(args.file)
    if args.json:
        _print_json(summary(traj))
        return 0
    sys.stdout.write(render_text(traj))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        traj = read(args.file)
        bad = image_problems(traj)
        if bad:
            raise TrajectoryError(f"{args.file}: {bad[0]}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
    except TrajectoryError as exc:
        _print_json({"ok": False, "error": str(exc)})
        raise
    _print_json({"ok": True, "steps": len(traj.steps), "images": len(traj.all_images()),
                 "finished": traj.end is not None, "warnings": traj.warnings})
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..formats import export, export_text

    trajs = [read(f) for f in args.files]
    for t in trajs:
        for w in t.warnings:
            print(f"r1v4-nb export: warning: {w}", file=sys.stderr)
    if args.to == "sharegpt":
        from ..formats.sharegpt import llamafactory_problems, to_sharegpt

        for f, t in zip(args.files, trajs, strict=True):
            problems = llamafactory_problems(to_sharegpt(t))
            if problems:
                print(f"r1v4-nb export: warning: {f}: LLaMA-Factory would skip this record: "
                      f"{'; '.join(problems)}", file=sys.stderr)
    if args.out is None:
        sys.stdout.write(export_text(trajs, args.to))
        return 0
    path = export(trajs, args.to, args.out)
    _print_json({"path": str(path), "format": args.to, "records": len(trajs)})
    return 0


def cmd_import_api(args: argparse.Namespace) -> int:
    from ..formats.r1v4_api import import_reply

    if not Path(args.response).is_file():
        raise UsageError(f"no such file: {args.response}")
    traj = import_reply(args.response, args.out, question=args.question, images=args.image)
    for w in traj.warnings:
        print(f"r1v4-nb import-api: warning: {w}", file=sys.stderr)
    _print_json({"path": str(traj.path), "steps": len(traj.steps), "images": len(traj.all_images()),
                 "answer": traj.answer, "warnings": traj.warnings})
    return 0


def cmd_import_sharegpt(args: argparse.Namespace) -> int:
    from ..formats.sharegpt import import_file

    if not Path(args.file).is_file():
        raise UsageError(f"no such file: {args.file}")
    written = import_file(args.file, args.out, dialect=args.dialect)
    _print_json({"written": [str(p) for p in written]})
    return 0


def image_problems(traj: Trajectory) -> list[str]:
    """Images that are missing, no longer have the hash they are named by, or do not decode, each named by
    the step that holds it (`input` for the question's images)."""
    from PIL import Image as PILImage

    where: list[tuple[str, Any]] = [("input", im) for im in traj.header.images]
    where += [(f"step {s.index}", im) for s in traj.steps
              for im in (s.observation.images if isinstance(s, ToolStep) else s.images if isinstance(s, NoteStep) else [])]
    problems, seen = [], set()
    for place, im in where:
        if (place, im.sha256) in seen:
            continue
        seen.add((place, im.sha256))
        if not im.path.is_file():
            problems.append(f"{place}: image {im.path} is missing")
            continue
        digest = hashlib.sha256(im.path.read_bytes()).hexdigest()
        if digest != im.sha256:
            problems.append(f"{place}: image {im.path} does not match its sha256 {im.sha256[:12]} (the file was changed)")
            continue
        try:
            with PILImage.open(im.path) as pil:
                pil.load()
        except Exception as exc:  # PIL raises many types for a broken file
            problems.append(f"{place}: image {im.path} does not decode ({type(exc).__name__}: {exc})")
    return problems


def summary(traj: Trajectory) -> dict[str, Any]:
    """What a program wants to know about a run without reading every line."""
    h = traj.header
    steps = []
    for s in traj.steps:
        d: dict[str, Any] = {"index": s.index, "type": s.type}
        if isinstance(s, ModelStep):
            d.update(kinds=[seg.kind for seg in s.segments], calls=[c.name for c in s.calls],
                     tokens_out=s.tokens_out, finish_reason=s.finish_reason)
        elif isinstance(s, ToolStep):
            d.update(tool=s.call.name, error=s.observation.error, images=len(s.observation.images),
                     elapsed_s=s.elapsed_s)
        elif isinstance(s, NoteStep):
            d.update(text=s.text, reason=s.reason)
        steps.append(d)
    return {
        "id": h.id, "path": str(traj.path), "created": h.created, "model": h.model.get("name"),
        "dialect": h.dialect, "mode": h.mode, "question": h.question, "images": len(h.images),
        "parent": h.parent, "steps": steps, "answer": traj.answer,
        "end": None if traj.end is None else traj.end.to_json(), "warnings": traj.warnings,
    }


def render_text(traj: Trajectory, max_chars: int = 2000) -> str:
    """A run as plain text: the header, one block per step, the answer."""
    h = traj.header

    def clip(text: str) -> str:
        return text if len(text) <= max_chars else text[:max_chars] + f" … ({len(text) - max_chars} more chars)"

    out = [f"trajectory {h.id} · {h.model.get('name', '?')} · dialect {h.dialect} · mode {h.mode} · {h.created}"]
    if h.parent:
        out.append(f"forked from {h.parent.get('id')} at step {h.parent.get('step')} ({h.parent.get('path')})")
    out.append(f"question: {h.question}")
    for im in h.images:
        out.append(f"image: {im.provenance.name or im.path.name} ({im.width}x{im.height}) {im.sha256[:12]}")
    for s in traj.steps:
        out.append("")
        if isinstance(s, ModelStep):
            out.append(f"── step {s.index} · model · {s.tokens_out} tokens · {s.elapsed_s:.2f} s · {s.finish_reason}")
            for seg in s.segments:
                if seg.call is not None:
                    args = json.dumps(seg.call.arguments, ensure_ascii=False)
                    line = f"[{seg.kind}] {seg.call.name or '?'} {clip(args)}"
                    out.append(line + (f"  (error: {seg.call.error})" if seg.call.error else ""))
                else:
                    out.append(f"[{seg.kind}] {clip(seg.text)}")
        elif isinstance(s, ToolStep):
            out.append(f"── step {s.index} · tool {s.call.name or '?'} · {s.elapsed_s:.2f} s")
            if s.observation.text:
                out.append(clip(s.observation.text))
            if s.observation.error:
                out.append(f"error: {s.observation.error}")
            for im in s.observation.images:
                p = im.provenance
                where = p.kind + (f" of step {p.step}" if p.step is not None else "")
                box = f" box {p.box}" if p.box else ""
                out.append(f"  image {im.path} ({im.width}x{im.height}) from {where}{box}")
        else:
            out.append(f"── step {s.index} · note ({s.reason or 'agent'})")
            out.append(clip(s.text))
    out.append("")
    if traj.end is not None:
        e = traj.end
        usage = ", ".join(f"{k} {v}" for k, v in e.usage.items())
        out.append(f"end: {e.reason} · {e.elapsed_s:.2f} s" + (f" · {usage}" if usage else ""))
        if e.error:
            out.append(f"error: {e.error}")
    else:
        out.append("end: none (the run was cut off or is still going)")
    out.append(f"answer: {traj.answer if traj.answer is not None else '(none)'}")
    for w in traj.warnings:
        out.append(f"warning: {w}")
    return terminal_safe("\n".join(out)) + "\n"
