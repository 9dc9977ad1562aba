"""The shipped default agent: its folder, its chat template, and (slow) solving fixed-seed zoom tasks end to
end through the normal HF backend and the sandboxed code tool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1v4_nb.models.default import CHAT_TEMPLATE, DEFAULT_MODEL_DIR, PROMPTS, agent_info, default_model_path

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


@needs_model
@pytest.mark.slow
def test_the_default_model_solves_fixed_seed_zoom_tasks_through_the_sandbox(tmp_path: Path) -> None:
    from r1v4_nb.agent import Agent, Budgets
    from r1v4_nb.models.base import GenerationSettings
    from r1v4_nb.models.hf import HFModel
    from r1v4_nb.models.loader import load_model
    from r1v4_nb.tools.code import CodeTool
    from r1v4_nb.world.tasks import write_tasks

    model = load_model("default")
    assert isinstance(model, HFModel) and model.prompts == PROMPTS
    tasks = write_tasks(tmp_path / "tasks.jsonl", "zoom", 4242, 10)
    tool = CodeTool()
    correct = 0
    try:
        for task in tasks:
            agent = Agent(model, tools=[tool], mode="general", budgets=Budgets(max_steps=4, max_tokens_per_turn=96),
                          settings=GenerationSettings(temperature=0.0), runs_dir=tmp_path / "runs")
            r = agent.ask(task.question, [tmp_path / task.images[0]])
            assert r.trajectory.header.system_prompt == PROMPTS["general"]
            code = [s for s in r.trajectory.tool_steps if s.call.name == "code"]
            assert code and not code[0].observation.error and code[0].observation.images  # it really cropped
            correct += r.answer == task.answer
    finally:
        tool.close()
    assert correct >= 6, f"{correct}/10 fixed-seed zoom tasks solved"
