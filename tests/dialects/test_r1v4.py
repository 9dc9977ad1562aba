"""The R1V4 dialect: parsing real-looking transcripts, stop strings, prompts and the rebuilt context."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from r1v4_nb.dialects import get_dialect
from r1v4_nb.errors import UsageError
from r1v4_nb.images import Image, Provenance
from r1v4_nb.records import ModelStep, NoteStep, Observation, ToolCall, ToolStep
from tests.support.dialect import TRANSCRIPT, cuts, run, soup, split

D = get_dialect("r1v4")
SPECS = [
    {"name": "code", "description": "Run Python on the images.",
     "parameters": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}},
    {"name": "text_search", "description": "Search the web by text.",
     "parameters": {"type": "object", "properties": {"queries": {"type": "array"}}, "required": ["queries"]}},
]


@pytest.fixture
def pictures(tmp_path):
    def make(color, name):
        return Image.from_pil(PILImage.new("RGB", (8, 6), color), tmp_path, Provenance("code", name=name))
    return make("red", "image_1"), make("blue", "crop.png")


def test_transcript_with_four_tools():
    segs = D.parse(TRANSCRIPT)
    assert [s.kind for s in segs] == ["think", "tool_call", "observation"] * 4 + ["think", "answer"]
    calls = [s.call for s in segs if s.call]
    assert [c.name for c in calls] == ["code", "image_search", "text_search", "web_visit"]
    assert all(c.error is None for c in calls)
    assert "crop.save('plaque.png')" in calls[0].arguments["code"]
    assert calls[2].arguments["queries"][1] == "洛尔萨克 新桥 建筑师"
    assert json.loads(segs[8].text)["result"].endswith("🙂 ...")
    assert segs[-1].text == "Émile Garnier"


@settings(max_examples=60, deadline=None)
@given(cut=cuts, as_bytes=st.booleans())
def test_transcript_parse_is_chunking_invariant(cut, as_bytes):
    assert run(D.parser(), split(TRANSCRIPT, cut, as_bytes)) == run(D.parser(), [TRANSCRIPT])


@settings(max_examples=100, deadline=None)
@given(text=st.one_of(soup, st.text()), cut=cuts, as_bytes=st.booleans())
def test_tag_soup_never_raises_and_is_chunking_invariant(text, cut, as_bytes):
    assert run(D.parser(), split(text, cut, as_bytes)) == run(D.parser(), [text])


def test_code_tag_is_a_code_call_and_nested_json_survives():
    text = ('<think>zoom</think><code>\n```python\nprint(image_1.size)\n```\n</code>'
            '<tool_call>{"name": "text_search", "arguments": {"queries": ["a"], "opts": {"deep": {"k": [1, {"x": "}"}]}}}}'
            '</tool_call>')
    code, call = [s.call for s in D.parse(text) if s.call]
    assert code.name == "code" and code.arguments == {"code": "print(image_1.size)"}
    assert call.arguments["opts"] == {"deep": {"k": [1, {"x": "}"}]}}


def test_malformed_calls_become_errors_for_the_model():
    text = ('<tool_call>{"name": "text_search", "arguments": {"queries": ["a"]</tool_call>'
            '<tool_call>{"name": "web_visit", "arguments": "{\\"urls\\": [\\"https://a.example\\"]}"}</tool_call>'
            '<tool_call>{"arguments": {}}</tool_call><code>  </code>')
    bad_json, as_string, no_name, empty_code = [s.call for s in D.parse(text)]
    assert "not valid JSON" in bad_json.error
    assert as_string.error is None and as_string.arguments == {"urls": ["https://a.example"]}
    assert 'no "name"' in no_name.error and no_name.name == ""
    assert "empty" in empty_code.error


def test_unclosed_tags_at_the_end():
    segs = D.parse('<think>hmm</think><tool_call>{"name": "code", "arguments": {"code": "x')
    assert segs[-1].kind == "tool_call" and not segs[-1].closed
    assert "not valid JSON" in segs[-1].call.error


def test_stop_strings():
    assert {"</tool_call>", "</code>", "<observation>"} <= set(D.stop)


def cut_and_close(text: str) -> tuple[object, str]:
    """What the agent does: feed the text up to the first stop string, then the closing text."""
    cut_at = min((i for i in (text.find(s) for s in D.stop) if i != -1), default=len(text))
    p = D.parser()
    p.feed(text[:cut_at])
    close = p.close_for_stop()
    p.feed(close)
    return p, close


def test_stop_after_a_tool_call_closes_it():
    p, close = cut_and_close('<think>a</think><tool_call>{"name": "text_search", "arguments": {"queries": ["q"]}}'
                             "</tool_call><observation>made up")
    assert close == "</tool_call>" and p.open_kind is None
    assert p.segments[-1].call.arguments == {"queries": ["q"]}


def test_stop_inside_a_json_string_leaves_the_call_open():
    p, close = cut_and_close('<tool_call>{"name": "code", "arguments": {"code": "print(\'</tool_call>\')"}}')
    assert close == "</tool_call>" and p.open_kind == "tool_call"
    p.feed("')\"}}")  # the model continues the same turn
    p.feed(p.close_for_stop())
    assert p.open_kind is None and p.segments[-1].call.arguments == {"code": "print('</tool_call>')"}


def test_stop_in_free_text_and_in_code():
    p, close = cut_and_close("I will now <observation>fake</observation>")
    assert close == "" and p.open_kind is None
    p, close = cut_and_close("<code>print(1)</code>")
    assert close == "</code>" and p.open_kind is None and p.segments[-1].call.arguments == {"code": "print(1)"}


def test_system_prompts_for_the_three_modes():
    general = D.system_prompt("general", SPECS[:1])
    research = D.system_prompt("deepresearch", SPECS)
    plan = D.system_prompt("plan", [])
    assert '"name": "code"' in general and "text_search" not in general
    assert "image_1" in general and "image_paths" in general and "print the file's path" in general
    assert '{"name": "text_search", "arguments": {"queries": ["first query", "second query"]}}' in research
    assert "<tool_call>" in research and "<answer>" in research and "<code>" in research
    assert "JSON array" in plan and "image_search" in plan
    with pytest.raises(UsageError, match="unknown mode 'chat'"):
        D.system_prompt("chat", SPECS)


def test_render_observation_is_byte_exact(pictures):
    _, crop = pictures
    call = ToolCall("code", {"code": "..."})
    parts = D.render_observation(call, Observation(text="saved 中文", images=[crop]))
    assert parts == [{"type": "text", "text": '{"result": "saved 中文", "type": "code"}'},
                     {"type": "image", "image": str(crop.path)}]
    failed = D.render_observation(call, Observation(text="partial", error="Timeout after 30 s"))
    assert failed == [{"type": "text", "text": '{"result": "partial\\nError: Timeout after 30 s", "type": "code"}'}]


def test_each_turn_is_its_own_assistant_message_and_each_result_a_tool_message(pictures):
    image, crop = pictures
    call = ToolCall("code", {"code": "crop"}, id="call_0_0")
    steps = [
        ModelStep(0, '<think>crop</think><tool_call>{"name": "code", "arguments": {"code": "crop"}}</tool_call>'),
        ToolStep(1, call, Observation(text="crop.png", images=[crop])),
        ModelStep(2, "<think>done</think><answer>red</answer>"),
    ]
    msgs = D.build_messages("SYS", "What colour?", [image], steps)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "assistant"]
    assert msgs[0]["content"] == [{"type": "text", "text": "SYS"}]
    assert msgs[1]["content"] == [{"type": "image", "image": str(image.path)},
                                  {"type": "text", "text": "What colour?"}]
    assert msgs[2] == {"role": "assistant", "content": steps[0].text}
    assert msgs[3] == {"role": "tool", "tool_call_id": "call_0_0", "name": "code", "content": [
        {"type": "text", "text": '{"result": "crop.png", "type": "code"}'}, {"type": "image", "image": str(crop.path)}]}
    assert msgs[4] == {"role": "assistant", "content": "<think>done</think><answer>red</answer>"}


def test_build_messages_ends_with_a_tool_message_after_a_tool_step_and_closes_cut_calls(pictures):
    text = '<think>x</think><tool_call>{"name": "text_search", "arguments": {"queries": ["q"]}}'
    step = ModelStep(0, text, segments=D.parse(text + "</tool_call>"))
    msgs = D.build_messages("", "Q", [], [step, ToolStep(1, step.calls[0], Observation(text="r"))])
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool"]
    assert msgs[1]["content"] == text + "</tool_call>"
    assert msgs[2]["content"] == [{"type": "text", "text": '{"result": "r", "type": "text_search"}'}]


def test_a_continued_turn_extends_its_assistant_message():
    msgs = D.build_messages("", "Q", [], [ModelStep(0, "<think>a long", finish_reason="length"),
                                          ModelStep(1, " thought</think><answer>4</answer>")])
    assert msgs[-1] == {"role": "assistant", "content": "<think>a long thought</think><answer>4</answer>"}


def test_note_step_is_a_system_message_so_templates_keep_earlier_reasoning():
    steps = [ModelStep(0, "no tags here"), NoteStep(1, "Use <answer> tags.", "nudge"),
             NoteStep(2, "Second note."), ModelStep(3, "<answer>4</answer>")]
    msgs = D.build_messages("S", "Q", [], steps)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "system", "system", "assistant"]
    assert msgs[3]["content"] == [{"type": "text", "text": "Use <answer> tags."}]
    assert msgs[5]["content"] == "<answer>4</answer>"


def test_an_error_is_shown_once():
    call = ToolCall("web_visit", {"urls": ["x"]})
    same = D.render_observation(call, Observation(text="refused: x", error="refused: x"))
    assert same[0]["text"] == '{"result": "Error: refused: x", "type": "web_visit"}'
    inside = D.render_observation(call, Observation(text="Traceback...\nValueError: bad", error="ValueError: bad"))
    assert inside[0]["text"] == '{"result": "Traceback...\\nValueError: bad", "type": "web_visit"}'


@pytest.mark.parametrize("text, tool, arguments", [
    ("<text_search>Pont Neuf architect</text_search>", "text_search", {"queries": ["Pont Neuf architect"]}),
    ("<text_search>\n1. Pont Neuf architect\n2. Émile Garnier\n</text_search>", "text_search",
     {"queries": ["Pont Neuf architect", "Émile Garnier"]}),
    ('<text_search>["a", "b"]</text_search>', "text_search", {"queries": ["a", "b"]}),
    ("<image_search>image_1</image_search>", "image_search", {"image_paths": ["image_1"]}),
    ('<image_search>{"image_paths": ["crop.png"]}</image_search>', "image_search", {"image_paths": ["crop.png"]}),
    ("<web_content>https://example.org/a</web_content>", "web_visit", {"urls": ["https://example.org/a"]}),
])
def test_basic_search_tags_of_the_report_are_calls_with_a_note(text, tool, arguments):
    for chunk in (1, 3, len(text)):
        p = D.parser()
        for i in range(0, len(text), chunk):
            p.feed(text[i:i + chunk])
        p.finish()
        (seg,) = p.segments
        assert seg.kind == "tool_call" and seg.call.name == tool and seg.call.arguments == arguments
        assert seg.call.error is None and seg.note.startswith("R1V4 basic-search tag")
    assert {"</text_search>", "</image_search>"} <= set(D.stop)


def test_web_content_holding_page_text_is_an_observation():
    (seg,) = D.parse("<web_content>The bridge opened in 1889.</web_content>")
    assert seg.kind == "observation" and seg.call is None and "page text" in seg.note


def test_a_basic_search_call_cut_by_its_stop_string_is_closed_in_the_context():
    text = "<think>\nLook it up.\n</think>\n\n<text_search>Pont Neuf"
    step = ModelStep(0, text, D.parse(text + "</text_search>"))
    msgs = D.build_messages("", "Q", [], [step])
    assert msgs[-1]["content"] == text + "</text_search>"


def test_bare_python_in_a_tool_call_runs_as_the_code_tool():
    text = "<tool_call>\nfrom PIL import Image\nimg = image_1.crop((0, 0, 8, 8))\nimg.save('c.png')\nprint('c.png')\n</tool_call>"
    (seg,) = D.parse(text)
    assert seg.call.name == "code" and seg.call.error is None and seg.call.arguments["code"].startswith("from PIL")
    assert seg.note == "bare Python code in a <tool_call>, run as the code tool"
    (bad,) = D.parse("<tool_call>search for the bridge</tool_call>")
    assert bad.call.error and "not valid JSON" in bad.call.error and bad.note == ""
