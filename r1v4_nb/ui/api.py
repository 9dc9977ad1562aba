"""The Python side of every magic: load, status, tools, ask, replay, open, export_html.

The magics only parse arguments and call these, so a script or a notebook that
prefers Python gets the same behaviour. The notebook session's state (the
loaded model, the tool configuration, the runs so far) lives in `SESSION`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..images import Image, Provenance
from ..modes import MODES, get_mode
from ..runs import is_replay
from ..trajectory import read
from .session import Session, ToolConfig, follow_notebook_session

SESSION = Session()
follow_notebook_session(lambda: SESSION)  # read at call time: a test may put a fresh session in its place


# -- load / status / tools -------------------------------------------------------------------------------

def load(spec: str | None = None, *, quantization: str | None = None, endpoint: str | None = None,
         api_key_env: str | None = None, adapter: str | None = None) -> Any:
    """Load a model for the runs of this session (None or "default": the shipped default agent; "demo": the
    bundled hand-written demonstration, replayed; "replay:PATH": a replay)."""
    from ..models.loader import load_model

    args = {"spec": spec, "endpoint": endpoint, "api_key_env": api_key_env, "quantization": quantization,
            "adapter": adapter}
    extra: dict[str, Any] = {}
    if spec is None or (spec != "demo" and not spec.startswith("replay:") and not endpoint
                        and not spec.startswith(("http://", "https://"))):
        extra["progress"] = _progress  # the HF loader's steps, as plain output rather than red stderr
    with quiet_progress_bars():
        model = load_model(spec, endpoint=endpoint, api_key_env=api_key_env, quantization=quantization,
                           adapter=adapter, **extra)
    SESSION.model, SESSION.load_args = model, args
    from .debugger import OPEN

    for dbg in list(OPEN):  # a debugger on the page now offers the model as a fork's continuation
        dbg.refresh_models()
    return model


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """No tqdm bars from transformers while loading: in a notebook they are widgets, and after a reopen a
    widget is a "model not found" line. The loader's own steps (`_progress`) say what is happening instead."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _progress(message: str) -> None:
    """A loading step, printed to stdout: it is news, not an error, so it must not look like one."""
    print(f"r1v4 load: {message}", flush=True)


def _model(mode: str | None = None) -> Any:
    """The session's model, loaded on first use; a replay model is reloaded so each run starts at turn 1.

    A bundled demonstration is a recording of one mode's run: asking in another mode switches to the
    recording made in that mode (`--mode deepresearch` replays the deep-research demonstration).
    """
    if SESSION.model is None:
        load()
    demo = _demo_mode(SESSION.model)
    if demo is not None:
        from ..models.replay import DEMO_TRAJECTORIES, demo_model

        target = mode or demo
        if target not in DEMO_TRAJECTORIES:
            raise UsageError(f"the bundled demonstrations are recordings in {' and '.join(DEMO_TRAJECTORIES)} mode, "
                             f"none in {target} mode; load a model to ask in {target} mode (%r1v4 load MODEL)")
        if target != demo or getattr(SESSION.model, "calls", 0):
            SESSION.model = demo_model(target)
    elif is_replay(SESSION.model) and getattr(SESSION.model, "calls", 0) and SESSION.load_args is not None:
        a = SESSION.load_args
        load(a["spec"], quantization=a["quantization"], endpoint=a["endpoint"], api_key_env=a["api_key_env"],
             adapter=a["adapter"])
    return SESSION.model


def _demo_mode(model: Any) -> str | None:
    """The mode of a bundled demonstration model (a recording shipped with the package), else None."""
    from ..models.replay import DEMO_TRAJECTORIES

    if model is None or not is_replay(model):
        return None
    source = getattr(model, "source", None)
    for mode, path in DEMO_TRAJECTORIES.items():
        if source and Path(source).resolve() == path.resolve():
            return mode
    return None


def status() -> dict[str, Any]:
    """What this session runs with: model, memory, tools, tool cache."""
    model = SESSION.model.describe() if SESSION.model is not None else None
    memory: dict[str, Any] = {"process_rss_mb": _rss_mb()}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        memory["gpu_allocated_mb"] = round(torch.cuda.memory_allocated() / 2**20, 1)
    tools = {mode: SESSION.tools.names(mode) for mode in MODES}
    return {"model": model or "(none loaded: the default agent loads on the first ask)",
            "memory": memory, "tools": tools, "tool_source": SESSION.tools.source,
            "tool_settings": SESSION.tools.settings, "cache": _cache_status(), "runs": len(SESSION.runs),
            "runs_dir": str(SESSION.runs_dir)}


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _cache_status() -> dict[str, Any]:
    from ..tools.cache import ToolCache

    cache = ToolCache(mode=os.environ.get("R1V4_CACHE_MODE", "read-write"))
    info: dict[str, Any] = {"path": str(cache.path), "mode": cache.mode}
    if cache.path.is_file():
        info["entries"] = len(cache)
        info["size_mb"] = round(cache.path.stat().st_size / 2**20, 2)
        cache.close()
    else:
        info["entries"] = 0
    return info


def tools(action: str | None = None, name: str | None = None, **settings: Any) -> dict[str, Any]:
    """Show or change the tools: enable / disable NAME, set NAME key=value, source live|replay|auto, reset."""
    from ..tools.registry import TOOLS

    cfg = SESSION.tools
    if action in ("enable", "disable", "set") and name not in TOOLS:
        raise UsageError(f"unknown tool {name!r}; choose from: {', '.join(TOOLS)}")
    if action == "enable":
        cfg.enabled.add(name)
        cfg.disabled.discard(name)
    elif action == "disable":
        cfg.disabled.add(name)
        cfg.enabled.discard(name)
    elif action == "set":
        if not settings:
            raise UsageError(f"nothing to set for {name}; write settings as key=value (e.g. backend=offline)")
        cfg.settings.setdefault(name, {}).update(settings)
    elif action == "source":
        if name not in ("auto", "live", "replay"):
            raise UsageError("tool source must be auto, live or replay")
        cfg.source = name
    elif action == "reset":
        SESSION.tools = ToolConfig()
    elif action is not None:
        raise UsageError(f"unknown tools action {action!r}; use enable, disable, set, source or reset")
    return {"available": list(TOOLS), "by_mode": {m: SESSION.tools.names(m) for m in MODES},
            "settings": SESSION.tools.settings, "source": SESSION.tools.source}


# -- ask ------------------------------------------------------------------------------------------------

def resolve_image(value: Any, namespace: dict[str, Any] | None = None, name: str | None = None) -> Image | str | Path:
    """An input image from a path, an http(s) URL (downloaded), a variable name, a PIL image or an array.

    An image held in a variable is captioned with the variable's name (`name`, e.g. "street.png").
    """
    if isinstance(value, (Image, Path)):
        return value
    if isinstance(value, str):
        if value.startswith(("http://", "https://")):
            return _download(value)
        if Path(value).expanduser().is_file():
            return Path(value).expanduser()
        if namespace is not None and value.isidentifier() and value in namespace:
            return resolve_image(namespace[value], None, name or f"{value}.png")
        raise UsageError(f"image {value!r} is not a file, an http(s) URL or a variable; check the name")
    inputs = SESSION.runs_dir / "inputs"
    if hasattr(value, "save") and hasattr(value, "size"):  # a PIL image
        return Image.from_pil(value, inputs, Provenance("input", name=name or "image.png"))
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # an array
        from PIL import Image as PILImage

        try:
            pil = PILImage.fromarray(value)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"cannot make an image of an array of shape {value.shape}: {exc}") from None
        return Image.from_pil(pil, inputs, Provenance("input", name=name or "array.png"))
    raise UsageError(f"cannot use a {type(value).__name__} as an image; give a path, URL, PIL image or array")


def _image_names(images: Sequence[Any], namespace: dict[str, Any] | None) -> list[str | None]:
    """The caption of each image passed as a Python object: the name of the variable that holds it."""
    names: list[str | None] = []
    for im in images:
        found = None
        if not isinstance(im, (str, Path, Image)):
            scopes = [namespace] if namespace is not None else []
            scopes.append(_caller_namespace())
            for scope in scopes:
                found = next((k for k, v in (scope or {}).items() if v is im and not k.startswith("_")), None)
                if found:
                    break
        names.append(f"{found}.png" if found else None)
    return names


def _caller_namespace() -> dict[str, Any]:
    """The user's namespace in IPython (where `ui.ask(q, [street])` found `street`), else {}."""
    try:
        from IPython import get_ipython
    except ImportError:
        return {}
    shell = get_ipython()
    return dict(shell.user_ns) if shell is not None else {}


def _download(url: str) -> Image:
    import httpx

    try:
        r = httpx.get(url, timeout=20, follow_redirects=True)
        r.raise_for_status()
    except httpx.HTTPError as exc:
        raise UsageError(f"could not download the image {url}: {exc}; download it and pass the file") from None
    try:
        return Image.from_bytes(r.content, SESSION.runs_dir / "inputs", Provenance("input", name=url))
    except ValueError:
        raise UsageError(f"{url} is not an image") from None


def ask(question: str, images: Sequence[Any] = (), *, mode: str | None = None, max_steps: int | None = None,
        wait: bool = False, display: bool = True, model: Any = None, tools: Sequence[Any] | None = None,
        out: str | Path | None = None, namespace: dict[str, Any] | None = None, recording: bool = False) -> Any:
    """Run the agent on a question, shown live; returns a LiveRun (`.wait()`, `.stop()`, `.trajectory`).

    The run goes on in a background thread, so the call returns at once and the Stop button works;
    `wait=True` blocks until it ends (interrupt the kernel to stop it), and its view has no Stop button.

    A replay model (the bundled demonstration, `replay:FILE`) answers only the question and images it
    recorded: anything else is refused, since a recorded answer is not an answer to another question.
    `recording=True` replays the recording anyway, under a banner saying so and with the question it
    recorded, never as the answer to yours.
    """
    from ..agent import Agent, Budgets
    from .runner import LiveRun

    if mode is not None:
        get_mode(mode)
    budgets = Budgets()
    if max_steps is not None:
        if max_steps < 1:
            raise UsageError("--max-steps must be at least 1")
        budgets.max_steps = max_steps
    names = _image_names(images, namespace)
    resolved = [resolve_image(im, namespace, name) for im, name in zip(images, names, strict=True)]
    model = model if model is not None else _model(mode)
    meta: dict[str, Any] = {}
    recorded = _recording_of(model)
    if recorded is not None:
        differs = _differs(recorded, question, resolved, mode)
        if differs and not recording:
            raise UsageError(f"the loaded model, {model.describe().get('name')}, is a recording of the question "
                             f"{_short(recorded.question)!r}; it cannot answer {differs}. Load a model that "
                             "generates (%r1v4 load MODEL, or --endpoint URL), or add --recording to replay the "
                             "recording under a banner")
        if differs:
            meta["recording"] = {"asked": question.strip(), "asked_images": [_image_label(im) for im in resolved]}
            question, resolved = recorded.question, list(recorded.images)
    mode = mode or _recorded_mode(model) or "general"
    agent = Agent(model, tools=list(tools) if tools is not None else SESSION.tools_for(mode, model), mode=mode,
                  budgets=budgets, runs_dir=SESSION.runs_dir)
    from .widget import RunView

    run = LiveRun(agent, agent.run(question, resolved, out=out, meta=meta), RunView(stoppable=not wait))
    SESSION.runs.append(run)
    if display:
        _show_live(run)
    run.start()
    if wait:
        run.wait()
    return run


def _recording_of(model: Any) -> Any:
    """The header of the run a replay model recorded (None for a model that generates)."""
    source = model.source if is_replay(model) else None
    if source and Path(source).is_file():
        return read(source, check_images=False).header
    return None


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _differs(recorded: Any, question: str, images: Sequence[Any], mode: str | None) -> str:
    """How a request differs from what a recording recorded ("" when it is the same request)."""
    if " ".join(question.split()) != " ".join(recorded.question.split()):
        return f"another question ({_short(question)!r})"
    if mode is not None and mode != recorded.mode:
        return f"in {mode} mode (it recorded a {recorded.mode} run)"
    mine = [_pixels(im) for im in images]
    theirs = [_pixels(im) for im in recorded.images]
    if mine != theirs:
        return "other images" if len(mine) == len(theirs) else f"{len(mine)} image(s) (it recorded {len(theirs)})"
    return ""


def _pixels(im: Any) -> str:
    """A digest of an image's pixels: the same picture saved twice (PNG re-encoded) is the same image."""
    import hashlib

    from PIL import Image as PILImage

    path = im.path if isinstance(im, Image) else Path(im)
    try:
        with PILImage.open(path) as pil:
            rgb = pil.convert("RGB")
            return hashlib.sha256(repr(rgb.size).encode() + rgb.tobytes()).hexdigest()
    except (OSError, ValueError):
        return f"unreadable:{path}"


def _image_label(im: Any) -> str:
    if isinstance(im, Image):
        return im.provenance.name or im.path.name
    return Path(im).name


def _recorded_mode(model: Any) -> str | None:
    source = model.source if is_replay(model) else None
    if source and Path(source).is_file():
        return read(source, check_images=False).header.mode
    return None


def _show_live(run: Any) -> None:
    """The widget, and under it a placeholder that receives the static HTML of the run when it ends."""
    from IPython.display import HTML, display, update_display

    display(run.view)
    display_id = f"r1v4-snapshot-{uuid.uuid4().hex}"
    display(HTML(""), display_id=display_id)
    run.on_done(lambda r: update_display(HTML(r.view.snapshot_html()), display_id=display_id))


# -- replay / open / export -----------------------------------------------------------------------------

def open(path: str | Path, display: bool = True) -> Any:  # noqa: A001 - the magic's name
    """The view of a recorded run (cards, images, answer), with its static HTML for kernel-less viewers.

    `path` "last": this session's last run."""
    from .widget import RunView

    traj = read(_last_or(path))
    view = RunView.from_trajectory(traj)
    if display:
        from IPython.display import HTML
        from IPython.display import display as show

        show(view)
        show(HTML(view.snapshot_html()))
    return view


def _last_or(path: str | Path) -> str | Path:
    """`last` is this session's last run (waited for if it is still going), anything else a path."""
    if str(path) == "last":
        return SESSION.last.wait().path
    return path


def replay(path: str | Path, display: bool = True) -> Any:
    """The step-through debugger of a recorded run ("last": this session's last run): navigate, inspect
    contexts, fork and compare; under it a static copy that a saved notebook shows without a kernel."""
    from .debugger import Debugger

    dbg = Debugger(read(_last_or(path)), session=SESSION)
    if display:
        from IPython.display import HTML
        from IPython.display import display as show

        show(dbg)
        dbg.display_id = f"r1v4-snapshot-{dbg.key}"
        show(HTML(dbg.snapshot_html()), display_id=dbg.display_id)
    return dbg


def export_html(path: str | Path, out: str | Path | None = None) -> Path:
    """Write a standalone HTML page of a run (no script; images inline as thumbnails)."""
    from .cards import RunState
    from .render import export_page

    traj = read(path)
    target = Path(out) if out is not None else Path(path).with_suffix(".html")
    target.write_text(export_page(RunState.from_trajectory(traj), f"r1v4 run {traj.header.id}"), encoding="utf-8")
    return target

