"""The sandbox worker against hostile code: each case gives a result, the parent lives, the worker goes on.

One worker per test module (started once); cases that kill the worker check
that the next call runs in a fresh one. The worker's time limit is generous, so
that no case meant to hit another limit (memory, processes, output) can turn
into a time-out on a slow or loaded machine; the cases about time-outs pass a
short `time_s` for that one call.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from r1v4_nb.sandbox.client import ImageRefused, InputImage, Limits, Worker
from tests.support import CHECKOUT

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox's containment is Linux-only")

SECRET = "r1v4-test-secret-7d1f0c"
SLOW_MACHINE_S = 120  # the default wall-time limit here: only the time-out cases are meant to reach it
SHORT_S = 2


@pytest.fixture(scope="module")
def image_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "photo.png"
    Image.new("RGB", (320, 240), (30, 120, 200)).save(path)
    return path


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, image_file: Path):
    mp = pytest.MonkeyPatch()
    mp.setenv("R1V4_TEST_SECRET", SECRET)
    mp.setenv("OPENAI_API_KEY", SECRET)
    sha = hashlib.sha256(image_file.read_bytes()).hexdigest()
    w = Worker(tmp_path_factory.mktemp("scratch"), [InputImage("image_1", image_file, sha)],
               Limits(time_s=SLOW_MACHINE_S, memory_mb=1024, processes=32, file_size_mb=16, output_chars=2000))
    w.wait_ready()
    yield w
    w.close()
    mp.undo()


def usable(worker: Worker) -> None:
    """The worker answers (a fresh one if the last call killed it) and the input image is loaded."""
    r = worker.execute("print('ok', image_1.size)")
    assert r.error is None and r.stdout == "ok (320, 240)\n"


def test_containment_report(worker: Worker) -> None:
    c = worker.containment
    assert c["net"], f"no network namespace on this machine: {c}"
    assert set(c) >= {"user", "mount", "pid", "readonly_root", "proc", "caps_dropped", "cgroups"}


def test_state_persists_and_is_lost_on_restart(worker: Worker) -> None:
    assert worker.execute("x = 41\nimport math").error is None
    assert worker.execute("y = math.sqrt(4)").error is None
    r = worker.execute("x + y")
    assert r.value == "43.0" and not r.restarted
    r = worker.execute("while True: pass", time_s=SHORT_S)
    assert r.limits_hit == ["time"] and r.restarted and "Timeout" == r.error["type"]
    r = worker.execute("print(x)")
    assert r.error["type"] == "NameError" and r.fresh


def test_infinite_loop_times_out_and_restarts(worker: Worker) -> None:
    r = worker.execute("n = 0\nwhile True:\n    n += 1", time_s=SHORT_S)
    assert "time" in r.limits_hit and r.restarted
    usable(worker)


def test_fork_bomb_is_contained(worker: Worker) -> None:
    r = worker.execute("import os\nwhile True:\n    os.fork()", time_s=30)
    assert r.error is not None
    assert "processes" in r.limits_hit or "time" in r.limits_hit
    usable(worker)
    if not r.restarted:  # the strays were reaped: only the worker itself is left in its pid namespace
        assert worker.execute("import os; len([p for p in os.listdir('/proc') if p.isdigit()])").value == "1"


def test_allocating_50_gb_is_a_memory_error(worker: Worker) -> None:
    r = worker.execute("blob = bytearray(50 * 2**30)")
    assert r.error["type"] == "MemoryError" and r.limits_hit == ["memory"] and not r.restarted
    r = worker.execute("import numpy as np\nchunks = []\nwhile True:\n    chunks.append(np.ones(10**8, np.uint8))")
    assert "memory" in r.limits_hit
    worker.execute("del chunks")
    usable(worker)


def test_huge_image_is_not_returned(worker: Worker) -> None:
    r = worker.execute("from PIL import Image\nbig = Image.new('L', (20000, 20000))\nshow(big)")
    assert r.images == [] and "image_pixels" in r.limits_hit
    r = worker.execute("big")  # an image as the last expression is shown, so the same check applies
    assert r.images == [] and "image_pixels" in r.limits_hit
    r = worker.execute("Image.new('L', (6000, 6000)).save('big.png')\nprint('big.png')")
    assert r.images == [] and "image_pixels" in r.limits_hit
    worker.execute("del big")
    r = worker.execute("Image.new('RGB', (20000, 20000))")  # 1.2 GB: over this worker's 1 GiB
    assert r.error["type"] == "MemoryError" and "memory" in r.limits_hit
    usable(worker)


def test_printing_100_mb_is_cut(worker: Worker) -> None:
    r = worker.execute("print('x' * 100_000_000)")
    assert len(r.stdout) == 2000 and r.stdout_cut == 100_000_001 - 2000 and "output" in r.limits_hit
    r = worker.execute("import os\nn = os.write(1, b'y' * 100_000_000)\nos.write(1, b'z')")
    assert r.error["type"] == "OSError" and {"file_size", "output"} <= set(r.limits_hit)
    assert len(r.stdout) <= 2000 + 100 and r.stdout_cut > 0  # written to fd 1: cut at the file size limit too
    assert worker.execute("n").value == str(16 * 2**20)
    usable(worker)


def test_sys_exit_keeps_the_session(worker: Worker) -> None:
    worker.execute("kept = 'yes'")
    r = worker.execute("import sys\nsys.exit(3)")
    assert r.error["type"] == "SystemExit" and not r.restarted
    assert worker.execute("kept").value == "'yes'"


def test_os_exit_restarts(worker: Worker) -> None:
    r = worker.execute("import os\nos._exit(1)")
    assert r.restarted and "exited with status 1" in r.error["message"]
    usable(worker)


def test_killing_the_parent_does_not_reach_the_kernel(worker: Worker) -> None:
    r = worker.execute("import os\nprint(os.getppid())\nos.kill(os.getppid(), 9)")
    assert r.error is not None or r.stdout.strip() == "0"  # in its own pid namespace the parent is pid 0
    assert os.getpid() > 0  # still here
    usable(worker)


def test_kill_every_process_it_can_see(worker: Worker) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        worker.execute("import os, signal\nos.kill(-1, signal.SIGKILL)")
        assert sleeper.poll() is None  # a process of the same uid outside the sandbox is untouched
        usable(worker)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_segfault_restarts(worker: Worker) -> None:
    r = worker.execute("import ctypes\nctypes.string_at(0)")
    assert r.restarted and "SIGSEGV" in r.error["message"]
    usable(worker)


def test_deep_recursion(worker: Worker) -> None:
    r = worker.execute("def f(n):\n    return f(n + 1)\nf(0)")
    assert r.error["type"] == "RecursionError" and not r.restarted
    assert r.error["traceback"].count("<code-") <= 4  # repeated frames are folded
    r = worker.execute("import sys\nsys.setrecursionlimit(10**7)\ndef g(n):\n    return g(n + 1)\ng(0)")
    assert r.error is not None
    usable(worker)


@pytest.fixture()
def loopback_server():
    """A TCP server on 127.0.0.1 that records every connection it accepts."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, addr = srv.accept()
            except OSError:
                continue
            accepted.append(addr)
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], accepted
    stop.set()
    t.join()
    srv.close()


def test_socket_to_loopback_fails(worker: Worker, loopback_server) -> None:
    port, accepted = loopback_server
    r = worker.execute(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)")
    assert r.error is not None and "unreachable" in r.error["message"].lower()
    r = worker.execute(f"import urllib.request\nurllib.request.urlopen('http://localhost:{port}/', timeout=2)")
    assert r.error is not None
    assert accepted == []


def test_subprocess_curl_fails(worker: Worker, loopback_server) -> None:
    port, accepted = loopback_server
    # the worker's root holds the interpreter, not the host's programs (curl is not there to run)
    argv = [sys.executable, "-c", f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/')"]
    r = worker.execute(f"import subprocess\np = subprocess.run({argv!r}, capture_output=True, text=True)\n"
                       "print(p.returncode, p.stderr)")
    assert r.error is None and not r.stdout.startswith("0 ")
    assert accepted == []


def test_kernel_environment_is_invisible(worker: Worker) -> None:
    assert os.environ["R1V4_TEST_SECRET"] == SECRET
    code = (
        "import os\nfound = []\nprint(sorted(os.environ))\n"
        f"for p in ['/proc/{os.getpid()}/environ'] + [f'/proc/{{d}}/environ' for d in os.listdir('/proc') "
        "if d.isdigit()]:\n"
        "    try:\n        found.append(open(p, 'rb').read())\n    except OSError as e:\n        print(p, e.strerror)\n"
        "print(b''.join(found))"
    )
    r = worker.execute(code)
    assert r.error is None and "HOME" in r.stdout
    assert SECRET not in r.stdout and "OPENAI_API_KEY" not in r.stdout


def test_writing_outside_the_scratch_folder(worker: Worker, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    r = worker.execute(f"open({str(outside)!r}, 'w').write('x')")
    assert worker.containment["private_root"], worker.containment
    assert r.error is not None and r.error["type"] in ("FileNotFoundError", "OSError", "PermissionError")
    assert not outside.exists()  # the host's folder is not in the worker's root at all
    r = worker.execute("open('/tmp/private.txt', 'w').write('x'); import os; print(os.listdir('/tmp'))")
    assert r.error is None and "private.txt" in r.stdout and not Path("/tmp/private.txt").exists()
    r = worker.execute("open(image_paths[0], 'ab').write(b'x')")
    assert r.error is not None  # the input copies are read-only either way
    r = worker.execute("open('notes.txt', 'w').write('fine'); print(open('notes.txt').read())")
    assert r.stdout == "fine\n" and (worker.scratch / "notes.txt").read_text() == "fine"


def test_pickle_and_marshal_bombs(worker: Worker) -> None:
    bomb = b"c__builtin__\nbytearray\n(I" + str(50 * 2**30).encode() + b"\ntR."
    r = worker.execute(f"import pickle\npickle.loads({bomb!r})")
    assert r.error["type"] == "MemoryError"
    nested = b"(" * 10**6
    r = worker.execute(f"import pickle\npickle.loads({nested!r} + b'.')")
    assert r.error is not None
    r = worker.execute("import marshal\nmarshal.loads(b'\\xdb' * 10**6)")
    assert r.error is not None
    r = worker.execute("import marshal\nmarshal.loads(b's' + (2**31 - 1).to_bytes(4, 'little'))")
    assert r.error is not None
    usable(worker)


def test_cancel_interrupts_without_losing_state(worker: Worker) -> None:
    worker.execute("kept2 = 5")
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    r = worker.execute("import time\ntime.sleep(2.5)", cancel=cancel)
    assert r.error["type"] == "KeyboardInterrupt" and not r.restarted
    assert worker.execute("kept2").value == "5"


def test_a_cancel_set_before_the_code_starts_still_interrupts_it(worker: Worker) -> None:
    # On a loaded machine the cancel can reach the worker while it is still reading the request: the host
    # repeats it until the call ends, so it is not lost (the sleep would otherwise run to its end).
    worker.execute("kept3 = 7")
    cancel = threading.Event()
    cancel.set()
    r = worker.execute("import time\ntime.sleep(60)", cancel=cancel, time_s=120)
    assert r.error is not None and r.error["type"] == "KeyboardInterrupt" and not r.restarted
    assert worker.execute("kept3").value == "7"


def test_cancel_works_in_a_worker_started_by_a_host_that_ignores_sigint(tmp_path: Path, image_file: Path) -> None:
    # A process started while SIGINT is ignored inherits that (a kernel or an earlier test can leave it so);
    # the worker installs its own handler, so the cancel still reaches model code.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        sha = hashlib.sha256(image_file.read_bytes()).hexdigest()
        w = Worker(tmp_path / "scratch", [InputImage("image_1", image_file, sha)],
                   Limits(time_s=SLOW_MACHINE_S, memory_mb=1024, processes=32, file_size_mb=16, output_chars=2000))
        w.wait_ready()
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        cancel = threading.Event()
        cancel.set()
        r = w.execute("import time\ntime.sleep(60)", cancel=cancel, time_s=120)
        assert r.error is not None and r.error["type"] == "KeyboardInterrupt" and not r.restarted
    finally:
        w.close()


def test_an_interrupt_between_calls_does_not_break_the_session(worker: Worker) -> None:
    worker.execute("kept4 = 9")
    assert worker.proc is not None
    os.kill(worker.proc.pid, signal.SIGINT)  # a stray cancel while no model code runs
    r = worker.execute("kept4")
    assert r.error is None and r.value == "9" and not r.restarted


def test_traceback_shows_only_model_code(worker: Worker) -> None:
    r = worker.execute("import numpy as np\n\ndef bad():\n    return np.zeros(3).reshape(7)\n\nbad()")
    tb = r.error["traceback"]
    assert 'File "<code-' in tb and "line 6" in tb and "return np.zeros(3).reshape(7)" in tb
    assert "site-packages" not in tb and tb.strip().endswith(r.error["message"])
    r = worker.execute("def oops(:\n    pass")
    assert r.error["type"] == "SyntaxError" and "oops" in r.error["traceback"]


# -- attacks on the host through the file system: the worker's root holds nothing of it ------------------


CANARY = "r1v4-canary-5b2e9a"


@pytest.fixture()
def canaries(tmp_path: Path):
    """Files only the host should be able to read: one in the test's temp folder, one in the checkout."""
    files = [tmp_path / "canary.txt", CHECKOUT / f".canary-{os.getpid()}.txt"]
    for f in files:
        f.write_text(CANARY)
    yield files
    files[1].unlink()


READ_ALL = """
import os
found, listed = [], {}
for p in PATHS:
    try:
        found.append(open(p).read())
    except OSError as e:
        found.append(type(e).__name__)
for d in DIRS:
    try:
        listed[d] = sorted(os.listdir(d))
    except OSError as e:
        listed[d] = type(e).__name__
print(found)
print(listed)
"""


def test_model_code_cannot_read_or_list_the_host(worker: Worker, canaries: list[Path]) -> None:
    paths = [str(c) for c in canaries] + ["/etc/shadow", "/etc/passwd", "/root/.bashrc", str(CHECKOUT / "README.md"),
                                          f"/proc/{os.getpid()}/environ", "/proc/1/environ"]
    dirs = ["/", "/etc", "/home", "/root", str(CHECKOUT), str(canaries[0].parent), "/tmp", "/run", "/proc"]
    r = worker.execute(f"PATHS = {paths!r}\nDIRS = {dirs!r}\n" + READ_ALL)
    assert r.error is None, r.error
    assert CANARY not in r.stdout and SECRET not in r.stdout and "root:" not in r.stdout
    listed = r.stdout.splitlines()[1]
    assert "README.md" not in listed and "pyproject.toml" not in listed and "canary" not in listed
    top = eval(listed)["/"]  # what the root holds: the skeleton of the Python install, libraries, /dev, /tmp
    # The venv's and the base install's top folders are allowed wherever the checkout lives (CI clones elsewhere).
    installs = {Path(p).parts[1] for p in (sys.prefix, sys.base_prefix, worker.scratch)}
    assert set(top) <= {"dev", "etc", "lib", "lib64", "lib32", "libx32", "usr", "proc", "tmp", "root", "opt",
                        "home", "srv", "var", "mnt", *installs}
    assert eval(listed)["/etc"] in (["ld.so.cache"], "FileNotFoundError")


def test_model_code_cannot_reach_a_host_unix_socket(worker: Worker, tmp_path: Path) -> None:
    path = str(tmp_path / "host.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(4)
    srv.settimeout(0.2)
    accepted: list[bool] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            accepted.append(True)
            conn.sendall(b"HOST BANNER")
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        r = worker.execute(f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.settimeout(5)\n"
                           f"s.connect({path!r})\nprint(s.recv(100))")
        assert r.error is not None and "HOST BANNER" not in r.stdout and accepted == []
    finally:
        stop.set()
        t.join()
        srv.close()


# -- attacks on the host through the worker's messages: nothing it sends is trusted ----------------------

FIND_SESSION = """
import gc
from r1v4_nb.sandbox import protocol
session = next(o for o in gc.get_objects() if type(o).__name__ == '_Session')
"""


def test_forged_image_outside_scratch_is_refused(worker: Worker, tmp_path: Path, canaries: list[Path]) -> None:
    outside = tmp_path / "outside.png"
    Image.new("RGB", (8, 8)).save(outside)
    for target in (str(outside), "/proc/self/environ", "../../etc/passwd", str(canaries[0])):
        forged = {"type": "result", "stdout": "", "stderr": "", "value": None, "error": None, "notes": [],
                  "limits_hit": [], "images": [{"path": target, "name": "x.png", "width": 8, "height": 8}]}
        r = worker.execute(FIND_SESSION + f"protocol.send(session.wfd, dict({forged!r}, id=session.call_id))\n"
                           "import time\ntime.sleep(100)")
        assert r.images and r.images[0]["path"] == target  # the message got through; reading it must not
        with pytest.raises(ImageRefused):
            worker.read_image(target)
        worker.restart()  # the real call is still sleeping
    usable(worker)


def test_a_late_real_result_after_a_forged_one_is_caught(worker: Worker) -> None:
    r = worker.execute(FIND_SESSION + "protocol.send(session.wfd, {'type': 'result', 'stdout': 'forged', "
                       "'stderr': '', 'id': session.call_id})\nimport time\ntime.sleep(1)")
    assert r.stdout == "forged"  # model code can lie about its own call, as it could by printing
    r = worker.execute("print('next')")
    assert r.error["type"] == "WorkerProtocolError" and r.restarted  # the real result of the last call came late
    usable(worker)


def test_malformed_messages_are_an_error_and_a_restart(worker: Worker) -> None:
    cases = [
        {"type": "result"},  # no stdout (the host used to die with KeyError)
        {"type": "result", "stdout": 5, "stderr": ""},
        {"type": "result", "stdout": "", "stderr": "", "images": [{"path": 3}]},
        {"type": "result", "stdout": "", "stderr": "", "images": "all of them"},
        {"type": "result", "stdout": "", "stderr": "", "error": {"type": ["x"]}},
        {"type": "surprise"},
    ]
    for forged in cases:
        r = worker.execute(FIND_SESSION + f"protocol.send(session.wfd, {forged!r})\nimport time\ntime.sleep(1)")
        assert r.error["type"] == "WorkerProtocolError" and r.restarted, (forged, r.error)
        usable(worker)
    raw = [b"\x00\x00\x00\x05[1,2", b"\xff\xff\xff\xff", b"\x00\x00\x00\x04null",
           b"\x00\x00\x10\x00" + b"[" * 4096]
    for data in raw:
        r = worker.execute(FIND_SESSION + f"import os\nos.write(session.wfd, {data!r})\nimport time\ntime.sleep(1)")
        assert r.restarted and r.error is not None, data
        usable(worker)


def test_a_message_sent_between_calls_restarts_the_worker(worker: Worker) -> None:
    r = worker.execute(FIND_SESSION + "import threading, time\n"
                       "threading.Timer(0.5, lambda: protocol.send(session.wfd, {'type': 'result', 'stdout': 'forged', "
                       "'stderr': ''})).start()")
    assert r.error is None
    time.sleep(2)
    r = worker.execute("print('real')")
    assert r.stdout == "real\n" and any("between calls" in n for n in r.notes)


def test_planted_symlinks_do_not_reach_host_files(worker: Worker, tmp_path: Path) -> None:
    host_folder = tmp_path / "host-folder"
    host_folder.mkdir()
    r = worker.execute(f"import os\nos.symlink({str(host_folder)!r}, '.sandbox')\n"
                       "os.symlink('/etc/passwd', 'evil.png')\nos.symlink('/proc/self/environ', 'env.png')\n"
                       "print('evil.png')\nprint('env.png')")
    assert r.images == [] or all(not im for im in r.images)
    for name in ("evil.png", "env.png", ".sandbox/x.png"):
        with pytest.raises(ImageRefused):
            worker.read_image(name)
    worker.restart()
    usable(worker)
    assert list(host_folder.iterdir()) == []  # the host wrote nothing through the planted link
    for attack in ("import os\nos.rename('inputs', 'moved')", "import shutil\nshutil.rmtree('inputs')",
                   "open('inputs/new.png', 'wb').write(b'x')"):
        r = worker.execute(attack)  # the input copies are a read-only mount: not movable, not writable
        assert r.error is not None and r.error["type"] in ("OSError", "PermissionError"), (attack, r.error)
    (worker.scratch / ".sandbox").unlink()
    (worker.scratch / "evil.png").unlink()
    (worker.scratch / "env.png").unlink()


def test_inputs_replaced_by_a_symlink_are_restored(tmp_path: Path, image_file: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sha = hashlib.sha256(image_file.read_bytes()).hexdigest()
    w = Worker(scratch, [InputImage("image_1", image_file, sha)], Limits(time_s=SLOW_MACHINE_S))
    try:
        w.wait_ready()
        shutil.rmtree(scratch / "inputs")  # as model code of an earlier worker could have, on a laptop
        (scratch / "inputs").symlink_to(tmp_path)
        (tmp_path / "secret.txt").write_text(CANARY)
        w.restart()
        r = w.execute("import os\nprint(os.listdir('inputs'), image_1.size)")
        assert r.error is None and "secret.txt" not in r.stdout and "(320, 240)" in r.stdout
    finally:
        w.close()
    assert not w.host_dir.exists()


def test_landlock_path_without_a_mount_namespace(tmp_path: Path, image_file: Path, canaries: list[Path]) -> None:
    """What a laptop without user namespaces gets: Landlock guards the files, and says what stays exposed."""
    from r1v4_nb.sandbox.contain import landlock_abi

    if landlock_abi() == 0:
        pytest.skip("this kernel has no Landlock")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sha = hashlib.sha256(image_file.read_bytes()).hexdigest()
    w = Worker(scratch, [InputImage("image_1", image_file, sha)], Limits(time_s=SLOW_MACHINE_S), view="landlock")
    try:
        c = w.wait_ready()
        assert c["landlock"] > 0 and not c["private_root"] and not w.isolated
        assert any("unix sockets" in e for e in w.exposed())
        paths = [str(p) for p in canaries] + ["/etc/passwd"]
        r = w.execute(f"PATHS = {paths!r}\nDIRS = ['/etc', {str(CHECKOUT)!r}]\n" + READ_ALL)
        assert r.error is None and CANARY not in r.stdout and "root:" not in r.stdout, r.stdout
        assert "README.md" not in r.stdout
        r = w.execute("import numpy, cv2\nopen('ok.txt', 'w').write('x')\nprint(image_1.size)")
        assert r.error is None and r.stdout == "(320, 240)\n" and (scratch / "ok.txt").exists()
    finally:
        w.close()
