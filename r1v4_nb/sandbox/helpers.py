"""Image helpers for model-written code (imported inside the sandbox worker as `helpers`).

Every function takes and returns PIL images, so calls chain. Provenance (which
input image and which box of it an image shows) travels in `im.info`; the
worker reads it when the image is saved or shown, so a crop made here, or with
PIL's own `Image.crop`, comes back to the agent with its source and box.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

PROVENANCE = "r1v4_provenance"

__all__ = [
    "clamp_box", "crop", "zoom", "rotate", "flip", "contrast", "sharpness", "brightness", "autocontrast",
    "grayscale", "threshold", "denoise", "sharpen", "draw_boxes", "stats", "to_image", "show",
]


def _keep(src: Image.Image, out: Image.Image) -> Image.Image:
    """Carry the provenance of `src` to `out` (same region, transformed pixels)."""
    if PROVENANCE in src.info:
        out.info[PROVENANCE] = dict(src.info[PROVENANCE])
    return out


def to_image(x: Any, bgr: bool = False) -> Image.Image:
    """A PIL image from a PIL image, a numpy array (RGB; `bgr=True` for OpenCV arrays) or a file path."""
    if isinstance(x, Image.Image):
        return x
    if isinstance(x, (str, os.PathLike)):
        with Image.open(x) as im:
            im.load()
            return im.copy()
    arr = np.asarray(x)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if bgr and arr.ndim == 3 and arr.shape[2] >= 3:
        arr = arr[..., [2, 1, 0]]
    return Image.fromarray(arr)


def clamp_box(width: int, height: int, box: Sequence[float], who: str = "crop") -> tuple[int, int, int, int]:
    """A pixel box (x0, y0, x1, y1) clamped to a `width` x `height` image, corners in order.

    A box that reaches past an edge is cut to the picture and a note in the observation says so (the model
    learns where the edge is); a box with nothing of the picture in it is an error, never a blank image.
    """
    if len(box) != 4:
        raise ValueError(f"{who}: box must be (x0, y0, x1, y1), got {tuple(box)!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    cx0, cx1 = (max(0, min(width, round(v))) for v in (x0, x1))
    cy0, cy1 = (max(0, min(height, round(v))) for v in (y0, y1))
    if cx1 - cx0 < 1 or cy1 - cy0 < 1:
        raise ValueError(f"{who}: the box {_fmt(box)} has no pixels inside the {width}x{height} image "
                         f"(x runs 0..{width}, y 0..{height}); pick a box inside it")
    if (cx0, cy0, cx1, cy1) != (round(x0), round(y0), round(x1), round(y1)):
        outputs.notes.append(f"{who}: the box {_fmt(box)} reaches past the edge of the {width}x{height} image; "
                             f"clamped to {_fmt((cx0, cy0, cx1, cy1))}")
    return cx0, cy0, cx1, cy1


def _fmt(box: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in box) + ")"


def crop(im: Image.Image, box: Sequence[float], normalized: bool | None = None) -> Image.Image:
    """Crop to (x0, y0, x1, y1): pixels, or fractions of the size when all four are in [0, 1] (or `normalized`).

    The box is clamped to the image (a note says so); a box outside it raises ValueError.
    """
    if len(box) != 4:
        raise ValueError("box must be (x0, y0, x1, y1)")
    x0, y0, x1, y1 = (float(v) for v in box)
    if normalized is None:
        normalized = all(0.0 <= v <= 1.0 for v in (x0, y0, x1, y1)) and any(isinstance(v, float) for v in box)
    if normalized:
        x0, x1 = x0 * im.width, x1 * im.width
        y0, y1 = y0 * im.height, y1 * im.height
    return im.crop(clamp_box(im.width, im.height, (x0, y0, x1, y1)))


def zoom(im: Image.Image, factor: float = 2.0, max_side: int | None = 4096) -> Image.Image:
    """Enlarge (or shrink) by `factor` with Lanczos resampling; the longer side stays within `max_side`."""
    if factor <= 0:
        raise ValueError("factor must be positive")
    w, h = im.width * factor, im.height * factor
    if max_side and max(w, h) > max_side:
        scale = max_side / max(w, h)
        w, h = w * scale, h * scale
    return _keep(im, im.resize((max(1, round(w)), max(1, round(h))), Image.Resampling.LANCZOS))


def rotate(im: Image.Image, degrees: float, expand: bool = True, fill: Any = None) -> Image.Image:
    """Rotate counter-clockwise by `degrees` (bicubic); `expand` keeps the whole picture."""
    return _keep(im, im.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=expand, fillcolor=fill))


def flip(im: Image.Image, direction: str = "horizontal") -> Image.Image:
    """Mirror left-right (`horizontal`) or top-bottom (`vertical`)."""
    if direction not in ("horizontal", "vertical"):
        raise ValueError("direction must be 'horizontal' or 'vertical'")
    return _keep(im, ImageOps.mirror(im) if direction == "horizontal" else ImageOps.flip(im))


def contrast(im: Image.Image, factor: float = 1.5) -> Image.Image:
    """Scale contrast (1.0 unchanged)."""
    return _keep(im, ImageEnhance.Contrast(_rgb(im)).enhance(factor))


def sharpness(im: Image.Image, factor: float = 2.0) -> Image.Image:
    """Scale sharpness (1.0 unchanged)."""
    return _keep(im, ImageEnhance.Sharpness(_rgb(im)).enhance(factor))


def brightness(im: Image.Image, factor: float = 1.3) -> Image.Image:
    """Scale brightness (1.0 unchanged)."""
    return _keep(im, ImageEnhance.Brightness(_rgb(im)).enhance(factor))


def autocontrast(im: Image.Image, cutoff: float = 1.0) -> Image.Image:
    """Stretch the histogram, ignoring `cutoff` percent at each end."""
    return _keep(im, ImageOps.autocontrast(_rgb(im), cutoff=cutoff))


def sharpen(im: Image.Image, radius: float = 2.0, percent: int = 150) -> Image.Image:
    """Unsharp mask: brings out small text and edges."""
    return _keep(im, _rgb(im).filter(ImageFilter.UnsharpMask(radius=radius, percent=percent, threshold=2)))


def grayscale(im: Image.Image) -> Image.Image:
    return _keep(im, im.convert("L"))


def threshold(im: Image.Image, value: int | str = "otsu") -> Image.Image:
    """Black and white at `value` (0-255), or Otsu's automatic threshold."""
    import cv2

    gray = np.asarray(im.convert("L"))
    if value == "otsu":
        _, out = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    else:
        _, out = cv2.threshold(gray, int(value), 255, cv2.THRESH_BINARY)
    return _keep(im, Image.fromarray(out))


def denoise(im: Image.Image, strength: int = 7) -> Image.Image:
    """Non-local means denoising (OpenCV); `strength` around 3-15."""
    import cv2

    if im.mode == "L":
        out = cv2.fastNlMeansDenoising(np.asarray(im), None, strength, 7, 21)
    else:
        out = cv2.fastNlMeansDenoisingColored(np.asarray(_rgb(im)), None, strength, strength, 7, 21)
    return _keep(im, Image.fromarray(out))


def draw_boxes(im: Image.Image, boxes: Sequence[Sequence[float]], labels: Sequence[str] | None = None,
               color: str = "red", width: int = 3) -> Image.Image:
    """A copy with rectangles (pixel boxes x0, y0, x1, y1) and optional labels drawn on it."""
    out = _keep(im, _rgb(im).copy())
    draw = ImageDraw.Draw(out)
    for i, box in enumerate(boxes):
        x0, y0, x1, y1 = (float(v) for v in box)
        draw.rectangle((x0, y0, x1, y1), outline=color, width=width)
        if labels and i < len(labels):
            draw.text((x0 + width, max(0, y0 - 12)), str(labels[i]), fill=color)
    return out


def stats(im: Image.Image, box: Sequence[float] | None = None) -> dict[str, Any]:
    """Size and per-channel mean / std / min / max (of `box` when given)."""
    if box is not None:
        im = crop(im, box)
    arr = np.asarray(im, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[..., None]
    bands = im.getbands()
    return {
        "size": [im.width, im.height],
        "mode": im.mode,
        "mean": {b: round(float(arr[..., i].mean()), 2) for i, b in enumerate(bands)},
        "std": {b: round(float(arr[..., i].std()), 2) for i, b in enumerate(bands)},
        "min": {b: int(arr[..., i].min()) for i, b in enumerate(bands)},
        "max": {b: int(arr[..., i].max()) for i, b in enumerate(bands)},
    }


def _rgb(im: Image.Image) -> Image.Image:
    return im if im.mode in ("RGB", "L") else _keep(im, im.convert("RGB"))


class Outputs:
    """Where `show()` writes and what it has shown during the current call (the worker reads and clears it)."""

    def __init__(self) -> None:
        self.folder = "."
        self.max_pixels = 4096 * 4096
        self.shown: list[str] = []
        self.shown_objects: list[Any] = []  # the images themselves, so the last expression is not shown twice
        self.notes: list[str] = []
        self.limits: list[str] = []
        self.count = 0


outputs = Outputs()


def show(im: Any, name: str | None = None) -> str:
    """Return an image to the model: saved as PNG in the scratch folder; gives back its path.

    Accepts what `to_image` accepts. An image over the pixel limit is not saved
    (a note says so); crop or `zoom(im, 0.5)` it first.
    """
    outputs.shown_objects.append(im)
    im = to_image(im)
    if im.width * im.height > outputs.max_pixels:
        outputs.notes.append(f"show(): {im.width}x{im.height} is {im.width * im.height} pixels, over the limit "
                             f"of {outputs.max_pixels}; crop or shrink it first")
        outputs.limits.append("image_pixels")
        return ""
    outputs.count += 1
    stem = os.path.basename(name) if name else f"show_{outputs.count}"
    path = os.path.abspath(os.path.join(outputs.folder, stem if stem.endswith(".png") else stem + ".png"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    im.save(path, format="PNG", compress_level=1)
    outputs.shown.append(path)
    return path
