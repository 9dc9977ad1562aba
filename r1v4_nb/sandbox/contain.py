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
import stat
import sys
from dataclasses import dataclass, field
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 0x4000, 1 << 18
MS_RDONLY, MS_REMOUNT = 1, 32
MNT_DETACH = 2
MOUNT_ATTR_RDONLY = 1
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
SYS_MOUNT_SETATTR = 442  # the same number on every architecture since Linux 5.12
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
SYS_LANDLOCK = (444, 445, 446)  # create_ruleset, add_rule, restrict_self: the same on every architecture
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


def enter_namespaces(view: str = "auto") -> dict[str, Any]:
    """Unshare user, mount, network and pid namespaces, falling back to what this machine allows.

    The pid namespace applies to the children of this process: the caller forks
    next, and that child is pid 1 of a namespace that dies with it. `view="landlock"`
    leaves the mount namespace out, as on a machine that forbids it (the file
    system is then guarded by Landlock alone).
    """
    uid, gid = os.getuid(), os.getgid()
    report: dict[str, Any] = {"user": False, "mount": False, "net": False, "pid": False, "errors": []}
    attempts = [
        CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID,
        CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID,  # root where user namespaces are disabled
        CLONE_NEWUSER | CLONE_NEWNET,
        CLONE_NEWNET,
    ]
    if view == "landlock":
        attempts = [f & ~CLONE_NEWNS for f in attempts]
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


class RootFailed(Exception):
    """The private root was half built: the worker stops instead of running model code in it."""


@dataclass
class RootPlan:
    """What the worker's new root holds; everything else of the host is absent from it.

    Paths keep their host names inside the new root, so `sys.path`, the scratch
    folder and the image paths mean the same on both sides.
    """

    scratch: str  # read-write
    inputs: str = ""  # the host's pristine input copies, bound read-only at `scratch/inputs`
    readonly: list[str] = field(default_factory=list)  # the Python install, site-packages, shared libraries
    files: list[str] = field(default_factory=list)  # single read-only files (the loader's cache)
    links: dict[str, str] = field(default_factory=dict)  # /lib -> usr/lib and the like, recreated
    devices: tuple[str, ...] = ("null", "zero", "full", "random", "urandom")
    tmp_mb: int = 256  # the private /tmp and /dev/shm (tmpfs)


def python_paths() -> list[str]:
    """The folders the interpreter and its packages load from (not the project checkout: it is imported already)."""
    found: list[str] = []
    for p in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
              os.path.dirname(os.path.realpath(sys.executable))):
        real = os.path.realpath(p)
        if os.path.isdir(real) and real != "/":
            found.append(real)
    return _outermost(found)


def library_paths() -> tuple[list[str], dict[str, str]]:
    """System shared-library folders (libc, libssl, libz ... that extension modules link against) and the
    symlinks that lead to them on merged-/usr systems."""
    dirs: list[str] = []
    links: dict[str, str] = {}
    for p in ("/lib", "/lib64", "/lib32", "/libx32", "/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/libx32"):
        if os.path.islink(p):
            links[p] = os.readlink(p)
        elif os.path.isdir(p):
            dirs.append(p)
    return dirs, links


def _outermost(paths: list[str]) -> list[str]:
    out: list[str] = []
    for p in sorted(set(paths), key=len):
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


def _makedirs(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def _bind_at(source: str, target: str, readonly: bool) -> None:
    """Bind `source` (a host path seen under /oldroot) at `target` in the new root, read-only if asked."""
    if os.path.isdir(source):
        _makedirs(target)
    else:
        _makedirs(os.path.dirname(target))
        if not os.path.exists(target):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o644))
    _call("mount", source.encode(), target.encode(), None, MS_BIND | MS_REC, None)
    if readonly:
        _mount_setattr(target, MOUNT_ATTR_RDONLY, 0, True)


def _tmpfs(target: str, size_mb: int, mode: str = "1777") -> None:
    _makedirs(target)
    _call("mount", b"tmpfs", target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
          f"mode={mode},size={max(1, size_mb)}m".encode())


def _pivot_root(new: str, old: str) -> None:
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown syscall number on {os.uname().machine}")
    if _lib().syscall(number, new.encode(), old.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"pivot_root: {os.strerror(err)}")


def _safe_mountpoint(path: str) -> None:
    """Make `path` a real directory: a symlink or file model code left there (in an earlier worker) is removed,
    so the bind lands where we mean it to, not where the link points."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.mkdir(path, 0o755)
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        os.mkdir(path, 0o755)


def make_private_root(plan: RootPlan, report: dict[str, Any]) -> None:
    """Give this process a new root that holds only what `plan` names, in the manner of bubblewrap.

    A tmpfs becomes the root (first pivot), the host stays reachable under
    /oldroot just long enough to bind the chosen paths into /newroot, then the
    second pivot makes /newroot the root and the host's tree is detached. No
    host folder (home, checkout, /etc, /run and its sockets) exists afterwards.
    Needs a mount namespace; raises OSError when a step is refused.
    """
    _call("mount", None, b"/", None, MS_REC | MS_PRIVATE, None)
    base = "/tmp" if os.path.isdir("/tmp") else "/mnt"
    _call("mount", b"tmpfs", base.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0755,size=16m")
    os.mkdir(f"{base}/newroot", 0o755)
    os.mkdir(f"{base}/oldroot", 0o755)
    _pivot_root(base, f"{base}/oldroot")
    try:
        _fill_root(plan, report)
    except OSError as exc:  # half a root is no root: the worker must not go on in it
        raise RootFailed(f"building the private root failed after the first pivot: {exc}") from exc
    report["private_root"] = True
    report["readonly_root"] = True


def _fill_root(plan: RootPlan, report: dict[str, Any]) -> None:
    os.chdir("/")
    host, new = "/oldroot", "/newroot"
    _call("mount", new.encode(), new.encode(), None, MS_BIND, None)
    for path in plan.readonly:
        _bind_at(host + path, new + path, readonly=True)
    for path in plan.files:
        if os.path.isfile(host + path):
            _bind_at(host + path, new + path, readonly=True)
    for path, target in plan.links.items():
        _makedirs(os.path.dirname(new + path))
        os.symlink(target, new + path)
    _tmpfs(new + "/tmp", plan.tmp_mb)
    _tmpfs(new + "/dev", 1, "0755")
    for name in plan.devices:
        if os.path.exists(f"{host}/dev/{name}"):
            _bind_at(f"{host}/dev/{name}", f"{new}/dev/{name}", readonly=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{new}/dev/{name}")
    _tmpfs(new + "/dev/shm", plan.tmp_mb)
    _bind_at(host + plan.scratch, new + plan.scratch, readonly=False)
    if plan.inputs:
        target = new + plan.scratch + "/inputs"
        _safe_mountpoint(target)
        _bind_at(host + plan.inputs, target, readonly=True)
    _makedirs(new + "/proc")
    if report.get("pid"):
        try:  # a /proc of this pid namespace only: the kernel's processes (and their environ) are invisible
            _call("mount", b"proc", (new + "/proc").encode(), b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
            report["proc"] = True
        except OSError as exc:
            report["errors"].append(exc.strerror or str(exc))
    _call("umount2", host.encode(), MNT_DETACH)
    os.chdir(new)
    _pivot_root(".", ".")  # the old root (the first tmpfs) now sits on top of the new one
    _call("umount2", b".", MNT_DETACH)
    os.chdir("/")
    _call("mount", None, b"/", None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)  # the skeleton itself read-only


def setup_filesystem(plan: RootPlan, report: dict[str, Any]) -> None:
    """The worker's view of the file system: a private root where a mount namespace allows it, else the host's
    root made read-only, else (no mount namespace) Landlock where the kernel has it. The report says which."""
    report.update(private_root=False, readonly_root=False, proc=False, landlock=0)
    if report.get("mount"):
        try:
            make_private_root(plan, report)
            return
        except OSError as exc:
            report["errors"].append(f"private root: {exc.strerror or exc}")
        try:  # the older, weaker view: the host's tree, read-only, scratch writable
            _call("mount", None, b"/", None, MS_REC | MS_PRIVATE, None)
            _bind(plan.scratch)
            inputs = os.path.join(plan.scratch, "inputs")
            if plan.inputs:
                _safe_mountpoint(inputs)
                _call("mount", plan.inputs.encode(), inputs.encode(), None, MS_BIND, None)
            _mount_setattr("/", MOUNT_ATTR_RDONLY, 0, True)
            _mount_setattr(plan.scratch, 0, MOUNT_ATTR_RDONLY, False)
            if plan.inputs:
                _mount_setattr(inputs, MOUNT_ATTR_RDONLY, 0, False)
            report["readonly_root"] = True
        except OSError as exc:
            report["errors"].append(exc.strerror or str(exc))
        if report.get("pid"):
            try:
                _call("mount", b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
                report["proc"] = True
            except OSError as exc:
                report["errors"].append(exc.strerror or str(exc))


# Landlock access rights (linux/landlock.h): file system by ABI version, then TCP (ABI 4) and scopes (ABI 6).
_LL_FS = [0x1FFF, 0x3FFF, 0x7FFF, 0x7FFF, 0xFFFF]  # ABI 1 .. 5 and later: every right it knows
_LL_READ = 0x1 | 0x4 | 0x8  # execute, read file, read dir
_LL_FILE = 0x1 | 0x2 | 0x4 | 0x4000 | 0x8000  # the rights a rule on a single file may carry
_LL_NET_TCP = 0x1 | 0x2  # bind, connect
_LL_SCOPES = 0x1 | 0x2  # abstract unix sockets, signals


class _LLRuleset(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _LLPathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where it has none (or it is disabled)."""
    version = _lib().syscall(SYS_LANDLOCK[0], None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(0, int(version))


def apply_landlock(read: list[str], write: list[str], report: dict[str, Any]) -> None:
    """Without a mount namespace: let this process (and its children) open only `read` (read / execute) and
    `write` (everything) beneath them; TCP bind / connect and, on ABI 6, abstract unix sockets and signals to
    processes outside are refused too. Rules are added from fds opened here, before model code runs."""
    abi = landlock_abi()
    report["landlock"] = abi
    if abi <= 0:
        return
    fs = _LL_FS[min(abi, len(_LL_FS)) - 1]
    attr = _LLRuleset(fs, _LL_NET_TCP if abi >= 4 else 0, _LL_SCOPES if abi >= 6 else 0)
    size = ctypes.sizeof(_LLRuleset) if abi >= 6 else (16 if abi >= 4 else 8)
    lib = _lib()
    ruleset = lib.syscall(SYS_LANDLOCK[0], ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        report["errors"].append(f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
        report["landlock"] = 0
        return
    try:
        for paths, rights in ((read, _LL_READ), (write, fs)):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    allowed = rights & (_LL_FILE if not os.path.isdir(path) else fs)
                    rule = _LLPathBeneath(allowed, fd)
                    if lib.syscall(SYS_LANDLOCK[1], ruleset, 1, ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                        report["errors"].append(f"landlock rule {path}: {os.strerror(ctypes.get_errno())}")
                finally:
                    os.close(fd)
        lib.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        if lib.syscall(SYS_LANDLOCK[2], ruleset, ctypes.c_uint32(0)) != 0:
            report["errors"].append(f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
            report["landlock"] = 0
    finally:
        os.close(ruleset)


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
