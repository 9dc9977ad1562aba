"""Images as content-addressed records: hashing, the store, JSON round trips."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image as PILImage

from r1v4_nb.images import Image, ImageStore, Provenance


def make_png(path: Path, colour: tuple[int, int, int] = (10, 20, 30), size: tuple[int, int] = (16, 8)) -> Path:
    PILImage.new("RGB", size, colour).save(path)
    return path


def test_from_file_measures_and_hashes(tmp_path: Path) -> None:
    p = make_png(tmp_path / "a.png")
    im = Image.from_file(p)
    assert (im.width, im.height, im.mime) == (16, 8, "image/png")
    assert im.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    assert im.provenance.kind == "input"


def test_bad_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="image not found"):
        Image.from_file(tmp_path / "nope.png")
    (tmp_path / "t.png").write_text("not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        Image.from_file(tmp_path / "t.png")


def test_store_keeps_each_picture_once(tmp_path: Path) -> None:
    a = Image.from_file(make_png(tmp_path / "a.png"))
    b = Image.from_file(make_png(tmp_path / "b.png"))  # same pixels, same bytes, another name
    store = ImageStore(tmp_path / "store")
    sa, sb = store.add(a), store.add(b)
    assert sa.path == sb.path and sa.path.parent == tmp_path / "store"
    assert sa.path.name == f"{a.sha256}.png"
    assert len(list((tmp_path / "store").iterdir())) == 1


def test_json_round_trip_with_relative_paths(tmp_path: Path) -> None:
    prov = Provenance("code", step=3, source="ab" * 32, box=[1, 2, 3, 4], name="crop.png")
    im = Image.from_pil(PILImage.new("RGB", (5, 5)), tmp_path / "imgs", prov)
    d = im.to_json(relative_to=tmp_path)
    assert d["path"] == f"imgs/{im.sha256}.png"
    back = Image.from_json(d, base=tmp_path)
    assert back == im
    assert back.data_url().startswith("data:image/png;base64,")
    assert back.open().size == (5, 5)
