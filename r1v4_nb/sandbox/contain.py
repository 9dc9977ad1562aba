"""Containment for the worker, applied inside the child before any model code runs (Linux; stdlib only).

Order matters: namespaces first (while the process is single-threaded), then the
file system view (needs the capabilities the new user namespace grants), then
capabilities are dropped, then resource limits. Each step is best effort and
reported, so the kernel side can say what the sandbox has and lacks.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 0x4000, 1 << 18
MOUNT_ATTR_RDONLY = 1
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
SYS_MOUNT_SETATTR = 442  # the same number on every architecture since Linux 5.12
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
LINUX_CAPABILITY_VERSION_3 = 0x20080522

_libc: Any = None


def _lib() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _call(name: str, *args: Any) -> None:
    if getattr(_lib(), name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")


def enter_namespaces() -> dict[str, Any]:
    """Unshare user, mount, network and pid namespaces, falling back to what this machine allows.

    The pid namespace applies to the children of this process: the caller forks
    next, and that child is pid 1 of a namespace that dies with it.
    """
    uid, gid = os.getuid(), os.getgid()
    report: dict[str, Any] = {"user": False, "mount": False, "net": False, "pid": False, "errors": []}
    attempts = [
        CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID,
        CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID,  # root where user namespaces are disabled
        CLONE_NEWUSER | CLONE_NEWNET,
        CLONE_NEWNET,
    ]
    for flags in attempts:
        try:
            _call("unshare", flags)
        except OSError as exc:
            report["errors"].append(f"unshare({flags:#x}): {exc.strerror}")
            continue
        if flags & CLONE_NEWUSER:
            try:
                with open("/proc/self/setgroups", "w") as f:
                    f.write("deny")
                with open("/proc/self/uid_map", "w") as f:
                    f.write(f"{uid} {uid} 1")
                with open("/proc/self/gid_map", "w") as f:
                    f.write(f"{gid} {gid} 1")
            except OSError as exc:
                report["errors"].append(f"uid map: {exc.strerror}")
        report.update(user=bool(flags & CLONE_NEWUSER), mount=bool(flags & CLONE_NEWNS),
                      net=bool(flags & CLONE_NEWNET), pid=bool(flags & CLONE_NEWPID))
        break
    return report


def die_with_parent() -> None:
    """SIGKILL this process when its parent (the supervisor the kernel kills on a timeout) dies."""
    _lib().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _mount_setattr(path: str, set_: int, clear: int, recursive: bool) -> None:
    attr = _MountAttr(set_, clear, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    if _lib().syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), flags, ctypes.byref(attr),
                      ctypes.sizeof(attr)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount_setattr {path}: {os.strerror(err)}")


def _bind(path: str) -> None:
    _call("mount", path.encode(), path.encode(), None, MS_BIND | MS_REC, None)


def setup_filesystem(scratch: str, readonly: list[str], report: dict[str, Any]) -> None:
    """Make everything read-only except `scratch`, keep `readonly` dirs read-only inside it, mount a private /proc.

    Needs a mount namespace; without one the view is left as is and the report says so.
    """
    report.update(readonly_root=False, proc=False)
    if not report.get("mount"):
        return
    try:
        _call("mount", None, b"/", None, MS_REC | MS_PRIVATE, None)
        _bind(scratch)
        for path in readonly:
            _bind(path)
        _mount_setattr("/", MOUNT_ATTR_RDONLY, 0, True)
        _mount_setattr(scratch, 0, MOUNT_ATTR_RDONLY, False)
        for path in readonly:
            _mount_setattr(path, MOUNT_ATTR_RDONLY, 0, False)
        report["readonly_root"] = True
    except OSError as exc:
        report["errors"].append(exc.strerror or str(exc))
    if report.get("pid"):
        try:  # a /proc of this pid namespace only: the kernel's processes (and their environ) are invisible
            _call("mount", b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
            report["proc"] = True
        except OSError as exc:
            report["errors"].append(exc.strerror or str(exc))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_privileges(report: dict[str, Any]) -> None:
    """Drop every capability (so mounts cannot be undone) and forbid gaining privileges via exec."""
    lib = _lib()
    for cap in range(64):
        lib.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    data = (_CapData * 2)()
    ok = lib.capset(ctypes.byref(_CapHeader(LINUX_CAPABILITY_VERSION_3, 0)), data) == 0
    lib.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    report["caps_dropped"] = ok


def set_limits(limits: dict[str, Any], report: dict[str, Any]) -> None:
    """Resource limits on this process and its children (RLIMIT_NPROC binds only non-root uids)."""
    wanted = {
        resource.RLIMIT_AS: limits["memory_mb"] * 1024 * 1024,
        resource.RLIMIT_NOFILE: limits["open_files"],
        resource.RLIMIT_FSIZE: limits["file_size_mb"] * 1024 * 1024,
        resource.RLIMIT_NPROC: limits["processes"],
        resource.RLIMIT_CORE: 0,
    }
    for which, value in wanted.items():
        try:
            _, hard = resource.getrlimit(which)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(which, (value, value))
        except (OSError, ValueError) as exc:
            report["errors"].append(f"setrlimit {which}: {exc}")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails with EFBIG instead of killing
    report["nproc_binds"] = os.getuid() != 0


def errno_limit(exc: BaseException) -> str | None:
    """Which limit an exception shows was hit, if any."""
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, OSError):
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            return "open_files"
        if exc.errno == errno.EFBIG:
            return "file_size"
    return None
