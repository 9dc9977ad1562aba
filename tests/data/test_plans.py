"""Plan extraction on recorded trajectories, validated by the plan dialect's own validator."""

from __future__ import annotations

import json
from pathlib import Path

from r1v4_nb.data.plans import CHECK_STEP, extract_plan, plan_example, write_plan_example
from r1v4_nb.dialects import get_dialect
from r1v4_nb.dialects.plan import validate_plan
from r1v4_nb.models.replay import DEMO_TRAJECTORIES
from r1v4_nb.trajectory import read
from tests.support.data import load, make, prepared


def test_the_recorded_deepresearch_run_becomes_a_valid_plan(tmp_path: Path) -> None:
    traj = read(DEMO_TRAJECTORIES["deepresearch"])
    plan, why = extract_plan(traj)
    assert why == "ok" and validate_plan(plan) == []
    assert [s["tool_name"] for s in plan] == ["image_search", "web_visit", "text_search", "web_visit", "none"]
    assert plan[0]["parameters"] == {"image_path": "image_1"}  # the crop's search, planned on the input
    assert plan[1]["parameters"] == {"url": "[URL from Step 1]"}  # the page the image search listed
    assert plan[2]["parameters"]["query"] == "[Brako Selfen from Step 2] birthplace"  # a name read on that page
    assert plan[-1] == {"description": CHECK_STEP, "tool_name": "none", "parameters": {}}
    path, _ = write_plan_example(traj, tmp_path / "plan.jsonl")
    ex = read(path)
    assert ex.header.mode == "plan" and ex.header.dialect == "plan" and ex.header.meta["plan_of"] == traj.header.id
    assert len(ex.header.images) == 1 and ex.model_steps[0].segments[-1].kind == "plan"
    assert json.loads(ex.answer) == plan
    # the plan dialect reads the example's text back as the same plan: run time and training agree
    assert get_dialect("plan").parse(ex.model_steps[0].text)[-1].text == ex.answer


def test_trajectories_without_searches_have_no_plan(tmp_path: Path) -> None:
    for t in load(prepared(tmp_path)):
        if not any(s.call.name in ("text_search", "web_visit", "image_search") for s in t.tool_steps):
            assert extract_plan(t) == (None, "no successful search step to plan")
    loop = read(prepared(tmp_path)["repeats_loop"])
    plan, _ = extract_plan(loop)
    assert [s["tool_name"] for s in plan] == ["text_search", "text_search", "none"]


def test_validator_catches_what_a_hand_edit_breaks(tmp_path: Path) -> None:
    plan, _ = extract_plan(read(DEMO_TRAJECTORIES["deepresearch"]))
    assert "not an earlier step" in validate_plan([plan[1], *plan[2:]])[0]
    assert "end with a \"none\" step" in validate_plan(plan[:-1])[0]
    assert "tool_name 'code'" in validate_plan([dict(plan[0], tool_name="code"), plan[-1]])[0]
    assert validate_plan("x") == ["a plan is a JSON array of steps"]
    t = read(make(tmp_path, "one", ["<think>x</think><answer>K7</answer>"]))
    assert plan_example(t, plan).header.question == t.header.question
