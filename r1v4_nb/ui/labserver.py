"""The Jupyter server extension behind JupyterLab's trajectory viewer and runs panel (extensions/).

The viewer runs no kernel: it asks these handlers, and they draw the run with the one renderer
(`cards.RunState` + `render.py`), the same code as the live view, the debugger and the HTML export.

  GET /r1v4/runs                              every run under the root's `runs/` folders (JSON list)
  GET /r1v4/trajectory?path=REL               the rendered run as a standalone page (no script)
  GET /r1v4/trajectory?path=REL&since=K       cards K.. as JSON, for live follow (appends, no re-render)
  GET /r1v4/image?path=REL&sha=SHA256         one of the run's images, by hash

Every handler needs Jupyter's authentication. A path is served only when it is relative and resolves
(symlinks followed) to a file under the server's root; images the trajectory points at outside the root
are not read either.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from ..trajectory import FORMAT, Trajectory, TrajectoryError, read

RUNNING_WINDOW_S = 120.0  # a run without an end record that grew this recently counts as running
MAX_DEPTH = 6  # how deep under the root the runs panel looks for `runs/` folders
_SKIP = {"node_modules", "__pycache__", "site-packages", ".venv", "venv", ".git"}
_SHA = re.compile(r"^[0-9a-f]{64}$")
_RASTER = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
           ".webp": "image/webp"}
PAGE_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"


class PathRefused(ValueError):
    """A request path that is absolute, climbs out of the root, or leads out of it through a symlink."""


def resolve_under(root: str | Path, rel: str) -> Path:
    """`rel` as a real path under `root`; refuses absolute paths, `..` and symlinks that lead outside."""
    if not rel or "\x00" in rel:
        raise PathRefused("give path=REL, a file relative to the server's root")
    posix = rel.replace("\\", "/")
    if posix.startswith("/") or PureWindowsPath(rel).drive or Path(rel).is_absolute():
        raise PathRefused(f"absolute path refused: {rel!r} (give a path relative to the server's root)")
    if ".." in PurePosixPath(posix).parts:
        raise PathRefused(f"path leaves the server's root: {rel!r}")
    real_root = Path(os.path.realpath(root))
    target = Path(os.path.realpath(real_root / posix))
    if not _inside(target, real_root):
        raise PathRefused(f"path leads outside the server's root (a symlink?): {rel!r}")
    return target


def _inside(path: Path, real_root: Path) -> bool:
    return path == real_root or path.is_relative_to(real_root)


@dataclass
class RunSummary:
    """One row of the runs panel."""

    path: str  # relative to the server's root, with / separators
    id: str
    question: str
    answer: str | None
    status: str  # running, answered, no_answer, budget, cancelled, error, unfinished
    steps: int
    model: str
    mode: str
    time: str  # when the run started (the header's `created`)
    modified: float  # the file's mtime (seconds since the epoch)
    parent: dict[str, Any] | None  # {"id", "step", "path"?} for a fork


_summaries: dict[Path, tuple[tuple[int, int], RunSummary | None]] = {}


def run_summary(path: Path, root: Path, now: float | None = None) -> RunSummary | None:
    """The panel's row for one file, or None when it is not a trajectory (cached by size and mtime)."""
    st = path.stat()
    key = (st.st_size, st.st_mtime_ns)
    cached = _summaries.get(path)
    if cached is not None and cached[0] == key:
        summary = cached[1]
    else:
        summary = _read_summary(path, root, st.st_mtime)
        _summaries[path] = (key, summary)
    if summary is not None and summary.status == "running" and not _recent(st.st_mtime, now):
        summary = RunSummary(**{**asdict(summary), "status": "unfinished"})
    return summary


def _recent(mtime: float, now: float | None = None) -> bool:
    return (time.time() if now is None else now) - mtime < RUNNING_WINDOW_S


def _read_summary(path: Path, root: Path, mtime: float) -> RunSummary | None:
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    lines = [ln for ln in raw.split(b"\n") if ln.strip()]
    if not raw.endswith(b"\n") and lines:
        lines = lines[:-1]  # a line being written: not a step yet
    if not lines:
        return None
    try:
        head = json.loads(lines[0])
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(head, dict) or head.get("type") != "header" or head.get("format") != FORMAT:
        return None
    end = None
    if len(lines) > 1:
        try:
            last = json.loads(lines[-1])
        except (ValueError, UnicodeDecodeError):
            last = None
        if isinstance(last, dict) and last.get("type") == "end":
            end = last
    steps = len(lines) - 1 - (end is not None)
    parent = head.get("parent") if isinstance(head.get("parent"), dict) else None
    if parent is not None:
        parent = {"id": str(parent.get("id", "")), "step": parent.get("step")}
    model = head.get("model") if isinstance(head.get("model"), dict) else {}
    status = str(end.get("reason", "error")) if end else "running"
    answer = end.get("answer") if end and isinstance(end.get("answer"), str) else None
    return RunSummary(
        path=path.relative_to(root).as_posix(), id=str(head.get("id", "")), question=str(head.get("question", "")),
        answer=answer, status=status, steps=steps, model=str(model.get("name", "")), mode=str(head.get("mode", "")),
        time=str(head.get("created", "")), modified=mtime, parent=parent)


def list_runs(root: str | Path, now: float | None = None) -> list[RunSummary]:
    """Every trajectory in a `runs/` folder under `root` (hidden folders and environments skipped)."""
    real_root = Path(os.path.realpath(root))
    found: list[RunSummary] = []
    for folder, dirs, _files in os.walk(real_root):
        depth = len(Path(folder).relative_to(real_root).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP and depth < MAX_DEPTH)
        if "runs" in dirs:
            dirs.remove("runs")  # walked below, whole
            found.extend(_runs_in(Path(folder) / "runs", real_root, now))
    by_path = {s.path: s for s in found}
    return sorted(by_path.values(), key=lambda s: (s.time, s.path), reverse=True)


def _runs_in(runs: Path, real_root: Path, now: float | None) -> list[RunSummary]:
    out = []
    for folder, dirs, files in os.walk(runs):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not d.endswith(".images"))
        for name in sorted(files):
            if not name.endswith(".jsonl") or name.startswith("."):
                continue
            p = Path(os.path.realpath(Path(folder) / name))
            if not _inside(p, real_root) or not p.is_file():
                continue
            s = run_summary(p, real_root, now)
            if s is not None:
                out.append(s)
    return out


def _load(path: Path) -> Trajectory:
    return read(path, check_images=False)


def run_state(traj: Trajectory, root: Path, mtime: float) -> Any:
    """The cards of a recorded run; images the trajectory points at outside the root are left out.

    The question card names the file relative to the root: the browser is not told where the root is.
    """
    from .cards import RunState
    from .cardtypes import QuestionCard

    state = RunState.from_trajectory(traj)
    real_root = Path(os.path.realpath(root))
    if traj.path is not None:
        rel = Path(os.path.realpath(traj.path)).relative_to(real_root).as_posix()
        for card in state.cards:
            if isinstance(card, QuestionCard) and card.path:
                card.path = rel
    state.images = {sha: im for sha, im in state.images.items()
                    if _inside(Path(os.path.realpath(im.path)), real_root)}
    if traj.end is None and _recent(mtime):
        state.status = "running"
    return state


def render_page(path: Path, root: Path) -> str:
    """The whole run as a standalone page: the HTML export's own function."""
    from .render import export_page

    traj = _load(path)
    return export_page(run_state(traj, root, path.stat().st_mtime), title=traj.header.question[:80] or path.name)


def render_since(path: Path, root: Path, since: int) -> dict[str, Any]:
    """Cards `since`.. as HTML, the header, and whether the run is over: one poll of the live viewer.

    `status` is "running" while the file has no end record and grew in the last RUNNING_WINDOW_S seconds;
    the viewer stops following at the end record or when the status says the file stopped growing.
    """
    from .render import render_card

    st = path.stat()
    traj = _load(path)
    state = run_state(traj, root, st.st_mtime)
    since = max(0, since)
    return {"count": len(state.cards), "since": since,
            "cards": [render_card(card, c, state.images) for c, card in enumerate(state.cards) if c >= since],
            "header": state.header_html(live=False), "status": state.status, "done": traj.end is not None,
            "size": st.st_size, "mtime": st.st_mtime, "idle_limit_s": RUNNING_WINDOW_S, "warnings": traj.warnings}


def image_file(path: Path, root: Path, sha: str) -> tuple[Path, str]:
    """The file of the run's image `sha` and its MIME type; raster images under the root only."""
    if not _SHA.match(sha):
        raise PathRefused("sha must be the image's 64 hex digit sha256")
    for im in _load(path).all_images():
        if im.sha256 == sha:
            real = Path(os.path.realpath(im.path))
            if not _inside(real, Path(os.path.realpath(root))):
                raise PathRefused("the image lies outside the server's root")
            mime = _RASTER.get(real.suffix.lower())
            if mime is None or not real.is_file():
                raise FileNotFoundError(f"image {sha[:12]} is not a raster file on disk")
            return real, mime
    raise FileNotFoundError(f"the run has no image {sha[:12]}")


# -- the Jupyter server side -------------------------------------------------------------------------


def _handlers() -> list[tuple[str, type]]:
    from jupyter_server.auth.decorator import authorized
    from jupyter_server.base.handlers import APIHandler
    from tornado import web

    class Base(APIHandler):
        """Authenticated (Jupyter's login or token) and authorised like the contents API."""

        auth_resource = "contents"

        def initialize(self, root: str) -> None:
            self.root = Path(root)

        def target(self) -> Path:
            try:
                p = resolve_under(self.root, self.get_argument("path", ""))
            except PathRefused as exc:
                raise web.HTTPError(403, str(exc)) from None
            if not p.is_file():
                raise web.HTTPError(404, f"no such file: {self.get_argument('path')}")
            return p

    class Runs(Base):
        @web.authenticated
        @authorized
        def get(self) -> None:
            self.finish(json.dumps([asdict(s) for s in list_runs(self.root)]))

    class Trajectory_(Base):
        @web.authenticated
        @authorized
        def get(self) -> None:
            p = self.target()
            since = self.get_argument("since", None)
            try:
                if since is None:
                    page = render_page(p, self.root)
                else:
                    data = render_since(p, self.root, int(since))
            except TrajectoryError as exc:
                raise web.HTTPError(422, str(exc)) from None
            except ValueError:
                raise web.HTTPError(400, "since must be a card number") from None
            if since is None:
                self.set_header("Content-Security-Policy", PAGE_CSP)
                self.finish(page, set_content_type="text/html; charset=utf-8")
            else:
                self.finish(json.dumps(data))

    class Image_(Base):
        @web.authenticated
        @authorized
        def get(self) -> None:
            p = self.target()
            try:
                f, mime = image_file(p, self.root, self.get_argument("sha", ""))
            except PathRefused as exc:
                raise web.HTTPError(403, str(exc)) from None
            except FileNotFoundError as exc:
                raise web.HTTPError(404, str(exc)) from None
            except TrajectoryError as exc:
                raise web.HTTPError(422, str(exc)) from None
            self.set_header("Content-Security-Policy", "sandbox")
            self.set_header("X-Content-Type-Options", "nosniff")
            self.finish(f.read_bytes(), set_content_type=mime)

    return [("runs", Runs), ("trajectory", Trajectory_), ("image", Image_)]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Add the handlers under <base_url>/r1v4/, serving files under the server's root."""
    from jupyter_server.utils import url_path_join

    base = serverapp.web_app.settings["base_url"]
    root = str(Path(serverapp.root_dir).expanduser())
    serverapp.web_app.add_handlers(".*$", [(url_path_join(base, "r1v4", name), cls, {"root": root})
                                           for name, cls in _handlers()])
    serverapp.log.info("r1v4_nb: trajectory viewer endpoints at %s (root %s)", url_path_join(base, "r1v4"), root)


__all__ = ["PAGE_CSP", "PathRefused", "RunSummary", "image_file", "list_runs", "render_page",
           "render_since", "resolve_under", "run_summary", "run_state"]
