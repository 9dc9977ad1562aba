"""Generated task files: deterministic, in the shared task format, with the detail where the metadata says
(unreadable at the model's view, inside one grid cell); interleaved scenes fool a whole-image search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1v4_nb.cli import main
from r1v4_nb.world.tasks import CODE_DIGITS, CODE_LETTERS, GRID, SCENE, cell_box, make_zoom_task, write_tasks


def test_zoom_tasks_are_a_function_of_seed_and_index(tmp_path: Path) -> None:
    a, im_a = make_zoom_task(7, 3)
    b, im_b = make_zoom_task(7, 3)
    c, _ = make_zoom_task(8, 3)
    assert a.to_json() == b.to_json()
    assert im_a.tobytes() == im_b.tobytes()
    assert a.to_json() != c.to_json()


@pytest.mark.parametrize("level", [0, 1, 2])
def test_plaques_sit_inside_their_cell_with_distinct_colours(level: int) -> None:
    for i in range(12):
        task, im = make_zoom_task(1, i, level)
        assert im.size == (SCENE, SCENE)
        plaques = task.meta["plaques"]
        assert len({p["colour"] for p in plaques}) == len(plaques)
        assert len({p["cell"] for p in plaques}) == len(plaques)
        assert (len(plaques) == 1) == (level <= 1)
        for p in plaques:
            x0, y0, x1, y1 = (v * SCENE for v in cell_box(p["cell"]))
            bx0, by0, bx1, by1 = p["box"]
            assert x0 <= bx0 < bx1 <= x1 and y0 <= by0 < by1 <= y1
            assert p["code"][0] in CODE_LETTERS and p["code"][1] in CODE_DIGITS
        assert task.answer == plaques[0]["code"]
        assert task.question == f"What code is on the {plaques[0]['colour']} plaque?"
        assert task.meta["cell"] == plaques[0]["cell"]


def test_the_code_is_too_small_to_read_at_the_model_view_and_readable_after_the_crop() -> None:
    """Glyph height in view pixels: at most 3 at the full 128 px view (a smudge), four times that (6 and up)
    in the 128 px view of the cropped cell."""
    import numpy as np

    task, im = make_zoom_task(2, 0)
    x0, y0, x1, y1 = task.meta["box"]
    plaque = np.asarray(im.crop((x0, y0, x1, y1)).convert("L"), dtype=np.int32)
    ink_rows = np.where((np.abs(plaque - np.median(plaque)) > 60).sum(axis=1) > 0)[0]
    ink_rows = ink_rows[(ink_rows > 4) & (ink_rows < plaque.shape[0] - 4)]  # not the border
    glyph = ink_rows.max() - ink_rows.min() + 1
    full_view = glyph * 128 / SCENE
    crop_view = glyph * 128 / (SCENE / GRID)
    assert full_view <= 3.0 and crop_view >= 6.0 and crop_view == GRID * full_view


def test_write_tasks_follows_the_task_format_and_loads(tmp_path: Path) -> None:
    from r1v4_nb.eval.tasks import load_tasks

    path = tmp_path / "t" / "tasks.jsonl"
    write_tasks(path, "zoom", 5, 4)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["id"] for r in lines] == [f"zoom-s5-l2-{i:05d}" for i in range(4)]
    for r in lines:
        assert set(r) >= {"id", "question", "images", "answer", "category", "split", "meta"}
        assert (path.parent / r["images"][0]).is_file()
        assert r["category"] == "zoom" and r["answers"] == [r["answer"]]
    loaded = load_tasks(path)
    assert [t.id for t in loaded] == [r["id"] for r in lines]


def test_cli_world_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "z.jsonl"
    assert main(["world", "tasks", "--kind", "zoom", "--seed", "3", "--n", "2", "-o", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 2 and out.is_file()
    assert main(["world", "tasks", "--kind", "zoom", "--n", "2", "-o", str(tmp_path / "z.txt")]) == 2
    assert "JSON Lines" in capsys.readouterr().err
    assert main(["world", "tasks", "--kind", "zoom", "--n", "0", "-o", str(out)]) == 2
    assert main(["world", "tasks", "--kind", "zoom", "--level", "5", "--n", "1", "-o", str(out)]) == 2


def test_interleaved_scene_matches_the_wrong_page_until_the_inset_is_cropped(tmp_path: Path, small_world) -> None:
    """The real offline image search: the whole scene finds the decoy, the cropped cell finds the object."""
    from r1v4_nb.tools.backends.image_index import ImageIndex

    tasks = write_tasks(tmp_path / "i.jsonl", "interleaved", 4, 3, world=small_world)
    from PIL import Image

    index = ImageIndex(small_world.image_index)
    for task in tasks:
        scene = Image.open(tmp_path / task.images[0]).convert("RGB")
        x0, y0, x1, y1 = task.meta["box"]
        whole = index.search(scene, k=1)
        crop = index.search(scene.crop((x0, y0, x1, y1)), k=1)
        assert crop and crop[0]["url"] == task.meta["url"]
        assert not whole or whole[0]["url"] != task.meta["url"]
