"""pngfast: the sandbox's parallel PNG encoder writes files any decoder reads back to exactly the pixels."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from r1v4_nb.sandbox import pngfast


def _photo(width: int, height: int, mode: str) -> Image.Image:
    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 255, width, dtype=np.float64)[None, :, None] + np.zeros((height, 1, 4))
    pixels = (ramp + rng.normal(0, 20, (height, width, 4))).clip(0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGBA").convert(mode)


@pytest.fixture(params=["isal", "zlib"])
def deflater(request, monkeypatch):
    """Both deflaters pngfast can run on: ISA-L (a dependency, the default) and zlib (without it)."""
    if request.param == "isal":
        isal_zlib = pytest.importorskip("isal.isal_zlib")
        assert pngfast._deflater is isal_zlib  # installed, so in use
    else:
        monkeypatch.setattr(pngfast, "_deflater", zlib)
    return request.param


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("size", [(800, 600), (7, 3), (1, 1), (333, 129)])
def test_round_trip_is_lossless(mode: str, threads: int, size: tuple[int, int], deflater: str) -> None:
    im = _photo(*size, mode)
    data = pngfast.encode(im, threads=threads)
    with Image.open(io.BytesIO(data)) as check:
        check.verify()  # every chunk's CRC, through IEND
    with Image.open(io.BytesIO(data)) as back:
        back.load()
        assert back.mode == mode and back.size == im.size
        assert np.array_equal(np.asarray(back), np.asarray(im))


def test_the_sliced_stream_is_one_zlib_stream(deflater: str) -> None:
    """zlib itself (not only PIL) accepts the joined slices and their Adler-32."""
    data = pngfast.encode(_photo(640, 480, "RGB"), threads=2)
    start = data.index(b"IDAT") + 4
    (length,) = np.frombuffer(data[start - 8:start - 4], ">u4")
    raw = zlib.decompress(data[start:start + int(length)])
    assert len(raw) == 480 * (640 * 3 + 1)


def test_same_image_same_bytes(deflater: str) -> None:
    """Image identity is the stored file's sha256: the same pixels must encode to the same file."""
    im = _photo(400, 300, "RGB")
    assert pngfast.encode(im) == pngfast.encode(im.copy())
