"""Round trip of "crop and zoom a 4000x3000 image and return it": persistent sandbox worker vs a fresh process.

Run: .venv/bin/python benchmarks/code_tool.py [--calls N]
Prints both latencies side by side (measured in this run), their ratio, the
cold start time of a worker and the memory of an idle worker. Targets: the
persistent path at least 20x faster, its median under 50 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
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
        results[name] = (persistent, fresh)
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
    for name, (persistent, fresh) in results.items():
        ratios[name] = statistics.median(fresh) / statistics.median(persistent)
        print(f"  {name}")
        print(f"    persistent worker   ({len(persistent):3d} calls): {ms(persistent)}")
        print(f"    fresh process/call  ({len(fresh):3d} calls): {ms(fresh)}")
        print(f"    speed-up (median): {ratios[name]:.1f}x")
    print(f"cold worker start (namespaces, numpy/PIL/cv2 imports, image preload): median "
          f"{statistics.median(starts) * 1000:.0f} ms")
    print(f"memory per idle worker (PSS, supervisor + server, 4000x3000 image loaded): "
          f"{statistics.median(memory):.0f} MiB")
    print("containment: " + ", ".join(k for k, v in containment.items() if v is True)
          + f"; cgroups: {', '.join(containment.get('cgroups') or []) or 'none'}")
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    first = next(iter(results))
    ok = ratios[first] >= 20 and statistics.median(results[first][0]) < 0.05
    print(f"targets on the {first} crop (>= 20x, median < 50 ms): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
