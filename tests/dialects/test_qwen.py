"""The Qwen dialect: calls end the assistant turn, results come back as <tool_response> user messages."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from r1v4_nb.dialects import get_dialect
from r1v4_nb.images import Image
from r1v4_nb.records import ModelStep, NoteStep, Observation, ToolCall, ToolStep
from tests.support.dialect import cuts, run, soup, split

D = get_dialect("qwen")

TRANSCRIPT = """<think>
I should look the landmark up. 先搜索一下。
</think>
<tool_call>
{"name": "image_search", "arguments": {"image_paths": ["image_1"]}}
</tool_call><tool_response>
Top match: Tower of Lorsac 🗼
</tool_response><think>Now the height.</think>
<tool_call>
{"name": "text_search", "arguments": "{\\"queries\\": [\\"Tower of Lorsac height\\"]}"}
</tool_call><tool_response>
It is 82 m tall.
</tool_response><answer>82 m</answer>"""


@settings(max_examples=80, deadline=None)
@given(text=st.one_of(soup, st.just(TRANSCRIPT), st.text()), cut=cuts, as_bytes=st.booleans())
def test_chunking_invariant_and_never_raises(text, cut, as_bytes):
    assert run(D.parser(), split(text, cut, as_bytes)) == run(D.parser(), [text])


def test_transcript():
    segs = D.parse(TRANSCRIPT)
    assert [s.kind for s in segs] == ["think", "tool_call", "observation", "think", "tool_call", "observation",
                                      "answer"]
    assert segs[0].text == "I should look the landmark up. 先搜索一下。"
    assert segs[1].call.arguments == {"image_paths": ["image_1"]}
    assert segs[4].call.arguments == {"queries": ["Tower of Lorsac height"]}
    assert segs[2].text == "Top match: Tower of Lorsac 🗼"
    assert segs[-1].text == "82 m"


def test_stop_and_code_tag_is_plain_text():
    assert D.stop == ["</tool_call>"]
    p = D.parser()
    p.feed('<tool_call>{"name": "code", "arguments": {"code": "print(\\"')  # cut at </tool_call> in the string
    p.feed(p.close_for_stop())
    assert p.open_kind == "tool_call"
    p.feed('\\")"}}')
    p.feed(p.close_for_stop())
    assert p.open_kind is None and p.segments[-1].call.arguments == {"code": 'print("</tool_call>")'}
    assert [s.kind for s in D.parse("<code>x</code>")] == ["text"]


def test_system_prompt_describes_the_format():
    prompt = D.system_prompt("deepresearch", [{"name": "web_visit", "description": "Open pages.",
                                              "parameters": {"type": "object"}}])
    assert '{"name": "web_visit", "arguments": {"urls": ["https://example.org/page"]}}' in prompt
    assert "<tool_response>" in prompt and "<answer>" in prompt


def test_results_come_back_as_tool_messages_with_images_inside(tmp_path):
    image = Image.from_pil(PILImage.new("RGB", (4, 4), "green"), tmp_path)
    thumb = Image.from_pil(PILImage.new("RGB", (4, 4), "white"), tmp_path)
    call = ToolCall("image_search", {"image_paths": ["image_1"]}, id="call_0_0")
    text = '<think>x</think>\n<tool_call>\n{"name": "image_search", "arguments": {"image_paths": ["image_1"]}}\n'
    steps = [ModelStep(0, text, segments=D.parse(text + "</tool_call>")),
             ToolStep(1, call, Observation(text="1 match", images=[thumb])),
             ModelStep(2, "<answer>a tower</answer>"), NoteStep(3, "Answer in metres.")]
    msgs = D.build_messages("SYS", "What is it?", [image], steps)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "assistant", "system"]
    assert msgs[2]["content"] == text + "</tool_call>"
    assert msgs[3] == {"role": "tool", "tool_call_id": "call_0_0", "name": "image_search",
                       "content": [{"type": "text", "text": "1 match"}, {"type": "image", "image": str(thumb.path)}]}
    assert msgs[5]["content"] == [{"type": "text", "text": "Answer in metres."}]


def test_last_tool_step_leaves_a_tool_message_for_a_new_turn():
    call = ToolCall("text_search", {"queries": ["q"]}, error=None)
    msgs = D.build_messages("", "Q", [], [ModelStep(0, "<tool_call>{}</tool_call>"),
                                          ToolStep(1, call, Observation(error="no results"))])
    assert msgs[-1] == {"role": "tool", "tool_call_id": "", "name": "text_search",
                        "content": [{"type": "text", "text": "Error: no results"}]}


def test_arguments_given_as_a_json_string_holding_an_object_are_accepted():
    """vLLM's tool parser accepts `"arguments": "{...}"`; so does the qwen dialect. Anything else in that
    string is an error observation for the model."""
    good = '<tool_call>\n{"name": "text_search", "arguments": "{\\"queries\\": [\\"a\\"]}"}\n</tool_call>'
    (seg,) = D.parse(good)
    assert seg.call.arguments == {"queries": ["a"]} and seg.call.error is None
    for bad in ('"[\\"a\\"]"', '"a query"'):
        (seg,) = D.parse('<tool_call>{"name": "text_search", "arguments": ' + bad + '}</tool_call>')
        assert seg.call.error and "text_search" in seg.call.error
