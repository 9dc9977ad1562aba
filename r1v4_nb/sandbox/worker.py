"""The sandbox worker: the child process that runs model-written code, one per trajectory.

Started by `client.Worker` as `python -I -c BOOT`. The first process (the
supervisor) reads the init message, enters new namespaces and forks; the child
is pid 1 of a new pid namespace, takes its file system view, drops privileges,
sets limits, preloads numpy / PIL / cv2 and the input images, then serves
`exec` requests over the pipes until they close. The supervisor waits for it
and reports how it ended; when the kernel kills the supervisor (a timeout),
the child and everything it started die with it.
"""

from __future__ import annotations

import ast
import io
import linecache
import os
import re
import signal
import sys
import time
import traceback
from typing import Any

from . import contain, protocol

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
_PATH_RE = re.compile(r"""[^\s'"`,;:()\[\]{}<>=]*\.(?:png|jpe?g|webp|bmp|gif|tiff?)\b""", re.IGNORECASE)
_REPR_LIMIT = 2000
_PNG_INFO_KEYS = {"transparency", "icc_profile", "exif", "gamma", "dpi", "srgb"}  # chunks PIL's save would write


class CappedText(io.TextIOBase):
    """A text stream that keeps the first `limit` characters and counts the rest."""

    def __init__(self, limit: int):
        self.limit = limit
        self.parts: list[str] = []
        self.kept = 0
        self.total = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        s = str(s)
        self.total += len(s)
        room = self.limit - self.kept
        if room > 0:
            self.parts.append(s[:room])
            self.kept += min(room, len(s))
        return len(s)

    def take(self) -> tuple[str, int]:
        """The kept text and how many characters were cut; then empty."""
        text, cut = "".join(self.parts), self.total - self.kept
        self.parts, self.kept, self.total = [], 0, 0
        return text, cut


def main() -> None:
    rfd, wfd = os.dup(0), os.dup(1)
    init = protocol.recv(rfd)
    report = contain.enter_namespaces(init.get("view", "auto"))
    child = os.fork()
    if child:
        _supervise(child, wfd)
    contain.die_with_parent()
    os.setpgid(0, 0)  # kill(0, ...) from model code then reaches only this process's group, not the supervisor
    from . import helpers, pngfast  # noqa: F401  (the project checkout is not in the new root: import them now)

    scratch = init["scratch"]
    libraries, links = contain.library_paths()
    plan = contain.RootPlan(scratch=scratch, inputs=init.get("inputs_src", ""),
                            readonly=contain.python_paths() + libraries, files=["/etc/ld.so.cache"],
                            links=links, tmp_mb=int(init["limits"]["file_size_mb"]))
    try:
        contain.setup_filesystem(plan, report)
    except contain.RootFailed as exc:
        os.write(2, f"r1v4_nb sandbox: {exc}\n".encode())
        os._exit(70)
    tmp = "/tmp" if report["private_root"] else os.path.join(scratch, ".tmp")
    os.makedirs(tmp, exist_ok=True)
    os.environ["TMPDIR"] = tmp
    os.chdir(scratch)  # again: the old cwd points into the host's tree
    if not report["private_root"] and not report["readonly_root"]:
        _copy_inputs(plan.inputs, os.path.join(scratch, "inputs"))
    contain.drop_privileges(report)
    contain.set_limits(init["limits"], report)
    session = _Session(rfd, wfd, init, report)
    session.prepare()
    if not report["private_root"] and not report["readonly_root"]:
        contain.apply_landlock(plan.readonly + plan.files, [scratch] + [f"/dev/{d}" for d in plan.devices], report)
    session.serve()


def _copy_inputs(source: str, target: str) -> None:
    """Without a mount namespace the input copies are plain files: restore them from the host's pristine ones
    (model code in an earlier worker may have changed them)."""
    if not source:
        return
    if os.path.islink(target) or (os.path.exists(target) and not os.path.isdir(target)):
        os.unlink(target)
    os.makedirs(target, exist_ok=True)
    for name in os.listdir(source):
        dest = os.path.join(target, name)
        if os.path.lexists(dest):
            os.unlink(dest)
        with open(os.path.join(source, name), "rb") as src, open(dest, "xb") as out:
            out.write(src.read())
        os.chmod(dest, 0o444)


def _supervise(child: int, wfd: int) -> None:
    """Wait for the serving child; forward SIGINT (cancel) to it; report how it ended."""
    signal.signal(signal.SIGINT, lambda *_: os.kill(child, signal.SIGINT))
    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGKILL))
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            status = 0
            break
    message: dict[str, Any] = {"type": "exit"}
    if os.WIFSIGNALED(status):
        message["signal"] = os.WTERMSIG(status)
    else:
        message["status"] = os.WEXITSTATUS(status)
    try:
        protocol.send(wfd, message)
    except OSError:
        pass
    os._exit(0)


class _Session:
    """The serving process: a persistent namespace in which each request's code runs."""

    def __init__(self, rfd: int, wfd: int, init: dict[str, Any], report: dict[str, Any]):
        self.rfd, self.wfd = rfd, wfd
        self.init = init
        self.report = report
        self.limits = init["limits"]
        self.scratch = os.path.realpath(init["scratch"])
        self.readonly = [os.path.join(self.scratch, "inputs")]  # printed input paths are not outputs
        self.main_pid = os.getpid()
        self.calls = 0
        self.in_model_code = False  # a cancel (SIGINT) interrupts only while model code runs
        self.call_id: str | None = None  # echoed in the result: a result for another call shows a forged one
        self.saved: dict[str, dict[str, Any] | None] = {}
        self.out = CappedText(self.limits["output_chars"])
        self.err = CappedText(self.limits["output_chars"])
        self.started = time.monotonic()

    def prepare(self) -> None:
        """Redirect the fds and preload the libraries and images (before Landlock, if that applies)."""
        self._redirect_fds()
        self._preload()

    def _on_interrupt(self, signum: int, frame: object) -> None:
        """A cancel raises KeyboardInterrupt in model code only. One that comes before the code starts or after
        it ended is dropped: the host repeats it until the call's result arrives, so none is lost, and none
        breaks the session's own work (reading a request, building a result)."""
        if self.in_model_code:
            raise KeyboardInterrupt

    def serve(self) -> None:
        signal.signal(signal.SIGINT, self._on_interrupt)
        protocol.send(self.wfd, {"type": "ready", "containment": self.report,
                                 "startup_s": round(time.monotonic() - self.started, 4)})
        while True:
            try:
                request = protocol.recv(self.rfd)
            except (protocol.Closed, OSError):
                os._exit(0)
            if request.get("type") == "exec":
                self.call_id = request.get("id")
                result = self._execute(request["code"], int(request.get("step", 0)))
                result["id"] = self.call_id
                protocol.send(self.wfd, result)

    def _redirect_fds(self) -> None:
        """Model code and the libraries it calls may write to fds 1 and 2: send those to an anonymous file
        (memfd: no path anyone could replace), not the pipe."""
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        cap = os.memfd_create("fd-output", 0)
        os.dup2(cap, 1)
        os.dup2(cap, 2)
        os.close(cap)
        sys.stdout, sys.stderr = self.out, self.err

    def _preload(self) -> None:
        import cv2  # noqa: F401  (imported once here so model code finds it warm)
        import numpy  # noqa: F401
        from PIL import Image

        from . import helpers

        self._patch_pil(Image, helpers.PROVENANCE)
        helpers.outputs.folder = self.scratch
        helpers.outputs.max_pixels = self.limits["image_pixels"]
        sys.modules.setdefault("helpers", helpers)
        images, paths = [], []
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
        for entry in self.init.get("images", []):
            with Image.open(entry["path"]) as im:
                im.load()
                im = im.copy() if im.mode in ("RGB", "L", "RGBA") else im.convert("RGB")
            im.info[helpers.PROVENANCE] = {"source": entry["sha256"], "box": [0, 0, im.width, im.height]}
            self.namespace[entry["name"]] = im
            images.append(im)
            paths.append(entry["path"])
        self.namespace.update(images=images, image_paths=paths, helpers=helpers, show=helpers.show)
        self.helpers = helpers

    def _patch_pil(self, Image: Any, key: str) -> None:
        """Make PIL's own crop carry provenance, record what is saved, and save PNG quickly by default
        (`pngfast` where PIL would write nothing but the pixels, else PIL at zlib level 1)."""
        from . import helpers, pngfast

        saved = self.saved
        original_crop, original_save = Image.Image.crop, Image.Image.save

        def crop(im: Any, box: Any = None) -> Any:
            if box is not None:  # past the edge PIL pads with black: clamp instead, and say so (helpers.clamp_box)
                box = helpers.clamp_box(im.width, im.height, box, "Image.crop")
            out = original_crop(im, box)
            prov = im.info.get(key)
            if prov and box is not None:
                b = prov["box"]
                sx, sy = (b[2] - b[0]) / max(im.width, 1), (b[3] - b[1]) / max(im.height, 1)
                x0, y0, x1, y1 = (float(v) for v in box)
                out.info[key] = {"source": prov["source"],
                                 "box": [b[0] + x0 * sx, b[1] + y0 * sy, b[0] + x1 * sx, b[1] + y1 * sy]}
            return out

        def save(im: Any, fp: Any, format: Any = None, **params: Any) -> None:
            path = os.fspath(fp) if isinstance(fp, (str, os.PathLike)) else None
            is_png = (format or "").upper() == "PNG" or (path or "").lower().endswith(".png")
            if is_png and not params and im.mode in pngfast.MODES and not _PNG_INFO_KEYS & im.info.keys():
                data = pngfast.encode(im)  # half PIL's time at level 1 on one core, parallel on two
                if path is not None:
                    with open(path, "wb") as out:
                        out.write(data)
                else:
                    fp.write(data)
            else:
                if is_png and "compress_level" not in params and not params.get("optimize"):
                    params["compress_level"] = 1
                original_save(im, fp, format, **params)
            if path is not None:
                saved[os.path.realpath(path)] = im.info.get(key)

        Image.Image.crop, Image.Image.save = crop, save

    def _execute(self, source: str, step: int) -> dict[str, Any]:
        self.calls += 1
        filename = f"<code-{self.calls}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        helpers = self.helpers
        helpers.outputs.shown, helpers.outputs.notes, helpers.outputs.limits = [], [], []
        helpers.outputs.shown_objects = []
        self.saved.clear()
        value_repr, error, limits = None, None, []
        value: Any = None
        started = time.monotonic()
        try:
            tree = ast.parse(source, filename)
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            self.in_model_code = True
            try:
                exec(compile(tree, filename, "exec"), self.namespace)
                if last is not None:
                    value = eval(compile(ast.Expression(last.value), filename, "eval"), self.namespace)
            finally:
                self.in_model_code = False
        except SystemExit as exc:
            self._exit_if_forked()
            error = {"type": "SystemExit", "message": f"sys.exit({exc.code!r}) was called; the session keeps "
                     "running (use an answer to finish, not exit)", "traceback": ""}
        except BaseException as exc:  # model code may raise anything, KeyboardInterrupt included
            self._exit_if_forked()
            error = self._format_error(exc, filename)
            limits += self._limits_of(exc, source)
        self._exit_if_forked()
        if value is not None:
            from PIL import Image

            if isinstance(value, Image.Image):
                value_repr = f"<PIL image {value.mode} {value.width}x{value.height}>"
                if not any(value is o for o in helpers.outputs.shown_objects):  # `show(z); z` returns z once
                    helpers.show(value)
            else:
                try:
                    value_repr = repr(value)
                except Exception as exc:  # a broken __repr__ in model code
                    value_repr = f"<repr failed: {type(exc).__name__}: {exc}>"
                if len(value_repr) > _REPR_LIMIT:
                    value_repr = value_repr[:_REPR_LIMIT] + f"... {len(value_repr) - _REPR_LIMIT} more characters cut"
        helpers.outputs.shown_objects = []  # hold no images past the call
        self.namespace["_"] = value if value is not None else self.namespace.get("_")
        stdout, stdout_cut = self.out.take()
        stderr, stderr_cut = self.err.take()
        fd_text, fd_cut = self._take_fd_output()
        images, notes = self._collect_images(stdout + "\n" + fd_text)
        limits += helpers.outputs.limits + [n for n, _ in notes if n]
        self._reap_strays()
        return {
            "type": "result", "stdout": stdout, "stdout_cut": stdout_cut, "stderr": stderr,
            "stderr_cut": stderr_cut, "fd_output": fd_text, "fd_output_cut": fd_cut, "value": value_repr,
            "error": error, "images": images, "notes": helpers.outputs.notes + [t for _, t in notes],
            "limits_hit": sorted(set(limits + (["output"] if stdout_cut or stderr_cut or fd_cut else []))),
            "elapsed_s": round(time.monotonic() - started, 6),
        }

    def _exit_if_forked(self) -> None:
        """A process the model's code forked must not go on serving the pipe."""
        if os.getpid() != self.main_pid:
            os._exit(0)

    def _format_error(self, exc: BaseException, filename: str) -> dict[str, Any]:
        """The exception with a traceback of the model's own frames only."""
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<code-")]
        lines = ["Traceback (most recent call last):\n"] + traceback.format_list(frames) if frames else []
        only = traceback.format_exception_only(type(exc), exc)
        text = "".join(lines + only)
        if len(text) > 4000:
            text = "...\n" + text[-4000:]
        return {"type": type(exc).__name__, "message": "".join(only).strip().splitlines()[-1], "traceback": text}

    def _limits_of(self, exc: BaseException, source: str) -> list[str]:
        found = []
        seen = set()
        while exc is not None and id(exc) not in seen:
            seen.add(id(exc))
            limit = contain.errno_limit(exc)
            if limit:
                found.append(limit)
            elif isinstance(exc, BlockingIOError) or (isinstance(exc, OSError) and exc.errno == 11):
                names = {f.name for f in traceback.extract_tb(exc.__traceback__)}
                if "fork" in source or names & {"_execute_child", "_fork_exec", "_launch"}:
                    found.append("processes")
            exc = exc.__cause__ or exc.__context__
        return found

    def _take_fd_output(self) -> tuple[str, int]:
        """What was written to fds 1 and 2 during the call (capped), then truncate the file."""
        limit = self.limits["output_chars"]
        try:
            size = os.fstat(1).st_size
            data = os.pread(1, limit, 0)
            os.ftruncate(1, 0)
            os.lseek(1, 0, os.SEEK_SET)
        except OSError:
            return "", 0
        text = data.decode("utf-8", "replace")
        return text, max(0, size - len(data))

    def _collect_images(self, printed: str) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
        """Images shown, and image files the code printed the path of (inside the scratch folder)."""
        from PIL import Image

        candidates = [(p, os.path.relpath(p, self.scratch)) for p in self.helpers.outputs.shown]
        for match in _PATH_RE.finditer(printed):
            name = match.group(0)
            candidates.append((os.path.realpath(name), name))
        images: list[dict[str, Any]] = []
        notes: list[tuple[str, str]] = []
        seen: set[str] = set()
        for path, name in candidates:
            if path in seen or not os.path.isfile(path):
                continue
            seen.add(path)
            inside = path.startswith(self.scratch + os.sep)
            if not inside or any(path.startswith(r + os.sep) for r in self.readonly):
                continue
            if len(images) >= self.limits["images"]:
                notes.append(("images", f"only the first {self.limits['images']} images are returned; "
                                        f"{name} was left out"))
                continue
            try:
                with Image.open(path) as im:
                    width, height = im.size
            except Image.DecompressionBombError as exc:
                notes.append(("image_pixels", f"{name}: not returned, over the pixel limit ({exc})"))
                continue
            except Exception as exc:  # not an image after all
                notes.append(("", f"{name}: not returned ({type(exc).__name__}: {exc})"))
                continue
            if width * height > self.limits["image_pixels"]:
                notes.append(("image_pixels", f"{name}: {width}x{height} is over the limit of "
                                              f"{self.limits['image_pixels']} pixels; crop or shrink it"))
                continue
            entry: dict[str, Any] = {"path": path, "name": name, "width": width, "height": height}
            prov = self.saved.get(path)
            if prov:
                entry["source"] = prov["source"]
                entry["box"] = [round(v) for v in prov["box"]]
            images.append(entry)
        return images, notes

    def _reap_strays(self) -> None:
        """Kill processes the call left behind (findable only in our own pid namespace), and reap them."""
        if self.report.get("proc"):
            for _ in range(100):
                others = [int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) != self.main_pid]
                if not others:
                    break
                for pid in others:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                self._reap(block=True)
        self._reap(block=False)

    @staticmethod
    def _reap(block: bool) -> None:
        while True:
            try:
                if os.waitpid(-1, 0 if block else os.WNOHANG)[0] == 0:
                    return
            except ChildProcessError:
                return


BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from r1v4_nb.sandbox.worker import main; main()"
