"""The kernel's side of the sandbox: start a worker, send it code, enforce the wall-time limit, restart it.

A `Worker` owns one child process tree (see `worker.py`) and its scratch
folder. Nothing here runs model code or imports numpy / PIL / cv2; a hung,
crashed or killed child is a `CallResult` for the caller, never an exception.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
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
        "HOME": str(scratch), "TMPDIR": str(scratch / ".sandbox" / "tmp"), "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
    })
    env.setdefault("LANG", "C.UTF-8")
    return env


class StartError(Exception):
    """The worker could not start (its log's last lines are in the message)."""


class Worker:
    """One persistent sandboxed Python process tree serving one trajectory."""

    def __init__(self, scratch: Path, inputs: list[InputImage], limits: Limits | None = None,
                 start_timeout_s: float = 60.0):
        self.scratch = Path(scratch).resolve()
        self.limits = limits or Limits()
        self.start_timeout_s = start_timeout_s
        self.private = self.scratch / ".sandbox"
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

    def _copy_inputs(self, inputs: list[InputImage]) -> list[dict[str, Any]]:
        """Read-only copies of the input images inside the scratch folder (the worker sees only these)."""
        self.inputs_dir.mkdir(parents=True, exist_ok=True)
        (self.private / "tmp").mkdir(parents=True, exist_ok=True)
        entries, used = [], set()
        for item in inputs:
            fname = item.file_name or item.path.name
            fname = fname if fname not in used else f"{item.name}{item.path.suffix}"
            used.add(fname)
            target = self.inputs_dir / fname
            if not target.exists():
                shutil.copyfile(item.path, target)
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
        log = open(self.private / "worker.log", "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", BOOT, _PACKAGE_ROOT],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=self.scratch,
                env=scrubbed_env(self.scratch), start_new_session=True, close_fds=True,
            )
        finally:
            log.close()
        self.cgroups.add(self.proc.pid)
        self.reader = protocol.Reader(self.proc.stdout.fileno())
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _kill_tree, [self.proc], self.cgroups)
        self.ready = False
        self.calls_in_worker = 0
        self._started = time.monotonic()
        protocol.send(self.proc.stdin.fileno(), {
            "type": "init", "scratch": str(self.scratch), "private": str(self.private),
            "readonly": [str(self.inputs_dir)], "images": self.inputs, "limits": self.limits.to_json(),
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
        if message.get("type") != "ready":
            self.kill()
            raise StartError(f"the sandbox worker did not start: {message} {self.log_tail()}")
        self.ready = True
        self.startup_s = time.monotonic() - self._started
        self.containment = dict(message.get("containment") or {})
        self.containment["cgroups"] = self.cgroups.available if self.cgroups else []
        return self.containment

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = (self.private / "worker.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def execute(self, code: str, step: int = 0, cancel: threading.Event | None = None) -> CallResult:
        """Run `code` in the persistent namespace; time-outs, crashes and kills come back as results."""
        with self._lock:
            ended = self._ended_between_calls()
            self.wait_ready()
            assert self.proc is not None and self.reader is not None
            fresh = self.calls_in_worker == 0
            self.calls_in_worker += 1
            memory_before = self.cgroups.memory_events() if self.cgroups else 0
            started = time.monotonic()
            try:
                protocol.send(self.proc.stdin.fileno(), {"type": "exec", "code": code, "step": step})
            except OSError:
                return self._died({"type": "exit"}, started, memory_before, fresh)
            is_cancelled = cancel.is_set if cancel is not None else (lambda: False)
            deadline = started + self.limits.time_s
            try:
                message = self.reader.read(deadline, is_cancelled, self._interrupt)
            except protocol.Timeout:
                return self._timed_out(started, fresh)
            except (protocol.Closed, protocol.ProtocolError):
                return self._died({"type": "exit"}, started, memory_before, fresh)
            if message.get("type") != "result":
                return self._died(message, started, memory_before, fresh)
            result = CallResult(**{k: message[k] for k in (
                "stdout", "stdout_cut", "stderr", "stderr_cut", "value", "error", "images", "notes", "limits_hit")})
            if message.get("fd_output"):
                result.stdout += message["fd_output"]
                result.stdout_cut += message.get("fd_output_cut", 0)
            result.elapsed_s = time.monotonic() - started
            result.fresh = fresh
            if ended:
                result.notes.insert(0, f"the previous worker {ended} after the last call, so this code ran in a "
                                       "new one: variables, imports and opened images from earlier calls are gone")
            result.containment = self.containment
            return result

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

    def _timed_out(self, started: float, fresh: bool) -> CallResult:
        self.restart()
        return CallResult(
            error={"type": "Timeout", "message": f"the code ran longer than {self.limits.time_s:g} s and was stopped",
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
        """Kill the worker and release its cgroups (the scratch folder stays)."""
        with self._lock:
            self.kill()
            if self.cgroups is not None:
                self.cgroups.remove()
                self.cgroups = None
            self._finalizer.detach()

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
    sig = message.get("signal")
    if sig is None and message.get("status") is None and code is not None and code < 0:
        sig = -code
    if sig is not None:
        try:
            return f"was killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"was killed by signal {sig}"
    if message.get("status") is not None:
        return f"exited with status {message['status']}"
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
