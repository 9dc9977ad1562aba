"""The kernel's side of the sandbox: start a worker, send it code, enforce the wall-time limit, restart it.

A `Worker` owns one child process tree (see `worker.py`) and its scratch
folder. Nothing here runs model code or imports numpy / PIL / cv2; a hung,
crashed or killed child is a `CallResult` for the caller, never an exception.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import protocol
from .cgroup import Cgroups
from .worker import BOOT

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_ENV_KEEP = ("LANG", "LC_ALL", "TZ")


@dataclass
class Limits:
    """Per-call and per-worker limits; each is reported in `limits_hit` by the name of its field."""

    time_s: float = 30.0  # wall time per call; the worker is killed and restarted
    memory_mb: int = 4096  # address space per process (RLIMIT_AS) and, where writable, a memory cgroup
    processes: int = 64  # pids cgroup (binds root too) and RLIMIT_NPROC (binds non-root)
    open_files: int = 256
    file_size_mb: int = 256
    output_chars: int = 20_000  # per stream (stdout, stderr)
    images: int = 8  # output images per call
    image_pixels: int = 4096 * 4096  # per output image

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class InputImage:
    name: str  # image_1, image_2, ...
    path: Path  # the original file
    sha256: str
    file_name: str = ""  # the read-only copy's name in the scratch folder (default: the original's)


@dataclass
class CallResult:
    """What one call produced, as the worker reported it (or as the kernel saw it die)."""

    stdout: str = ""
    stdout_cut: int = 0
    stderr: str = ""
    stderr_cut: int = 0
    value: str | None = None
    error: dict[str, Any] | None = None
    images: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    limits_hit: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    restarted: bool = False  # the worker ended during this call; the next call gets a fresh one
    fresh: bool = False  # this call ran in a worker that had run nothing before
    containment: dict[str, Any] = field(default_factory=dict)


def scrubbed_env(scratch: Path) -> dict[str, str]:
    """The worker's whole environment: nothing from the kernel's (no keys or tokens), a few safe settings."""
    env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
    env.update({
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(scratch), "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
    })
    env.setdefault("LANG", "C.UTF-8")
    return env


class StartError(Exception):
    """The worker could not start (its log's last lines are in the message)."""


class ImageRefused(Exception):
    """An output image the worker named is not a regular file inside the scratch folder (or is too large)."""


class MalformedMessage(Exception):
    """A worker message that does not have the shape of one (model code can write to the pipe)."""


_KNOWN_LIMITS = {"time", "memory", "processes", "open_files", "file_size", "output", "images", "image_pixels"}


def _expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind in (int, (int, float)):
        raise MalformedMessage(f"{what} is {type(value).__name__}")
    return value


def parse_result(message: dict[str, Any], limits: Limits) -> CallResult:
    """A `result` message checked field by field; anything else raises MalformedMessage.

    The worker runs model code, which can find the session object and write its
    own messages, so nothing here is taken on trust: types, lengths and counts
    are checked, text is cut to the output limit, image entries must name files
    (checked again when they are read, by `Worker.read_image`).
    """
    cap = limits.output_chars
    out = CallResult()
    out.stdout = _expect(message.get("stdout"), str, "stdout")[:cap]
    out.stderr = _expect(message.get("stderr"), str, "stderr")[:cap]
    out.stdout_cut = max(0, _expect(message.get("stdout_cut", 0), int, "stdout_cut"))
    out.stderr_cut = max(0, _expect(message.get("stderr_cut", 0), int, "stderr_cut"))
    fd_output = _expect(message.get("fd_output", ""), str, "fd_output")[:cap]
    if fd_output:
        out.stdout += fd_output
        out.stdout_cut += max(0, _expect(message.get("fd_output_cut", 0), int, "fd_output_cut"))
    value = message.get("value")
    out.value = None if value is None else _expect(value, str, "value")[:cap]
    error = message.get("error")
    if error is not None:
        _expect(error, dict, "error")
        out.error = {k: _expect(error.get(k, ""), str, f"error.{k}")[:cap] for k in ("type", "message", "traceback")}
    notes = _expect(message.get("notes", []), list, "notes")
    out.notes = [_expect(n, str, "a note")[:1000] for n in notes[:limits.images + 20]]
    hit = _expect(message.get("limits_hit", []), list, "limits_hit")
    out.limits_hit = sorted({_expect(n, str, "a limit") for n in hit} & _KNOWN_LIMITS)
    images = _expect(message.get("images", []), list, "images")
    if len(images) > limits.images:
        raise MalformedMessage(f"{len(images)} images (the limit is {limits.images})")
    for entry in images:
        _expect(entry, dict, "an image entry")
        clean: dict[str, Any] = {"path": _expect(entry.get("path"), str, "image path")[:4096],
                                 "name": _expect(entry.get("name"), str, "image name")[:4096]}
        if entry.get("source") is not None:
            clean["source"] = _expect(entry["source"], str, "image source")[:64]
        box = entry.get("box")
        if box is not None:
            if not (isinstance(box, list) and len(box) == 4):
                raise MalformedMessage("image box is not four numbers")
            clean["box"] = [round(_expect(v, (int, float), "a box value")) for v in box]
        out.images.append(clean)
    return out


class Worker:
    """One persistent sandboxed Python process tree serving one trajectory."""

    def __init__(self, scratch: Path, inputs: list[InputImage], limits: Limits | None = None,
                 start_timeout_s: float = 60.0, view: str = "auto"):
        self.scratch = Path(scratch).resolve()
        self.limits = limits or Limits()
        self.start_timeout_s = start_timeout_s
        self.view = view  # "auto"; "landlock": no mount namespace, as on a machine that forbids one
        # The host's own files live outside the scratch folder (which model code can write and replace):
        # the pristine input copies, the output images once checked, the worker's log (an unlinked file).
        self.host_dir = Path(tempfile.mkdtemp(prefix="r1v4-worker-"))
        self.outputs_dir = self.host_dir / "outputs"
        self._log = tempfile.TemporaryFile(dir=self.host_dir)
        self.inputs_dir = self.scratch / "inputs"
        self.inputs = self._copy_inputs(inputs)
        self.proc: subprocess.Popen[bytes] | None = None
        self.reader: protocol.Reader | None = None
        self.ready = False
        self.calls_in_worker = 0
        self.containment: dict[str, Any] = {}
        self.startup_s: float | None = None
        self.restarts = 0
        self.cgroups: Cgroups | None = None
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _kill_tree, [None], None)
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.host_dir), True)

    def _copy_inputs(self, inputs: list[InputImage]) -> list[dict[str, Any]]:
        """Copies of the input images: pristine ones in the host's folder (bound read-only over `inputs/` in the
        worker's root, or copied back there on each start), and plain ones in the scratch folder for the host."""
        pristine = self.host_dir / "inputs"
        pristine.mkdir()
        if self.inputs_dir.is_symlink() or (self.inputs_dir.exists() and not self.inputs_dir.is_dir()):
            self.inputs_dir.unlink()
        self.inputs_dir.mkdir(parents=True, exist_ok=True)
        entries, used = [], set()
        for item in inputs:
            fname = Path(item.file_name or item.path.name).name
            fname = fname if fname not in used else f"{item.name}{item.path.suffix}"
            used.add(fname)
            shutil.copyfile(item.path, pristine / fname)
            (pristine / fname).chmod(0o444)
            target = self.inputs_dir / fname
            if not target.exists() and not target.is_symlink():
                shutil.copyfile(pristine / fname, target)
                target.chmod(0o444)
            entries.append({"name": item.name, "path": str(target), "sha256": item.sha256})
        return entries

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        """Start the process (without waiting for it to be ready); a no-op while one is running."""
        if self.proc is not None:
            return
        if self.cgroups is None:
            self.cgroups = Cgroups(f"r1v4-nb-{os.getpid()}-{id(self):x}", self.limits.processes,
                                   self.limits.memory_mb * 1024 * 1024)
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-B", "-c", BOOT, _PACKAGE_ROOT],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, cwd=self.scratch,
            env=scrubbed_env(self.scratch), start_new_session=True, close_fds=True,
        )
        self.cgroups.add(self.proc.pid)
        # A result holds at most three capped texts (4 bytes a character in UTF-8, twice that JSON-escaped)
        self.reader = protocol.Reader(self.proc.stdout.fileno(),
                                      max_message=24 * self.limits.output_chars + (1 << 20))
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _kill_tree, [self.proc], self.cgroups)
        self.ready = False
        self.calls_in_worker = 0
        self._started = time.monotonic()
        protocol.send(self.proc.stdin.fileno(), {
            "type": "init", "scratch": str(self.scratch), "inputs_src": str(self.host_dir / "inputs"),
            "images": self.inputs, "limits": self.limits.to_json(), "view": self.view,
        })

    def wait_ready(self) -> dict[str, Any]:
        """Block until the worker has preloaded everything; raises StartError if it cannot."""
        self.start()
        if self.ready:
            return self.containment
        assert self.reader is not None
        try:
            message = self.reader.read(time.monotonic() + self.start_timeout_s)
        except (protocol.Timeout, protocol.Closed, protocol.ProtocolError) as exc:
            self.kill()
            raise StartError(f"the sandbox worker did not start ({type(exc).__name__}): {self.log_tail()}") from exc
        containment = message.get("containment")
        if message.get("type") != "ready" or not isinstance(containment, dict):
            self.kill()
            raise StartError(f"the sandbox worker did not start: {str(message)[:200]} {self.log_tail()}")
        self.ready = True
        self.startup_s = time.monotonic() - self._started
        self.containment = {str(k): v for k, v in containment.items()
                            if isinstance(v, (bool, int, str)) or (isinstance(v, list) and k == "errors")}
        self.containment["errors"] = [str(e)[:300] for e in self.containment.get("errors", [])][:20]
        self.containment["cgroups"] = self.cgroups.available if self.cgroups else []
        return self.containment

    def log_tail(self, lines: int = 5) -> str:
        """The last lines the worker wrote to its stderr (an unlinked file only the host holds)."""
        try:
            size = os.fstat(self._log.fileno()).st_size
            text = os.pread(self._log.fileno(), 8192, max(0, size - 8192)).decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    @property
    def isolated(self) -> bool:
        """Whether model code is inside the whole boundary: a private root, private /proc, no network."""
        c = self.containment
        return bool(c.get("private_root") and c.get("net") and c.get("pid") and c.get("proc"))

    def exposed(self) -> list[str]:
        """What of the host model code can reach in this worker, in words (empty when isolated)."""
        c = self.containment
        out = []
        if not c.get("net"):
            out.append("the network (no network namespace)")
        if not c.get("private_root"):
            if c.get("landlock"):
                out.append("unix sockets by path and the names of host folders (Landlock guards file "
                           "contents only)")
            elif c.get("readonly_root"):
                out.append("every host file the user can read (the host's root, read-only)")
            else:
                out.append("every host file the user can read or write (no mount namespace, no Landlock)")
        if not (c.get("pid") and c.get("proc")):
            out.append("the host's processes (no private /proc)")
        return out

    def read_image(self, path: str) -> bytes:
        """The bytes of an output image the worker named, read without trusting the name.

        The path must lie inside the scratch folder after normalising; each folder
        on the way is opened with O_NOFOLLOW from the one before (no symlink is
        followed, not even in the middle), the file must be a regular file (no FIFO,
        device or link) no larger than the file size limit.
        """
        if "\0" in path:
            raise ImageRefused("the path holds a NUL byte")
        full = os.path.normpath(os.path.join(self.scratch, path))
        rel = os.path.relpath(full, self.scratch)
        parts = rel.split(os.sep)
        if rel in (".", "") or parts[0] == ".." or os.path.isabs(rel):
            raise ImageRefused(f"{path} is outside the scratch folder")
        limit = self.limits.file_size_mb * 1024 * 1024
        fd = os.open(self.scratch, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            for part in parts[:-1]:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = nxt
            leaf = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                           dir_fd=fd)
        except OSError as exc:
            os.close(fd)
            raise ImageRefused(f"{path}: {exc.strerror} (symlinks are not followed)") from None
        os.close(fd)
        try:
            st = os.fstat(leaf)
            if not stat.S_ISREG(st.st_mode):
                raise ImageRefused(f"{path} is not a regular file")
            if st.st_size > limit:
                raise ImageRefused(f"{path} is larger than {self.limits.file_size_mb} MiB")
            chunks, size = [], 0
            while size <= limit:
                chunk = os.read(leaf, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > limit:
                raise ImageRefused(f"{path} is larger than {self.limits.file_size_mb} MiB")
            return b"".join(chunks)
        finally:
            os.close(leaf)

    def execute(self, code: str, step: int = 0, cancel: threading.Event | None = None,
                time_s: float | None = None) -> CallResult:
        """Run `code` in the persistent namespace; time-outs, crashes and kills come back as results.

        `time_s` overrides the wall-time limit for this call (a call meant to hit another limit first
        gets a generous one, so a slow machine cannot turn it into a time-out)."""
        with self._lock:
            ended = self._ended_between_calls()
            self.wait_ready()
            assert self.proc is not None and self.reader is not None
            fresh = self.calls_in_worker == 0
            self.calls_in_worker += 1
            memory_before = self.cgroups.memory_events() if self.cgroups else 0
            started = time.monotonic()
            call_id = secrets.token_hex(8)
            try:
                protocol.send(self.proc.stdin.fileno(), {"type": "exec", "code": code, "step": step, "id": call_id})
            except OSError:
                return self._died({"type": "exit"}, started, memory_before, fresh)
            is_cancelled = cancel.is_set if cancel is not None else (lambda: False)
            limit = self.limits.time_s if time_s is None else time_s
            deadline = started + limit
            try:
                message = self.reader.read(deadline, is_cancelled, self._interrupt)
            except protocol.Timeout:
                return self._timed_out(started, fresh, limit)
            except protocol.ProtocolError as exc:
                return self._malformed(str(exc), started, fresh)
            except protocol.Closed:
                return self._died({"type": "exit"}, started, memory_before, fresh)
            if message.get("type") == "exit":
                return self._died(message, started, memory_before, fresh)
            if message.get("type") != "result":
                return self._malformed(f"a message of type {str(message.get('type'))[:40]!r}", started, fresh)
            if message.get("id") != call_id:  # a stale or extra result: someone else wrote to the pipe
                return self._malformed("a result for another call", started, fresh)
            try:
                result = parse_result(message, self.limits)
            except MalformedMessage as exc:
                return self._malformed(str(exc), started, fresh)
            result.elapsed_s = time.monotonic() - started
            result.fresh = fresh
            if ended:
                result.notes.insert(0, f"the previous worker {ended} after the last call, so this code ran in a "
                                       "new one: variables, imports and opened images from earlier calls are gone")
            result.containment = self.containment
            return result

    def _malformed(self, why: str, started: float, fresh: bool) -> CallResult:
        """The worker sent something that is not a result: say so, and start a fresh one (never trust it again)."""
        self.restart()
        return CallResult(error={"type": "WorkerProtocolError", "message": f"the sandbox worker sent a malformed "
                                 f"message ({why[:200]}); it was stopped and restarted", "traceback": ""},
                          elapsed_s=time.monotonic() - started, restarted=True, fresh=fresh,
                          containment=self.containment)

    def _ended_between_calls(self) -> str | None:
        """If the worker died since the last call (a late kill, a stray signal), restart it and say how it ended."""
        if self.proc is None or self.reader is None or not self.ready:
            return None
        try:
            message = self.reader.read(time.monotonic())
        except protocol.Timeout:
            message = None
        except (protocol.Closed, protocol.ProtocolError):
            message = {"type": "exit"}
        if message is None and self.proc.poll() is None:
            return None
        if message is not None and message.get("type") != "exit":  # a message nobody asked for: forged
            self.restart()
            return "sent a message between calls (model code writing to the pipe)"
        code = self.proc.poll()
        if code is None:
            try:
                code = self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
        how = _how_it_ended(message or {}, code)
        self.restart()
        return how

    def _interrupt(self) -> None:
        """Cancel: SIGINT to the supervisor, which forwards it (KeyboardInterrupt in model code)."""
        if self.proc is not None:
            try:
                os.kill(self.proc.pid, signal.SIGINT)
            except OSError:
                pass

    def _timed_out(self, started: float, fresh: bool, limit: float) -> CallResult:
        self.restart()
        return CallResult(
            error={"type": "Timeout", "message": f"the code ran longer than {limit:g} s and was stopped",
                   "traceback": ""},
            limits_hit=["time"], elapsed_s=time.monotonic() - started, restarted=True, fresh=fresh,
            containment=self.containment)

    def _died(self, message: dict[str, Any], started: float, memory_before: int, fresh: bool) -> CallResult:
        """The worker ended during a call: say how, and start a fresh one."""
        code = None
        if self.proc is not None and message.get("signal") is None and message.get("status") is None:
            try:  # the supervisor itself was killed: its exit code says by what
                code = self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        memory_hit = bool(self.cgroups and self.cgroups.memory_events() > memory_before)
        how = _how_it_ended(message, code)
        limits = ["memory"] if memory_hit else []
        text = f"the Python process running the code {how}" + (" (out of memory)" if memory_hit else "")
        self.restart()
        return CallResult(error={"type": "WorkerDied", "message": text, "traceback": ""}, limits_hit=limits,
                          elapsed_s=time.monotonic() - started, restarted=True, fresh=fresh,
                          containment=self.containment)

    def restart(self) -> None:
        """Kill the current process tree and start a new one (ready by the time the model calls again)."""
        self.kill()
        self.restarts += 1
        self.start()

    def kill(self) -> None:
        if self.proc is not None:
            _kill_tree([self.proc], self.cgroups, keep_cgroups=True)
        self.proc = None
        self.reader = None
        self.ready = False

    def close(self) -> None:
        """Kill the worker, release its cgroups and remove the host's folder (the scratch folder stays)."""
        with self._lock:
            self.kill()
            if self.cgroups is not None:
                self.cgroups.remove()
                self.cgroups = None
            self._finalizer.detach()
            self._log.close()
            self._cleanup()

    def memory_kib(self) -> int:
        """Resident memory (PSS where available) of the worker's processes, in KiB."""
        total = 0
        pids = self.cgroups.pids() if self.cgroups and self.cgroups.dirs else []
        if not pids and self.proc is not None:
            pids = [self.proc.pid] + _children(self.proc.pid)
        for pid in pids:
            total += _pss_kib(pid)
        return total


def _how_it_ended(message: dict[str, Any], code: int | None) -> str:
    """'was killed by SIGSEGV', 'exited with status 1': from the supervisor's report or its own exit code."""
    sig = message.get("signal") if type(message.get("signal")) is int else None
    status = message.get("status") if type(message.get("status")) is int else None
    if sig is None and status is None and code is not None and code < 0:
        sig = -code
    if sig is not None:
        try:
            return f"was killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"was killed by signal {sig}"
    if status is not None:
        return f"exited with status {status}"
    return "ended"


def _children(pid: int) -> list[int]:
    try:
        kids = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def _pss_kib(pid: int) -> int:
    for name, key in (("smaps_rollup", "Pss:"), ("status", "VmRSS:")):
        try:
            for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
                if line.startswith(key):
                    return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return 0


def _kill_tree(procs: list[subprocess.Popen[bytes] | None], cgroups: Cgroups | None,
               keep_cgroups: bool = False) -> None:
    """SIGKILL the worker's process group (its children die with it) and anything left in its cgroups."""
    for proc in procs:
        if proc is None or proc.poll() is not None:
            if proc is not None:
                _close_pipes(proc)
            continue
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            try:
                proc.kill()
            except OSError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        _close_pipes(proc)
    if cgroups is not None:
        if keep_cgroups:
            cgroups.kill_all()
        else:
            cgroups.remove()


def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass
