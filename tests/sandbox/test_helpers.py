"""Crops in the sandbox helpers: a box past the edge is clamped and the observation says so; a box with
nothing of the image in it is an error, never a blank picture. Runs the real code tool (a worker process)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image as PILImage

from r1v4_nb.images import Image, Provenance
from r1v4_nb.sandbox import helpers
from r1v4_nb.tools.base import ToolContext
from r1v4_nb.tools.code import CodeTool


def test_clamp_box_clamps_and_notes():
    helpers.outputs.notes = []
    assert helpers.clamp_box(100, 50, (80, 40, 130, 90)) == (80, 40, 100, 50)
    assert "clamped to (80, 40, 100, 50)" in helpers.outputs.notes[0]
    helpers.outputs.notes = []
    assert helpers.clamp_box(100, 50, (10, 10, 20, 20)) == (10, 10, 20, 20) and helpers.outputs.notes == []
    with pytest.raises(ValueError, match="no pixels inside the 100x50 image"):
        helpers.clamp_box(100, 50, (120, 10, 140, 20))


@pytest.fixture()
def tool_ctx(tmp_path: Path):
    path = tmp_path / "in.png"
    PILImage.new("RGB", (200, 100), (200, 30, 30)).save(path)
    ctx = ToolContext("crop", tmp_path / "work", step=1)
    ctx.workdir.mkdir()
    ctx.register_image(Image.from_file(path, Provenance("input", name="in.png")), "image_1", "in.png")
    tool = CodeTool(timeout_s=20)
    tool.start(ctx)
    yield tool, ctx
    tool.finish(ctx)


def test_crops_past_the_edge_in_the_worker(tool_ctx):
    tool, ctx = tool_ctx
    obs = tool.run({"code": "from helpers import crop\nc = crop(image_1, (150, 50, 260, 140))\n"
                            "c.save('a.png')\nprint('a.png', c.size)"}, ctx)
    assert "(50, 50)" in obs.text and "clamped to (150, 50, 200, 100)" in obs.text
    assert obs.images[0].width == 50 and obs.images[0].provenance.box == [150, 50, 200, 100]
    obs = tool.run({"code": "c = image_1.crop((150, 50, 260, 140))\nc.save('b.png')\nprint('b.png', c.size)"}, ctx)
    assert "(50, 50)" in obs.text and "Image.crop: the box" in obs.text  # PIL's own crop no longer pads black
    obs = tool.run({"code": "c = image_1.crop((300, 10, 400, 20))\nc.save('c.png')\nprint('c.png')"}, ctx)
    assert obs.error and "no pixels inside the 200x100 image" in obs.text and not obs.images
