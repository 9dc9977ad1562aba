"""prompts.py: the system prompt of each mode, built from its role, its tools and the dialect's format."""

from __future__ import annotations

import json

import pytest

from r1v4_nb import prompts
from r1v4_nb.errors import UsageError
from r1v4_nb.modes import MODES
from r1v4_nb.tools.registry import default_tools

FORMAT = "## How to respond\n(the dialect's format)"


def _specs(mode: str) -> list[dict]:
    return [t.spec() for t in default_tools(mode)]


def test_every_mode_has_a_prompt_and_every_tool_mode_a_role():
    for name in MODES:
        prompt = prompts.build_system_prompt(name, _specs(name), FORMAT)
        assert prompt.strip()
        if name != "plan":
            assert prompt.startswith(prompts.ROLES[name])


def test_the_tools_block_lists_one_json_spec_a_line():
    specs = _specs("deepresearch")
    block = prompts.tools_block(specs)
    inner = block.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0].splitlines()
    assert [json.loads(line)["name"] for line in inner] == [s["name"] for s in specs]
    assert all(set(json.loads(line)) == {"name", "description", "parameters"} for line in inner)
    assert prompts.tools_block([]) == prompts.NO_TOOLS


def test_image_notes_come_with_the_tools_that_need_them():
    general = prompts.build_system_prompt("general", _specs("general"), FORMAT)
    research = prompts.build_system_prompt("deepresearch", _specs("deepresearch"), FORMAT)
    assert prompts.IMAGES_NOTE in general and prompts.IMAGE_SEARCH_NOTE not in general
    assert prompts.IMAGES_NOTE in research and prompts.IMAGE_SEARCH_NOTE in research
    assert general.endswith(FORMAT) and research.endswith(FORMAT)


def test_without_tools_the_prompt_asks_for_an_answer_only():
    direct = prompts.build_system_prompt("direct", [], FORMAT)
    assert prompts.NO_TOOLS in direct and direct.endswith(prompts.ANSWER_ONLY_FORMAT) and FORMAT not in direct
    assert prompts.IMAGES_NOTE not in direct


def test_plan_mode_has_its_own_prompt_whatever_the_format():
    assert prompts.build_system_prompt("plan", _specs("deepresearch"), FORMAT) == prompts.PLAN_PROMPT


def test_the_format_example_prefers_a_search_tool():
    assert prompts.example_call(_specs("deepresearch"))[0] == "text_search"
    name, args = prompts.example_call(_specs("general"))
    assert name == "code" and json.loads(args) == {"code": "print(image_1.size)"}
    assert prompts.example_call([])[0] == "code"


def test_tool_objects_and_dicts_are_both_accepted():
    tools = default_tools("general")
    assert prompts.tool_specs(tools) == [t.spec() for t in tools]
    assert prompts.tool_specs([{"name": "x"}]) == [{"name": "x"}]


def test_an_unknown_mode_is_a_user_error():
    with pytest.raises(UsageError, match="unknown mode 'chat'"):
        prompts.build_system_prompt("chat", [], FORMAT)
