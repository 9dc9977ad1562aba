"""The plan dialect: a JSON array of steps becomes one `plan` segment; anything else a `plan_error`."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r1v4_nb.dialects import get_dialect
from r1v4_nb.errors import UsageError
from r1v4_nb.records import ModelStep, Observation, ToolCall, ToolStep
from tests.support.dialect import cuts, run, soup, split

D = get_dialect("plan")

STEPS = [
    {"description": "Identify the statue in the photo", "tool_name": "image_search",
     "parameters": {"image_path": "image_1"}},
    {"description": "Find who sculpted it", "tool_name": "text_search",
     "parameters": {"query": "[Statue from Step 1] sculptor 雕塑家"}},
    {"description": "Read the museum page", "tool_name": "web_visit", "parameters": {"url": "[URL from Step 2]"}},
    {"description": "Check the sculptor against the question", "tool_name": "none", "parameters": {}},
]
PLAN = json.dumps(STEPS, ensure_ascii=False)


def plan_of(text: str):
    segs = D.parse(text)
    assert segs[-1].kind in ("plan", "plan_error")
    assert sum(s.kind in ("plan", "plan_error") for s in segs) == 1
    return segs[-1]


@settings(max_examples=80, deadline=None)
@given(text=st.one_of(soup, st.just(PLAN), st.text()), cut=cuts, as_bytes=st.booleans())
def test_chunking_invariant_and_never_raises(text, cut, as_bytes):
    whole = run(D.parser(), [text])
    assert run(D.parser(), split(text, cut, as_bytes)) == whole
    assert whole[0][-1].kind in ("plan", "plan_error")


def test_valid_plan_is_normalised():
    seg = plan_of(json.dumps(STEPS, indent=2))
    assert seg.text == PLAN and seg.call is None


def test_fences_prose_think_and_answer_tags_are_tolerated():
    text = f"<think>Plan it.</think>Here is the plan:\n```json\n{json.dumps(STEPS)}\n```\nDone."
    assert plan_of(text).text == PLAN
    assert plan_of(f"<answer>{PLAN}</answer>").text == PLAN


def test_extra_keys_dropped_and_missing_parameters_of_none_step():
    steps = [dict(STEPS[0], why="x"), {"description": "verify", "tool_name": "none"}]
    assert json.loads(plan_of(json.dumps(steps)).text) == [STEPS[0], {"description": "verify",
                                                                      "tool_name": "none", "parameters": {}}]


@pytest.mark.parametrize("steps, message", [
    ([], "no JSON array of steps"),
    ([STEPS[0], dict(STEPS[1], tool_name="code")], "tool_name 'code'"),
    ([STEPS[0], dict(STEPS[1], parameters={})], '"query"'),
    ([STEPS[0], dict(STEPS[1], description="")], 'no "description"'),
    ([STEPS[0], "step"], "step 2 is not a JSON object"),
    ([STEPS[0], dict(STEPS[1], parameters={"query": "[Statue from Step 2] sculptor"}), STEPS[3]],
     "not an earlier step"),
    (STEPS[:3], 'end with a "none" step'),
])
def test_invalid_plans_say_what_is_wrong(steps, message):
    seg = plan_of(json.dumps(steps))
    assert seg.kind == "plan_error" and message in seg.text
    assert seg.call.name == "plan" and seg.call.error == seg.text


def test_not_json_and_no_array():
    assert "not valid JSON" in plan_of('[{"description": "a",}]').text
    assert "no JSON array" in plan_of("I would search the web.").text
    assert "no JSON array" in plan_of("").text


def test_no_stop_strings_and_prompt_only_for_plan_mode():
    assert D.stop == []
    assert "2 to 10 steps" in D.system_prompt("plan", [])
    with pytest.raises(UsageError, match="mode 'plan'"):
        D.system_prompt("general", [])


def test_feedback_on_an_invalid_plan_is_a_user_message():
    bad = plan_of("no plan")
    steps = [ModelStep(0, "no plan", segments=D.parse("no plan")),
             ToolStep(1, bad.call, Observation(text=bad.call.error, error=bad.call.error)),
             ModelStep(2, PLAN)]
    msgs = D.build_messages("SYS", "Who made it?", [], steps)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant"]
    assert msgs[3]["content"] == [{"type": "text", "text": f"Error: {bad.call.error}"}]
    assert D.render_observation(ToolCall("plan", {}), Observation(text="ok")) == [{"type": "text", "text": "ok"}]


@pytest.mark.parametrize("steps, count", [(STEPS[-1:], 1), (STEPS * 3, 12)])
def test_a_step_count_outside_2_to_10_is_a_plan_with_a_warning(steps, count):
    """R1V4's planner prompt says "prefer" 2-10 steps: guidance, not a limit."""
    seg = plan_of(json.dumps(steps))
    assert seg.kind == "plan" and len(json.loads(seg.text)) == count
    assert seg.note == f"the plan has {count} step(s); the prompt prefers 2 to 10"
    assert plan_of(json.dumps(STEPS)).note == ""


def test_a_plan_written_as_a_numbered_list_is_read_with_a_note():
    reply = ("<think>Who is this?</think>\n1. Run image_search on image_1 to find the person.\n"
             "2. Use text_search for [Person from Step 1] and their birthplace.\n3. Check the answer.")
    seg = plan_of(reply)
    steps = json.loads(seg.text)
    assert seg.kind == "plan" and [s["tool_name"] for s in steps] == ["image_search", "text_search", "none"]
    assert steps[1]["description"].startswith("Use text_search for [Person from Step 1]")
    assert seg.note.startswith("a plan written as a numbered list")
    assert plan_of("1. only one item").kind == "plan_error"
