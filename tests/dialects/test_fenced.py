"""The fenced dialect (Thyme / PyVision): fenced Python in <code>, inline <sandbox_output>."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from r1v4_nb.dialects import get_dialect
from r1v4_nb.images import Image
from r1v4_nb.records import ModelStep, Observation, ToolCall, ToolStep
from tests.support.dialect import cuts, run, soup, split

D = get_dialect("fenced")

TRANSCRIPT = """<think>The digits are tiny; zoom in.</think>
<code>
```python
w, h = image_1.size
zoom = image_1.crop((0, 0, w // 2, h // 2)).resize((w, h))
zoom.save("zoom.png")
print("zoom.png")
```
</code>
<sandbox_output>zoom.png</sandbox_output>
<think>It reads 「42」 ✅.</think>
<answer>42</answer>"""


@settings(max_examples=80, deadline=None)
@given(text=st.one_of(soup, st.just(TRANSCRIPT), st.text()), cut=cuts, as_bytes=st.booleans())
def test_chunking_invariant_and_never_raises(text, cut, as_bytes):
    assert run(D.parser(), split(text, cut, as_bytes)) == run(D.parser(), [text])


def test_transcript():
    segs = D.parse(TRANSCRIPT)
    assert [s.kind for s in segs] == ["think", "code", "observation", "think", "answer"]
    assert segs[1].call.name == "code"
    assert segs[1].call.arguments["code"].splitlines()[0] == "w, h = image_1.size"
    assert segs[1].call.arguments["code"].endswith('print("zoom.png")')
    assert segs[3].text == "It reads 「42」 ✅."


def test_stop_strings_close_code_and_answer():
    assert set(D.stop) >= {"</code>", "</answer>"}
    for text, closer in [("<code>\n```python\nprint(1)\n```\n", "</code>"), ("<answer>42", "</answer>")]:
        p = D.parser()
        p.feed(text)
        assert p.close_for_stop() == closer
        p.feed(closer)
        assert p.open_kind is None and p.segments[-1].closed


def test_interpreter_blocks_are_observations():
    assert [s.kind for s in D.parse("<interpreter>3</interpreter>")] == ["observation"]


def test_system_prompt_shows_a_fenced_block():
    prompt = D.system_prompt("general", [{"name": "code", "description": "Python.", "parameters": {}}])
    assert "<code>\n```python\n" in prompt and "<tool_response>" in prompt
    assert "<tool_call>" not in prompt
    assert "<tool_call>" in D.system_prompt("deepresearch", [{"name": "code"}, {"name": "text_search"}])


def test_a_code_result_is_a_tool_message(tmp_path):
    crop = Image.from_pil(PILImage.new("RGB", (4, 4), "black"), tmp_path)
    text = "<think>t</think><code>\n```python\nprint(1)\n```\n"
    steps = [ModelStep(0, text, segments=D.parse(text + "</code>")),
             ToolStep(1, ToolCall("code", {"code": "print(1)"}), Observation(text="1\n", images=[crop]))]
    msgs = D.build_messages("S", "Q", [], steps)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool"]
    assert msgs[2]["content"] == text + "</code>"
    assert msgs[-1]["content"] == [{"type": "text", "text": "1\n"}, {"type": "image", "image": str(crop.path)}]
