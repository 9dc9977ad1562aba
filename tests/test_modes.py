"""modes.py: the one table of modes, and everything that reads it agreeing with it."""

from __future__ import annotations

import json

import pytest

from r1v4_nb import prompts
from r1v4_nb.agent import Agent
from r1v4_nb.dialects import get_dialect
from r1v4_nb.errors import UsageError
from r1v4_nb.models.replay import ScriptedModel
from r1v4_nb.modes import MODES, get_mode, mode_names
from r1v4_nb.tools.registry import TOOLS, default_tools


@pytest.fixture
def tiny_png(tmp_path):
    from PIL import Image as PILImage

    path = tmp_path / "in.png"
    PILImage.new("RGB", (32, 24), (200, 30, 30)).save(path)
    return path


def test_the_table_names_known_tools_dialects_and_answers():
    for mode in MODES.values():
        assert set(mode.tools) <= set(TOOLS), mode
        assert get_dialect(mode.dialect).answer_kind == mode.answer, mode
        assert [t.name for t in default_tools(mode.name)] == list(mode.tools)
        prompt = get_dialect(mode.dialect).system_prompt(mode.name, [t.spec() for t in default_tools(mode.name)])
        assert prompt.strip(), mode


def test_an_unknown_mode_is_one_line_naming_the_modes():
    with pytest.raises(UsageError) as info:
        get_mode("chat")
    assert "\n" not in str(info.value) and all(name in str(info.value) for name in mode_names())
    with pytest.raises(UsageError, match="unknown mode 'chat'"):
        Agent(ScriptedModel([]), tools=[], mode="chat")


def test_the_agent_takes_tools_and_dialect_from_the_mode(tmp_path):
    plan = Agent(ScriptedModel([]), mode="plan", runs_dir=tmp_path)
    assert plan.dialect.name == "plan" and plan.tools == {}
    research = Agent(ScriptedModel([]), mode="deepresearch", runs_dir=tmp_path)
    assert list(research.tools) == list(MODES["deepresearch"].tools) and research.dialect.name == "r1v4"
    assert Agent(ScriptedModel([]), mode="general", dialect="qwen", runs_dir=tmp_path).dialect.name == "qwen"


def test_direct_mode_answers_in_one_reply_without_tools(tmp_path, tiny_png):
    model = ScriptedModel(["<think>The plaque reads 1907.</think><answer>1907</answer>"])
    agent = Agent(model, mode="direct", runs_dir=tmp_path)
    result = agent.ask("What year is on the plaque?", [tiny_png])
    assert (result.answer, result.reason) == ("1907", "answered")
    assert agent.tools == {} and len(result.trajectory.steps) == 1
    system = result.trajectory.header.system_prompt
    assert system.startswith(prompts.DIRECT_ROLE) and prompts.NO_TOOLS in system and "<tool_call>" not in system


def test_plan_mode_ends_on_its_plan_segment(tmp_path, tiny_png):
    plan = [{"description": "look", "tool_name": "none", "parameters": {}},
            {"description": "check", "tool_name": "none", "parameters": {}}]
    result = Agent(ScriptedModel([json.dumps(plan)]), mode="plan", runs_dir=tmp_path).ask("Where?", [tiny_png])
    assert result.reason == "answered" and json.loads(result.answer) == plan
