"""The `code` tool: the model's Python runs in a persistent sandboxed worker per trajectory.

The worker (r1v4_nb/sandbox) keeps variables between calls like a notebook,
preloads the input images, and returns printed output, the last expression's
value and the images the code saved and printed the path of (or passed to
`show()`). Limits are enforced there; this module turns its results into
observations, with provenance for the images and a plain account of any limit
hit or restart.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any

from ..images import Image, Provenance
from ..records import Observation
from ..sandbox.client import CallResult, ImageRefused, InputImage, Limits, StartError, Worker
from .base import Tool, ToolContext, ToolError, require

log = logging.getLogger(__name__)

DESCRIPTION = """Run Python code on the image(s). State persists between calls (variables, imports), as in a notebook.
Preloaded: `image_1`, `image_2`, ... (PIL images of the inputs), `images` (the same, as a list) and `image_paths`
(their file paths, read-only copies). numpy, PIL, cv2 are available, and `helpers` with crop(im, box) (pixel box
x0, y0, x1, y1, or fractions in [0, 1]), zoom(im, factor), rotate(im, degrees), flip(im, 'horizontal'|'vertical'),
contrast / sharpness / brightness(im, factor), autocontrast, sharpen, grayscale, threshold(im, value|'otsu'),
denoise, draw_boxes(im, boxes, labels), stats(im, box).
To look at an image you made, save it in the current folder and print its path (`im.save('crop.png');
print('crop.png')`) or call show(im); an image as the last expression is shown too. Printed output and the value of
the last expression come back as text. No network access."""

_NO_NET_WARNING = ("r1v4_nb code tool: the sandbox could not create a network namespace on this machine, so model "
                   "code CAN reach the network ({why}); pass CodeTool(require_network_isolation=True) to refuse to "
                   "run instead")
_warned = False
_warn_lock = threading.Lock()
_INPUT_NAME = re.compile(r"image_(\d+)$")


class CodeTool(Tool):
    """Runs model-written Python in a sandboxed worker kept per trajectory."""

    name = "code"
    description = DESCRIPTION
    parameters = {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "Python source to run"}},
        "required": ["code"],
    }

    def __init__(self, timeout_s: float = 30.0, memory_mb: int = 4096, processes: int = 64, open_files: int = 256,
                 file_size_mb: int = 256, output_chars: int = 20_000, max_images: int = 8,
                 max_image_pixels: int = 4096 * 4096, require_network_isolation: bool = False,
                 start_timeout_s: float = 60.0, require_isolation: bool = False, view: str = "auto"):
        self.limits = Limits(time_s=timeout_s, memory_mb=memory_mb, processes=processes, open_files=open_files,
                             file_size_mb=file_size_mb, output_chars=output_chars, images=max_images,
                             image_pixels=max_image_pixels)
        self.require_network_isolation = require_network_isolation
        self.require_isolation = require_isolation  # refuse unless model code sees nothing of the host
        self.view = view
        self.start_timeout_s = start_timeout_s
        self.workers: dict[str, Worker] = {}
        self._lock = threading.Lock()

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"limits": self.limits.to_json(),
                               "require_network_isolation": self.require_network_isolation,
                               "require_isolation": self.require_isolation}
        for worker in self.workers.values():
            if worker.containment:
                out["containment"] = worker.containment
                break
        return out

    def start(self, ctx: ToolContext) -> None:
        """Start this trajectory's worker now, so its imports overlap with the model's first turn."""
        self._worker(ctx)

    def finish(self, ctx: ToolContext) -> None:
        with self._lock:
            worker = self.workers.pop(ctx.trajectory_id, None)
        if worker is not None:
            worker.close()

    def close(self) -> None:
        with self._lock:
            workers, self.workers = list(self.workers.values()), {}
        for worker in workers:
            worker.close()

    def _worker(self, ctx: ToolContext) -> Worker:
        with self._lock:
            worker = self.workers.get(ctx.trajectory_id)
            if worker is None:
                inputs = sorted(((int(m.group(1)), n, im) for n, im in ctx.images.items()
                                 if (m := _INPUT_NAME.match(n))), key=lambda t: t[0])
                worker = Worker(Path(ctx.workdir), [InputImage(n, Path(im.path), im.sha256, _file_name(n, im))
                                                    for _, n, im in inputs], self.limits, self.start_timeout_s,
                                self.view)
                worker.start()
                self.workers[ctx.trajectory_id] = worker
            return worker

    def run(self, arguments: dict[str, Any], ctx: ToolContext) -> Observation:
        code = require(arguments, "code", str)
        worker = self._worker(ctx)
        try:
            containment = worker.wait_ready()
        except StartError as exc:
            raise ToolError(str(exc)) from exc
        if self.require_isolation and not worker.isolated:
            why = "; ".join(worker.exposed())
            return Observation(text=f"[refused: the sandbox cannot hide the host on this machine; model code would "
                                    f"reach {why}. CodeTool(require_isolation=False) runs it anyway]",
                               error="isolation unavailable", limits_hit=["isolation"],
                               data={"containment": containment})
        warning = self._check_network(containment)
        if warning and self.require_network_isolation:
            return Observation(text=f"[refused: {warning}]", error="network isolation unavailable",
                               limits_hit=["network"], data={"containment": containment})
        result = worker.execute(code, ctx.step, ctx.cancel)
        images = []
        for entry in result.images:
            try:
                images.append(self._register(entry, worker, ctx))
            except (ImageRefused, ValueError) as exc:  # the worker named something that is not its image
                result.notes.append(f"{entry['name']}: not returned ({exc})")
        text = render(result, images)
        if warning and result.fresh and worker.restarts == 0:
            text = f"[warning: {warning}]\n{text}"
        return Observation(
            text=text, images=images, error=result.error["message"] if result.error else None, limits_hit=list(result.limits_hit),
            data={"stdout": result.stdout, "stderr": result.stderr, "value": result.value,
                  "error": result.error, "restarted": result.restarted, "notes": result.notes,
                  "elapsed_s": round(result.elapsed_s, 6), "containment": containment},
        )

    def _register(self, entry: dict[str, Any], worker: Worker, ctx: ToolContext) -> Image:
        """The image record for an output file, with provenance, addressable by the path the code printed.

        The bytes are read once, safely (`Worker.read_image`), checked against the
        pixel limit and kept in the host's own folder: model code can later replace
        the file in scratch, but not what the record points to.
        """
        from PIL import Image as PILImage

        data = worker.read_image(entry["path"])
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            image = Image.from_bytes(data, worker.outputs_dir, max_pixels=self.limits.image_pixels)
        box = entry.get("box")
        prov = Provenance("code", step=ctx.step, source=entry.get("source"), name=entry["name"])
        if box is not None and not _whole_image(box, entry.get("source"), ctx):
            prov.box = box
        image.provenance = prov
        ctx.register_image(image, entry["name"], os.path.normpath(os.path.join(worker.scratch, entry["path"])))
        return image

    @staticmethod
    def _check_network(containment: dict[str, Any]) -> str | None:
        """The loud, once-per-process warning when model code would have network access."""
        global _warned
        if containment.get("net"):
            return None
        why = "; ".join(containment.get("errors") or []) or "unshare is not permitted"
        message = _NO_NET_WARNING.format(why=why)
        with _warn_lock:
            if not _warned:
                _warned = True
                warnings.warn(message, RuntimeWarning, stacklevel=3)
                log.warning(message)
        return message


def _file_name(name: str, image: Image) -> str:
    """The input copy's file name: the name the user gave the image where it has an extension, else image_N."""
    given = Path(image.provenance.name or "").name
    return given if Path(given).suffix else f"{name}{image.path.suffix}"


def _whole_image(box: list[int], source: str | None, ctx: ToolContext) -> bool:
    for im in ctx.images.values():
        if im.sha256 == source:
            return box == [0, 0, im.width, im.height]
    return False


def _cut(text: str, cut: int) -> str:
    return text + (f"\n... {cut} more characters cut" if cut else "")


def render(result: CallResult, images: list[Image]) -> str:
    """The observation text: output, value, error, images, then what limits and restarts mean for the model."""
    parts: list[str] = []
    if result.stdout or result.stdout_cut:
        parts.append(_cut(result.stdout.rstrip("\n"), result.stdout_cut))
    if result.stderr or result.stderr_cut:
        parts.append("[stderr]\n" + _cut(result.stderr.rstrip("\n"), result.stderr_cut))
    if result.value is not None:
        parts.append(result.value)
    if result.error:
        parts.append(result.error.get("traceback") or result.error["message"])
    for i, im in enumerate(images, 1):
        parts.append(f"[image {i}: {im.provenance.name} ({im.width}x{im.height})]")
    parts += [f"[note: {n}]" for n in result.notes]
    limit_text = {
        "time": "wall time limit reached",
        "memory": "memory limit reached",
        "processes": "process limit reached (no more processes can be started)",
        "open_files": "open-file limit reached",
        "file_size": "file size limit reached",
        "output": "output limit reached; the rest of the output was cut",
        "images": "too many images in one call; the first ones were kept",
        "image_pixels": "an image was over the pixel limit and was not returned",
    }
    parts += [f"[limit: {limit_text.get(name, name)}]" for name in result.limits_hit]
    if result.restarted:
        parts.append("[the worker was stopped and restarted: variables, imports and opened images from earlier "
                      "calls are gone; the input images are loaded again]")
    return "\n".join(parts) if parts else "[no output]"
