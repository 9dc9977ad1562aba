"""The scripted expert solves generated tasks through the real tools (sandboxed code, offline image search
and web visit); its runs pass the curation filters and become SFT examples through the normal data path,
and a run whose crop misses the plaque is dropped by those filters."""

from __future__ import annotations

from pathlib import Path

from r1v4_nb.train.build import load_task_file, rollout
from r1v4_nb.train.filters import select
from r1v4_nb.trajectory import read
from r1v4_nb.world.expert import expert_turns_zoom, find_code, inset_code
from r1v4_nb.world.tasks import PLAQUE_COLOURS, generate, write_tasks


def test_inset_code_crops_exactly_the_pasted_cell_wherever_it_is(small_world) -> None:
    from r1v4_nb.sandbox import helpers

    tasks = generate("interleaved", 21, 80, world=small_world)
    assert len({t.meta["cell"] for t, _ in tasks}) == 16  # every cell, corners and edges included
    for task, im in tasks:
        shown = []
        exec(inset_code(), {"image_1": im, "helpers": helpers, "show": shown.append})  # noqa: S102
        (crop,) = shown
        x0, y0, x1, y1 = task.meta["box"]
        assert crop.size == (x1 - x0, y1 - y0)
        assert crop.tobytes() == im.crop((x0, y0, x1, y1)).tobytes(), task.meta["cell"]


def test_zoom_turns_find_the_plaque_by_the_colour_the_question_names() -> None:
    assert "(205, 40, 40)" in find_code("red") and "(45, 80, 210)" in find_code("blue")
    first, second = expert_turns_zoom("red", "K7")
    assert first.startswith("<think>") and f"<code>{find_code('red')}</code>" in first
    assert second.endswith("<answer>K7</answer>")


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
        assert (crop.width, crop.height) == (64, 32)  # a 64x32 box around the plaque, at full resolution
        x0, y0, x1, y1 = task["meta"]["box"]
        assert crop.provenance.box is not None
        bx0, by0, bx1, by1 = crop.provenance.box
        assert x0 < (bx0 + bx1) / 2 < x1 and y0 < (by0 + by1) / 2 < y1  # centred on the named plaque
    assert len(select(trajs).kept) == 3


def test_a_crop_that_misses_the_plaque_ends_without_an_answer_and_is_dropped(tmp_path: Path) -> None:
    write_tasks(tmp_path / "tasks.jsonl", "zoom", 12, 1, level=1)
    (task,) = load_task_file(tmp_path / "tasks.jsonl")
    # the expert is told a colour no plaque in the scene has: its mask is empty and the code fails
    task["meta"]["colour"] = next(c for c in PLAQUE_COLOURS if c not in {p["colour"] for p in task["meta"]["plaques"]})
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


def test_locate_rollouts_work_out_the_cell_in_code_and_answer_what_it_printed(tmp_path: Path) -> None:
    write_tasks(tmp_path / "tasks.jsonl", "locate", 14, 3)
    tasks = load_task_file(tmp_path / "tasks.jsonl")
    trajs = [read(p) for p in rollout(tasks, tmp_path / "runs", workers=1)]
    for task, t in zip(tasks, trajs, strict=True):
        (tool,) = t.tool_steps
        assert tool.call.name == "code" and tool.observation.text.strip() == f"'{task['answer']}'"
        assert t.answer == task["answer"]
    assert len(select(trajs).kept) == 3
