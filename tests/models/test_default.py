"""The shipped default agent: its folder, its chat template, and (slow) solving fixed-seed zoom tasks end to
end through the normal HF backend and the sandboxed code tool, and interleaved tasks through the code tool,
the offline image search and web visit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1v4_nb.models.default import CHAT_TEMPLATE, DEFAULT_MODEL_DIR, PROMPTS, agent_info, default_model_path

INTERLEAVED_N, INTERLEAVED_MIN = 6, 3  # at least half, the bar
SHIPPED = (DEFAULT_MODEL_DIR / "config.json").is_file()
needs_model = pytest.mark.skipif(not SHIPPED, reason="the default model folder is not built")


@needs_model
def test_the_shipped_folder_is_small_and_carries_its_prompts_and_card() -> None:
    folder = default_model_path()
    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    assert 0 < weights < 16 * 2**20
    info = agent_info(folder)
    assert info["prompts"] == PROMPTS
    card = (folder / "README.md").read_text()
    assert "learning_curve.png" in card and (folder / "learning_curve.png").is_file()
    record = json.loads((folder / "build.json").read_text())
    assert record["eval"]["zoom"]["general"]["n"] >= 200


def test_the_template_renders_inline_and_tool_message_mappings_alike(tmp_path: Path) -> None:
    """A run split into assistant + tool messages reads exactly like the same run inline in one message."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(CHAT_TEMPLATE)
    img = {"type": "image", "image": "x.png"}
    head = [{"role": "system", "content": [{"type": "text", "text": "S"}]},
            {"role": "user", "content": [img, {"type": "text", "text": "Q"}]}]
    split = head + [{"role": "assistant", "content": "<think> a </think><code>c</code>"},
                    {"role": "tool", "name": "code", "content": [{"type": "text", "text": "{\"result\": 1}"}, img]},
                    {"role": "assistant", "content": "<think> b </think><answer>K7</answer>"}]
    inline = head + [{"role": "assistant", "content": [
        {"type": "text", "text": "<think> a </think><code>c</code><observation>{\"result\": 1}"}, img,
        {"type": "text", "text": "</observation><think> b </think><answer>K7</answer>"}]}]
    a = template.render(messages=split, add_generation_prompt=False)
    assert a == template.render(messages=inline, add_generation_prompt=False)
    assert a.endswith("<answer>K7</answer><|im_end|>\n")
    # after a tool result the model writes on in the same stream: no new header, closed == opened
    partial = split[:4]
    assert template.render(messages=partial, add_generation_prompt=True) == \
        template.render(messages=partial, add_generation_prompt=False)
    assert template.render(messages=head, add_generation_prompt=True).endswith("<|im_start|>assistant\n")


def test_default_is_a_model_name_everywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from r1v4_nb.models import default as default_module
    from r1v4_nb.models.base import ModelError
    from r1v4_nb.models.loader import load_model

    monkeypatch.setattr(default_module, "DEFAULT_MODEL_DIR", tmp_path / "missing")
    with pytest.raises(ModelError, match="build-demo-model"):
        load_model("default")
    with pytest.raises(ModelError, match="build-demo-model"):
        load_model(None)


def _solve_fixed_seed_zoom_tasks(tmp_path: Path, n: int = 10) -> list[tuple[object, object]]:
    """The shipped model through the normal loader and HF backend, with the sandboxed code tool."""
    from r1v4_nb.agent import Agent, Budgets
    from r1v4_nb.models.base import GenerationSettings
    from r1v4_nb.models.hf import HFModel
    from r1v4_nb.models.loader import load_model
    from r1v4_nb.tools.code import CodeTool
    from r1v4_nb.world.tasks import write_tasks

    model = load_model("default")
    assert isinstance(model, HFModel) and model.prompts == PROMPTS and model.name.startswith("default agent")
    tasks = write_tasks(tmp_path / "tasks.jsonl", "zoom", 4242, n)
    tool = CodeTool()
    out = []
    try:
        for task in tasks:
            agent = Agent(model, tools=[tool], mode="general", budgets=Budgets(max_steps=4, max_tokens_per_turn=256),
                          settings=GenerationSettings(temperature=0.0), runs_dir=tmp_path / "runs")
            out.append((task, agent.ask(task.question, [tmp_path / task.images[0]])))
    finally:
        tool.close()
    return out


@needs_model
@pytest.mark.slow
def test_the_default_model_crops_through_the_sandbox_and_answers_in_format(tmp_path: Path) -> None:
    import re

    for _task, r in _solve_fixed_seed_zoom_tasks(tmp_path, 6):
        assert r.trajectory.header.system_prompt == PROMPTS["general"]
        code = [s for s in r.trajectory.tool_steps if s.call.name == "code"]
        assert code and not code[0].observation.error and code[0].observation.images  # it really cropped
        (crop,) = code[0].observation.images
        assert (crop.width, crop.height) == (64, 32)  # the plaque's text, found by its colour, at full resolution
        assert r.answer is not None and re.fullmatch(r"[A-Z][0-9]", r.answer)


@needs_model
@pytest.mark.slow
def test_the_default_model_solves_fixed_seed_zoom_tasks_through_the_sandbox(tmp_path: Path) -> None:
    correct = sum(r.answer == task.answer for task, r in _solve_fixed_seed_zoom_tasks(tmp_path))
    assert correct >= 8, f"{correct}/10 fixed-seed zoom tasks solved"  # the shipped build solves 10 (92.5% held out)


@needs_model
@pytest.mark.slow
def test_the_default_model_crops_the_inset_searches_it_visits_the_page_and_answers(tmp_path: Path) -> None:
    from r1v4_nb.agent import Agent, Budgets
    from r1v4_nb.models.base import GenerationSettings
    from r1v4_nb.models.loader import load_model
    from r1v4_nb.tools.registry import build_tool
    from r1v4_nb.world.tasks import write_tasks

    model = load_model("default")
    tasks = write_tasks(tmp_path / "tasks.jsonl", "interleaved", 4243, INTERLEAVED_N)
    tools = [build_tool(name) for name in ("code", "image_search", "web_visit")]
    correct = 0
    try:
        for task in tasks:
            agent = Agent(model, tools=tools, mode="deepresearch",
                          budgets=Budgets(max_steps=6, max_tool_calls=4, max_tokens_per_turn=256),
                          settings=GenerationSettings(temperature=0.0), runs_dir=tmp_path / "runs")
            r = agent.ask(task.question, [tmp_path / task.images[0]])
            assert r.trajectory.header.system_prompt == PROMPTS["deepresearch"]
            calls = [s.call.name for s in r.trajectory.tool_steps]
            assert calls[:1] == ["code"] and all(not s.observation.error for s in r.trajectory.tool_steps[:1])
            if calls == ["code", "image_search", "web_visit"]:
                visit = r.trajectory.tool_steps[2].call.arguments["urls"]
                correct += visit == [task.meta["url"]] and r.answer == task.answer  # the inset's page, not the scene's
    finally:
        for tool in tools:
            tool.close()
    assert correct >= INTERLEAVED_MIN, f"{correct}/{INTERLEAVED_N} fixed-seed interleaved tasks solved"


@needs_model
@pytest.mark.slow
def test_demo_runs_the_default_agent_live_on_the_default_task_and_another_seed(tmp_path: Path) -> None:
    import subprocess
    import sys

    for extra in ([], ["--seed", "7"], ["--mode", "deepresearch"]):
        out = tmp_path / f"demo{len(extra)}.jsonl"
        r = subprocess.run([sys.executable, "-m", "r1v4_nb.cli", "demo", *extra, "--out", str(out)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "default agent (tiny Qwen3-VL-MoE" in r.stdout and "decides live" in r.stdout
        assert "nothing is replayed" in r.stdout
        assert "recording" not in r.stdout and "hand-written" not in r.stdout
        assert "step 1 · tool code" in r.stdout and "answer: '" in r.stdout
        from r1v4_nb.trajectory import read

        traj = read(out)
        assert traj.header.model["backend"] == "hf" and traj.tool_steps[0].observation.images
        if "deepresearch" in extra:  # the interleaved task: crop, reverse-search the crop, visit, answer
            assert [s.call.name for s in traj.tool_steps] == ["code", "image_search", "web_visit"]
            assert "(correct)" in r.stdout
