"""Best-effort cgroup limits for a worker: a pids limit (the fork-bomb guard that binds root too) and memory.

Works with cgroup v1 (a hierarchy per controller) and v2 (one unified tree)
where the current user may create a child group, which is the case for root on
most machines and rarely for an unprivileged user; `available` says what took.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _own_paths() -> dict[str, str]:
    """controller (or '' for v2) -> this process's cgroup path."""
    paths: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for ctrl in parts[1].split(",") if parts[1] else [""]:
            paths[ctrl] = parts[2]
    return paths


class Cgroups:
    """The cgroups one worker's processes live in; `add` a pid before it starts anything."""

    def __init__(self, name: str, pids_max: int, memory_bytes: int):
        self.dirs: dict[str, Path] = {}
        self.errors: list[str] = []
        own = _own_paths()
        for ctrl, files in (("pids", {"pids.max": str(pids_max)}),
                            ("memory", {"memory.limit_in_bytes": str(memory_bytes)})):
            v1 = ROOT / ctrl
            if (v1 / "cgroup.procs").exists() and ctrl in own:
                self._make(ctrl, v1 / own[ctrl].lstrip("/") / name, files)
            elif (ROOT / "cgroup.controllers").exists() and "" in own:
                v2files = {"pids.max": str(pids_max)} if ctrl == "pids" else {"memory.max": str(memory_bytes),
                                                                              "memory.swap.max": "0"}
                self._make(ctrl, ROOT / own[""].lstrip("/") / name, v2files)

    def _make(self, ctrl: str, folder: Path, files: dict[str, str]) -> None:
        try:
            folder.mkdir(exist_ok=True)
            for fname, value in files.items():
                target = folder / fname
                if target.exists() or fname != "memory.swap.max":
                    target.write_text(value)
            self.dirs[ctrl] = folder
        except OSError as exc:
            self.errors.append(f"{ctrl}: {exc.strerror or exc}")
            if folder.exists() and ctrl not in self.dirs:
                try:
                    folder.rmdir()
                except OSError:
                    pass

    @property
    def available(self) -> list[str]:
        return sorted(self.dirs)

    def add(self, pid: int) -> None:
        for ctrl, folder in list(self.dirs.items()):
            try:
                (folder / "cgroup.procs").write_text(str(pid))
            except OSError as exc:
                self.errors.append(f"{ctrl}: {exc.strerror or exc}")
                del self.dirs[ctrl]

    def memory_events(self) -> int:
        """How often the memory limit has been hit so far (v1 failcnt / v2 'max' events)."""
        folder = self.dirs.get("memory")
        if folder is None:
            return 0
        try:
            if (folder / "memory.failcnt").exists():
                return int((folder / "memory.failcnt").read_text())
            for line in (folder / "memory.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key in ("max", "oom_kill"):
                    return int(value)
        except (OSError, ValueError):
            return 0
        return 0

    def pids(self) -> list[int]:
        found: set[int] = set()
        for folder in self.dirs.values():
            try:
                found.update(int(p) for p in (folder / "cgroup.procs").read_text().split())
            except (OSError, ValueError):
                pass
        return sorted(found)

    def kill_all(self) -> None:
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.01)

    def remove(self) -> None:
        self.kill_all()
        for folder in self.dirs.values():
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except OSError:
                    time.sleep(0.02)
        self.dirs.clear()
