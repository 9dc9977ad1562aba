"""`%r1v4` and `%%r1v4`: parse the arguments, call `api`, show errors as one line.

Subcommands are a plain dict (`SUBCOMMANDS`): adding one (e.g. `%%r1v4 train`)
is one entry mapping its name to `handler(argv, cell, shell)`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class

from ..errors import R1V4Error, UsageError
from . import api


class _ArgParser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line in the cell) instead of printing usage and exiting."""

    def error(self, message: str) -> None:
        raise UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> None:
        if message:
            print(message, end="")
        raise _HelpShown()


class _HelpShown(Exception):
    """`--help` was asked for and printed."""


def _parser(name: str, description: str | None = None) -> _ArgParser:
    return _ArgParser(prog=f"%r1v4 {name}", description=description or DESCRIPTIONS.get(name))


# What each subcommand does, for `%r1v4 help` and each `--help`.
DESCRIPTIONS: dict[str, str] = {
    "load": "load the session's model: a local folder, a hub id, 'tiny' (random weights, for tests), "
            "replay:FILE, demo (the hand-written demonstration, replayed), --endpoint URL; "
            "nothing or 'default': the default agent (a tiny model trained by r1v4-nb build-demo-model)",
    "status": "the model, memory, the tools each mode gets, the tool cache (a table; --json for JSON)",
    "tools": "show the tools (a table; --json for JSON), or: enable NAME | disable NAME | "
             "set NAME key=value ... | source auto|live|replay | reset",
    "ask": "%%r1v4 ask: run the agent on the question in the cell body, shown live",
    "replay": "the step-through debugger of a recorded run (FILE, or 'last'): contexts, fork, compare",
    "open": "the card view of a recorded run (FILE, or 'last': this session's last run)",
    "train": "%%r1v4 train: a LoRA / QLoRA run on trajectories; the cell body is the config",
    "help": "this list of subcommands and what each does",
}


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _show_table(title: str, rows: list[tuple[str, str]]) -> None:
    """Rows of (name, value) as an HTML table in a notebook, aligned text in a terminal."""
    from html import escape

    from IPython.display import display

    width = max((len(k) for k, _ in rows), default=0)
    text = "\n".join([title] + [f"  {k.ljust(width)}  {v}" for k, v in rows])
    cells = "".join(f'<tr><th style="text-align:left;padding:2px 12px 2px 0;vertical-align:top">{escape(k)}</th>'
                    f'<td style="text-align:left;padding:2px 0;white-space:pre-wrap">{escape(v)}</td></tr>'
                    for k, v in rows)
    html = (f'<div class="r1v4-table"><b>{escape(title)}</b><table style="border-collapse:collapse;'
            f'font-size:12px;margin-top:4px">{cells}</table></div>')
    display({"text/html": html, "text/plain": text}, raw=True)


def _status_rows(st: dict[str, Any]) -> list[tuple[str, str]]:
    model = st["model"]
    rows = [("model", model if isinstance(model, str) else " · ".join(
        f"{k}: {v}" for k, v in model.items() if v not in (None, "", {}) and k != "memory_bytes"))]
    rows.append(("memory", ", ".join(f"{k.removesuffix('_mb').replace('_', ' ')}: {v} MB"
                                     for k, v in st["memory"].items())))
    rows += [(f"tools ({mode})", ", ".join(names) or "none") for mode, names in st["tools"].items()]
    rows.append(("tool source", st["tool_source"]))
    if st["tool_settings"]:
        rows.append(("tool settings", "; ".join(f"{n}: {json.dumps(v)}" for n, v in st["tool_settings"].items())))
    c = st["cache"]
    rows.append(("tool cache", f"{c['path']} ({c['mode']}, {c.get('entries', 0)} entries"
                 + (f", {c['size_mb']} MB" if "size_mb" in c else "") + ")"))
    rows.append(("runs", f"{st['runs']} in this session, written to {st['runs_dir']}/"))
    return rows


def _tools_rows(t: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for name in t["available"]:
        modes = [m for m, names in t["by_mode"].items() if name in names]
        settings = t["settings"].get(name)
        rows.append((name, ("on in " + ", ".join(modes) if modes else "off")
                     + (f"; settings {json.dumps(settings)}" if settings else "")))
    rows.append(("source", t["source"] + " (auto: recorded observations for a replay model, live otherwise)"))
    return rows


# -- handlers: (argv, cell, shell) -> value shown as the cell's result (None: nothing) -------------------

def _load(argv: list[str], cell: str | None, shell: Any) -> Any:
    p = _parser("load")
    p.add_argument("model", nargs="?")
    q = p.add_mutually_exclusive_group()
    q.add_argument("--4bit", dest="quantization", action="store_const", const="4bit")
    q.add_argument("--8bit", dest="quantization", action="store_const", const="8bit")
    p.add_argument("--endpoint")
    p.add_argument("--api-key-env")
    p.add_argument("--adapter")
    a = p.parse_args(argv)
    model = api.load(a.model, quantization=a.quantization, endpoint=a.endpoint, api_key_env=a.api_key_env,
                     adapter=a.adapter)
    print(f"loaded: {model.describe().get('name', model)}")
    return None


def _status(argv: list[str], cell: str | None, shell: Any) -> Any:
    p = _parser("status")
    p.add_argument("--json", action="store_true", help="print JSON (in Python: r1v4_nb.ui.status() is the dict)")
    a = p.parse_args(argv)
    st = api.status()
    if a.json:
        _print_json(st)
    else:
        _show_table("r1v4 status", _status_rows(st))
    return None


def _tools(argv: list[str], cell: str | None, shell: Any) -> Any:
    p = _parser("tools")
    p.add_argument("action", nargs="?", choices=["enable", "disable", "set", "source", "reset"])
    p.add_argument("name", nargs="?")
    p.add_argument("settings", nargs="*", metavar="key=value")
    p.add_argument("--json", action="store_true", help="print JSON (in Python: r1v4_nb.ui.tools() is the dict)")
    a = p.parse_args(argv)
    settings = {}
    for item in a.settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"setting {item!r} is not key=value")
        settings[key] = _value(value)
    shown = api.tools(a.action, a.name, **settings)
    if a.json:
        _print_json(shown)
    else:
        _show_table("r1v4 tools", _tools_rows(shown))
    return None


def _value(text: str) -> Any:
    """A setting's value: JSON when it parses (numbers, true, null), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _ask(argv: list[str], cell: str | None, shell: Any) -> Any:
    p = _parser("ask")
    p.add_argument("--image", action="append", default=[], metavar="PATH|URL|VARIABLE",
                   help="an image file, an http(s) URL or a variable holding a PIL image, array or path")
    p.add_argument("--mode", choices=list(api.MODES), help="general (default), deepresearch or plan")
    p.add_argument("--max-steps", type=int, help="end the run after this many steps")
    p.add_argument("--wait", action="store_true",
                   help="block until the run ends; no Stop button (interrupt the kernel to stop)")
    p.add_argument("--recording", action="store_true",
                   help="with a replay model: replay its recording even if you asked something else "
                        "(shown under a banner, with the question it recorded)")
    a = p.parse_args(argv)
    question = (cell or "").strip()
    if not question:
        raise UsageError("write the question in the cell body under %%r1v4 ask")
    api.ask(question, a.image, mode=a.mode, max_steps=a.max_steps, wait=a.wait, recording=a.recording,
            namespace=shell.user_ns if shell is not None else None)
    return None


def _replay(argv: list[str], cell: str | None, shell: Any) -> Any:
    p = _parser("replay")
    p.add_argument("file", help="a trajectory .jsonl, or 'last' for this session's last run")
    api.replay(p.parse_args(argv).file)
    return None


def _open(argv: list[str], cell: str | None, shell: Any) -> Any:
    p = _parser("open")
    p.add_argument("file", help="a trajectory .jsonl, or 'last' for this session's last run")
    api.open(p.parse_args(argv).file)
    return None


def _train(argv: list[str], cell: str | None, shell: Any) -> Any:
    from .train_panel import magic_train

    p = _parser("train", "a LoRA / QLoRA run on trajectories, shown in a live panel (loss curve, step, ETA, Stop). "
                "The cell body is the config (YAML, JSON or key = value lines), e.g.\n  model = tiny-moe\n"
                "  data = runs/*.jsonl\n  max_steps = 30\n(the keys are r1v4_nb.train.TrainConfig's; "
                "see docs/training.md)")
    p.add_argument("--wait", action="store_true", help="block until the run ends (Stop then needs an interrupt)")
    a, unknown = p.parse_known_args(argv)
    if unknown:
        raise UsageError(f"unknown option {unknown[0]}; %%r1v4 train takes only --wait (and --help)")
    return magic_train(cell, a.wait, shell)


Handler = Callable[[list[str], "str | None", Any], Any]

SUBCOMMANDS: dict[str, Handler] = {
    "load": _load,
    "status": _status,
    "tools": _tools,
    "ask": _ask,
    "replay": _replay,
    "open": _open,
    "train": _train,
    "help": lambda argv, cell, shell: _help(),
}


def _help() -> None:
    width = max(len(n) for n in SUBCOMMANDS)
    print("%r1v4 SUBCOMMAND ... (line magic) or %%r1v4 ask|train ... (cell magic)\n")
    for name in SUBCOMMANDS:
        print(f"  {name.ljust(width)}  {DESCRIPTIONS.get(name, '')}")
    print("\n%r1v4 SUBCOMMAND --help explains one; docs/jupyter.md has the Python equivalents.")


def run_magic(line: str, cell: str | None = None, shell: Any = None) -> Any:
    """Parse and run one `%r1v4` / `%%r1v4` line; user errors print one line on stderr."""
    try:
        argv = shlex.split(line)
    except ValueError as exc:
        print(f"r1v4: error: {exc} (check the quotes)", file=sys.stderr)
        return None
    if not argv or argv[0] in ("-h", "--help", "help"):
        _help()
        return None
    name, rest = argv[0], argv[1:]
    handler = SUBCOMMANDS.get(name)
    try:
        if handler is None:
            raise UsageError(f"unknown subcommand {name!r}; choose from: {', '.join(SUBCOMMANDS)}")
        return handler(rest, cell, shell)
    except _HelpShown:
        return None
    except R1V4Error as exc:
        print(f"r1v4 {name}: error: {exc}", file=sys.stderr)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"r1v4 {name}: error: {exc.strerror}: {exc.filename}", file=sys.stderr)
    return None


@magics_class
class R1V4Magics(Magics):
    @line_cell_magic
    def r1v4(self, line: str, cell: str | None = None) -> Any:
        """%r1v4 load|status|tools|replay|open ... and %%r1v4 ask ... (see %r1v4 help)."""
        return run_magic(line, cell, self.shell)
