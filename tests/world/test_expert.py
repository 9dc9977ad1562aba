"""The scripted expert solves generated tasks through the real tools (sandboxed code, offline image search
and web visit); its runs pass the curation filters and become SFT examples through the normal data path,
and a run whose crop misses the plaque is dropped by those filters."""

from __future__ import annotations

from pathlib import Path

from r1v4_nb.train.build import load_task_file, rollout
from r1v4_nb.train.filters import select
from r1v4_nb.trajectory import read
from r1v4_nb.world.expert import crop_code, expert_turns_zoom
from r1v4_nb.world.tasks import write_tasks


def test_crop_code_is_the_cell_as_fractions() -> None:
    assert crop_code("A1") == "c = show(helpers.zoom(helpers.crop(image_1, (0, 0, 0.25, 0.25)), 2))"
    assert crop_code("D3") == "c = show(helpers.zoom(helpers.crop(image_1, (0.75, 0.5, 1, 0.75)), 2))"
    first, second = expert_turns_zoom("red", "B2", "K7")
    assert first.startswith("<think>") and "<code>" in first and second.endswith("<answer>K7</answer>")


def test_zoom_rollouts_use_the_code_tool_and_pass_the_filters(tmp_path: Path) -> None:
    write_tasks(tmp_path / "tasks.jsonl", "zoom", 11, 3)
    tasks = load_task_file(tmp_path / "tasks.jsonl")
    paths = rollout(tasks, tmp_path / "runs", workers=2)
    trajs = [read(p) for p in paths]
    for task, t in zip(tasks, trajs, strict=True):
        assert t.answer == task["answer"]
        (tool,) = t.tool_steps
        assert tool.call.name == "code" and not tool.observation.error
        (crop,) = tool.observation.images
        assert (crop.width, crop.height) == (512, 512)  # a 256 px cell zoomed 2x
    assert len(select(trajs).kept) == 3


def test_a_crop_that_misses_the_plaque_ends_without_an_answer_and_is_dropped(tmp_path: Path) -> None:
    write_tasks(tmp_path / "tasks.jsonl", "zoom", 12, 1, level=1)
    (task,) = load_task_file(tmp_path / "tasks.jsonl")
    col, row = task["meta"]["cell"]
    task["meta"]["cell"] = ("B" if col == "A" else "A") + row  # the expert is told the wrong cell
    (path,) = rollout([task], tmp_path / "runs")
    t = read(path)
    assert t.answer is None
    assert select([t]).dropped["no_answer"] == [str(path)]


def test_direct_runs_answer_without_tools(tmp_path: Path) -> None:
    write_tasks(tmp_path / "tasks.jsonl", "zoom", 13, 2)
    tasks = load_task_file(tmp_path / "tasks.jsonl")
    trajs = [read(p) for p in rollout(tasks, tmp_path / "runs", mode="direct")]
    assert all(not t.tool_steps and t.answer == task["answer"] for t, task in zip(trajs, tasks, strict=True))


def test_interleaved_rollouts_crop_search_visit_and_read_the_page(tmp_path: Path, small_world, monkeypatch) -> None:
    from r1v4_nb.train import build

    tasks_path = tmp_path / "tasks.jsonl"
    write_tasks(tasks_path, "interleaved", 3, 2, world=small_world)
    tasks = load_task_file(tasks_path)

    def tools_for(kind: str, mode: str) -> list:
        from r1v4_nb.tools.registry import build_tool

        return [build_tool("code"), build_tool("image_search", index=str(small_world.image_index)),
                build_tool("web_visit", mirror=str(small_world.mirror))]

    monkeypatch.setattr(build, "_tools_for", tools_for)
    trajs = [read(p) for p in rollout(tasks, tmp_path / "runs", workers=1)]
    for task, t in zip(tasks, trajs, strict=True):
        assert [s.call.name for s in t.tool_steps] == ["code", "image_search", "web_visit"]
        assert task["meta"]["url"] in t.tool_steps[2].call.arguments["urls"]
        assert t.answer == task["answer"]
