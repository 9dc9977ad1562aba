"""Round trip of "crop and zoom a 4000x3000 image and return it": persistent sandbox worker vs a fresh process.

Run: .venv/bin/python benchmarks/code_tool.py [--calls N]
Prints, measured in this run: the persistent worker, a fresh process per call, a Jupyter kernel driven
by jupyter_client (same preloads and code), in-process exec (the floor), the worker with pngfast deflating
with zlib (as before ISA-L), their ratios, the cold
start time of a worker and the memory of an idle worker. Targets: the persistent path at least 20x
faster than a fresh process, its median under 50 ms, ahead of the Jupyter kernel.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from r1v4_nb.images import Image, Provenance
from r1v4_nb.sandbox.client import InputImage, Worker
from r1v4_nb.tools.base import ToolContext
from r1v4_nb.tools.code import CodeTool

CASES = {  # name -> crop box in the 4000x3000 image; zoomed 2x
    "detail 200x150 -> 400x300": (1900, 1250, 2100, 1400),
    "region 400x300 -> 800x600": (1800, 1200, 2200, 1500),
}

CODE = ("from helpers import zoom\n"
        "c = zoom(image_1.crop({box}), 2)\n"
        "c.save('crop.png')\n"
        "print('crop.png')\n")

# The worker before pngfast deflated with ISA-L: the same code with pngfast's deflater set to zlib for the call.
ZLIB = ("import sys, zlib\n_png = sys.modules['r1v4_nb.sandbox.pngfast']\n_isal, _png._deflater = _png._deflater, zlib\n"
        "try:\n{code}\nfinally:\n    _png._deflater = _isal\n")

# A fresh process per call must give the code the same environment the worker gives it: numpy, PIL, cv2 and
# helpers imported, the input image loaded as image_1. (It gets no sandbox, which only flatters it.)
FRESH = ("import sys, os\nimport numpy, cv2\nfrom PIL import Image\nfrom r1v4_nb.sandbox import helpers\n"
         "sys.modules['helpers'] = helpers\n"
         "image_1 = Image.open(sys.argv[1]); image_1.load()\n"
         "os.chdir(sys.argv[2])\n"
         "exec(sys.argv[3], {'image_1': image_1, 'helpers': helpers})\n")


def make_photo(path: Path) -> Path:
    """A photo-like 4000x3000 JPEG: a sky gradient, shapes, small text, mild sensor noise."""
    from PIL import ImageDraw, ImageFilter

    rng = np.random.default_rng(0)
    y = np.linspace(0, 1, 3000)[:, None, None]
    sky = (np.array([90, 140, 220]) * (1 - y) + np.array([230, 220, 200]) * y) * np.ones((1, 4000, 1))
    im = PILImage.fromarray(sky.astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(300):
        x0, y0 = int(rng.integers(0, 3900)), int(rng.integers(0, 2900))
        w, h = int(rng.integers(20, 600)), int(rng.integers(20, 400))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)((x0, y0, x0 + w, y0 + h), fill=colour)
    for i in range(200):
        draw.text((int(rng.integers(0, 3900)), int(rng.integers(0, 2950))), f"SIGN {i} 42-{i * 7}", fill=(0, 0, 0))
    im = im.filter(ImageFilter.GaussianBlur(1.2))
    noisy = np.asarray(im).astype(np.int16) + rng.normal(0, 3, (3000, 4000, 3)).astype(np.int16)
    PILImage.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def in_process(photo: Path, folder: Path, code: str, calls: int) -> list[float]:
    """The floor: the same code exec'd in this process (no sandbox, no messages), result read as an Image."""
    from r1v4_nb.sandbox import helpers, pngfast

    image_1 = PILImage.open(photo)
    image_1.load()
    namespace = {"image_1": image_1, "helpers": helpers, "pngfast": pngfast}  # the worker's PNG encoder
    sys.modules.setdefault("helpers", helpers)
    times, here = [], os.getcwd()
    os.chdir(folder)
    try:
        for _ in range(calls):
            t = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                exec(code.replace("c.save('crop.png')", "open('crop.png', 'wb').write(pngfast.encode(c))"), namespace)
            Image.from_file(folder / "crop.png", Provenance("code"))
            times.append(time.perf_counter() - t)
    finally:
        os.chdir(here)
    return times


def jupyter_kernel(photo: Path, folder: Path, code: str, calls: int) -> list[float] | None:
    """A Jupyter kernel driven by jupyter_client (the executor Qwen-Agent uses): same preloads, same code,
    the saved file read back as an Image; None when jupyter_client or ipykernel is missing."""
    try:
        from jupyter_client.manager import start_new_kernel
    except ImportError:
        return None
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(folder))
    try:
        setup = ("import sys, os, numpy, cv2\nfrom PIL import Image\nfrom r1v4_nb.sandbox import helpers\n"
                 f"sys.modules['helpers'] = helpers\nimage_1 = Image.open({str(photo)!r}); image_1.load()\n"
                 f"os.chdir({str(folder)!r})\n")
        kc.execute_interactive(setup, timeout=60, output_hook=lambda _m: None)
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            reply = kc.execute_interactive(code, timeout=60, output_hook=lambda _m: None)
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"kernel: {reply['content']}")
            Image.from_file(folder / "crop.png", Provenance("code"))
            times.append(time.perf_counter() - t)
        return times
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:7.1f} ms   p90 {sorted(values)[int(len(values) * 0.9)] * 1000:7.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40, help="persistent-worker calls (fresh: a quarter)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="r1v4-bench-code-"))
    photo = make_photo(folder / "photo.jpg")
    src = Image.from_file(photo, Provenance("input", name="photo.jpg"))

    ctx = ToolContext("bench", folder / "work", step=1)
    ctx.workdir.mkdir()
    ctx.register_image(src, "image_1")
    tool = CodeTool()
    tool.start(ctx)
    tool.run({"code": "1"}, ctx)  # waits for the worker to be ready
    results = {}
    for name, box in CASES.items():
        code = CODE.format(box=box)
        persistent, fresh = [], []
        for _ in range(args.calls):
            t = time.perf_counter()
            obs = tool.run({"code": code}, ctx)
            persistent.append(time.perf_counter() - t)
            assert obs.images and obs.images[0].width == 2 * (box[2] - box[0]), obs.text
        for _ in range(max(3, args.calls // 4)):
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", FRESH, str(photo), str(folder), code],
                                 capture_output=True, text=True, check=True).stdout
            Image.from_file(folder / out.strip(), Provenance("code"))
            fresh.append(time.perf_counter() - t)
        before = []  # the worker as it was: pngfast deflating with zlib instead of ISA-L
        for _ in range(args.calls):
            t = time.perf_counter()
            tool.run({"code": ZLIB.format(code=textwrap.indent(code, "    "))}, ctx)
            before.append(time.perf_counter() - t)
        kernel = jupyter_kernel(photo, folder, code, args.calls)
        results[name] = (persistent, fresh, kernel, in_process(photo, folder, code, args.calls), before)
    tool.finish(ctx)

    starts, memory = [], []
    for i in range(3):
        w = Worker(folder / f"cold{i}", [InputImage("image_1", photo, src.sha256)])
        t = time.perf_counter()
        w.wait_ready()
        starts.append(time.perf_counter() - t)
        time.sleep(0.2)
        memory.append(w.memory_kib() / 1024)
        w.close()
    containment = w.containment

    print("crop + 2x zoom (Lanczos) of a 4000x3000 JPEG, saved as PNG and returned as an Image record")
    ratios = {}
    for name, (persistent, fresh, kernel, floor, before) in results.items():
        ratios[name] = statistics.median(fresh) / statistics.median(persistent)
        print(f"  {name}")
        print(f"    persistent worker   ({len(persistent):3d} calls): {ms(persistent)}")
        print(f"    fresh process/call  ({len(fresh):3d} calls): {ms(fresh)}")
        if kernel is not None:
            print(f"    Jupyter kernel      ({len(kernel):3d} calls): {ms(kernel)}   "
                  f"(kernel / worker: {statistics.median(kernel) / statistics.median(persistent):.2f}x)")
        else:
            print("    Jupyter kernel: not measured (jupyter_client / ipykernel not installed)")
        print(f"    in-process exec     ({len(floor):3d} calls): {ms(floor)}   (the floor)")
        print(f"    worker, pngfast on zlib (before) ({len(before):3d} calls): {ms(before)}   "
              f"({statistics.median(fresh) / statistics.median(before):.1f}x a fresh process)")
        print(f"    speed-up over a fresh process (median): {ratios[name]:.1f}x")
    print(f"cold worker start (namespaces, numpy/PIL/cv2 imports, image preload): median "
          f"{statistics.median(starts) * 1000:.0f} ms")
    print(f"memory per idle worker (PSS, supervisor + server, 4000x3000 image loaded): "
          f"{statistics.median(memory):.0f} MiB")
    print("containment: " + ", ".join(k for k, v in containment.items() if v is True)
          + f"; cgroups: {', '.join(containment.get('cgroups') or []) or 'none'}")
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    ok = True
    for name, (persistent, _fresh, kernel, _floor, _before) in results.items():
        met = ratios[name] >= 20 and statistics.median(persistent) < 0.05 and (
            kernel is None or statistics.median(persistent) < statistics.median(kernel))
        ok = ok and met
        print(f"targets on the {name} crop (>= 20x, median < 50 ms, ahead of the kernel): "
              f"{'met' if met else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
