"""The shared incremental tag parser: chunking invariance, JSON string tracking, malformed calls."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from r1v4_nb.dialects.tags import Tag, TagParser, code_source, parse_tool_call
from tests.support.dialect import TRANSCRIPT, cuts, run, soup, split

TAGS = [Tag("think", "think"), Tag("tool_call", "tool_call", "json"), Tag("code", "code", "code"),
        Tag("answer", "answer"), Tag("observation", "observation")]


def parse(text: str):
    return run(TagParser(TAGS), [text])[0]


def parse_chunked(text: str, size: int):
    p = TagParser(TAGS)
    for i in range(0, len(text), size):
        p.feed(text[i:i + size])
    p.finish()
    return p.segments


@settings(max_examples=150, deadline=None)
@given(text=st.one_of(soup, st.just(TRANSCRIPT)), cut=cuts, as_bytes=st.booleans())
def test_result_does_not_depend_on_chunking(text, cut, as_bytes):
    whole = run(TagParser(TAGS), [text])
    chunked = run(TagParser(TAGS), split(text, cut, as_bytes))
    assert chunked == whole


@settings(max_examples=150, deadline=None)
@given(text=st.one_of(soup, st.text()), cut=cuts, as_bytes=st.booleans())
def test_never_raises_and_text_is_stripped_deltas(text, cut, as_bytes):
    segments, streamed = run(TagParser(TAGS), split(text, cut, as_bytes))
    assert [s.kind for s in segments] == [k for k, _ in streamed]
    for seg, (_, raw) in zip(segments, streamed, strict=True):
        assert seg.text == raw.strip()
        assert seg.kind != "text" or seg.text


def test_every_character_is_one_delta_when_fed_one_at_a_time():
    p = TagParser(TAGS)
    deltas = []
    for ch in "<think>ab</think>":
        deltas += [e.text for e in p.feed(ch) if e.type == "delta"]
    assert deltas == ["a", "b"]


def test_multibyte_character_split_across_byte_chunks_is_not_replaced():
    data = "<answer>东京 🙂</answer>".encode()
    p = TagParser(TAGS)
    for i in range(len(data)):
        p.feed(data[i:i + 1])
    p.finish()
    assert [s.text for s in p.segments] == ["东京 🙂"]
    assert "\ufffd" not in p.segments[0].text


def test_invalid_utf8_is_replaced_not_raised():
    p = TagParser(TAGS)
    p.feed(b"<answer>a\xff")
    p.feed("b</answer>")
    p.finish()
    assert p.segments[0].text == "a\ufffdb"


def test_closing_tag_inside_json_string_does_not_close_the_call():
    body = json.dumps({"name": "code", "arguments": {"code": "print('</tool_call>')  # \" quote"}})
    segs = parse(f"<tool_call>{body}</tool_call><answer>x</answer>")
    assert [s.kind for s in segs] == ["tool_call", "answer"]
    assert segs[0].call.arguments == {"code": "print('</tool_call>')  # \" quote"}
    assert segs[0].call.error is None


def test_escaped_backslash_before_quote_ends_the_string():
    body = '{"name": "code", "arguments": {"code": "print(\'\\\\\')"}}'
    segs = parse(f"<tool_call>{body}</tool_call>")
    assert segs[0].call.arguments == {"code": "print('\\')"}
    assert segs[0].closed


def test_quote_after_the_json_object_does_not_swallow_the_closing_tag():
    segs = parse('<tool_call>{"name": "a", "arguments": {}} "</tool_call> after')
    assert [s.kind for s in segs] == ["tool_call", "text"]
    assert "unexpected text" in segs[0].call.error


def test_unknown_tags_and_stray_closers_are_text():
    segs = parse("a <b>bold</b> </answer> <thinking> c")
    assert [(s.kind, s.text) for s in segs] == [("text", "a <b>bold</b> </answer> <thinking> c")]


def test_output_that_begins_inside_a_prompt_opened_think_is_thinking():
    """Qwen3-VL Thinking's generation prompt ends in '<think>\\n': the model writes no opening tag."""
    text = 'The sign is small.\n</think>\n\n<tool_call>{"name": "code", "arguments": {"code": "x"}}</tool_call>'
    for chunks in (1, 3, len(text)):
        segs = parse_chunked(text, chunks)
        assert [(s.kind, s.text) for s in segs][:1] == [("think", "The sign is small.")]
        assert segs[0].note.startswith("thinking opened by the prompt") and segs[1].call.name == "code"


def test_a_closing_think_written_as_an_opener_reads_as_thinking():
    for text in ("</think>crop first</think><answer>4</answer>", "</think>crop first<answer>4</answer>",
                 '<answer>4</answer></think>second'):
        for chunks in (1, 2, len(text)):
            segs = parse_chunked(text, chunks)
            think = next(s for s in segs if s.kind == "think")
            assert think.note == "</think> written as an opener" and think.text in ("crop first", "second")
            assert [s.text for s in segs if s.kind == "answer"] == ["4"]


def test_tags_do_not_nest():
    segs = parse("<think>I will write <answer>42</answer> later</think>")
    assert [(s.kind, s.text) for s in segs] == [("think", "I will write <answer>42</answer> later")]


def test_whitespace_between_tags_is_not_a_segment():
    segs = parse("  \n<think>a</think>\n\n<answer>b</answer>\n")
    assert [s.kind for s in segs] == ["think", "answer"]


def test_finish_closes_open_segment_as_unclosed():
    segs = parse("<think>never closed <tool_")
    assert segs[-1].kind == "think" and not segs[-1].closed
    assert segs[-1].text == "never closed <tool_"


def test_held_partial_tag_is_flushed_as_text_at_finish():
    p = TagParser(TAGS)
    assert [e.type for e in p.feed("hello <thi")] == ["open", "delta"]
    p.finish()
    assert p.segments[0].text == "hello <thi"


def test_open_kind_and_close_for_stop():
    p = TagParser(TAGS)
    assert p.open_kind is None and p.close_for_stop() == ""
    p.feed("<think>x</think>")
    assert p.open_kind is None
    p.feed('<tool_call>{"name": "code", "arguments": {"code": "s = \'')
    assert p.open_kind == "tool_call"
    assert p.close_for_stop() == "</tool_call>"
    p.feed(p.close_for_stop())  # the stop string was inside a JSON string
    assert p.open_kind == "tool_call"
    p.feed("'\"}}")
    p.feed(p.close_for_stop())
    assert p.open_kind is None
    assert p.segments[-1].call.arguments == {"code": "s = '</tool_call>'"}


def test_parse_tool_call_accepts_string_arguments_and_parameters_alias():
    assert parse_tool_call('{"name": "t", "arguments": "{\\"q\\": 1}"}').arguments == {"q": 1}
    assert parse_tool_call('{"name": "t", "parameters": {"q": 2}}').arguments == {"q": 2}
    assert parse_tool_call('```json\n{"name": "t", "arguments": {}}\n```').name == "t"
    assert parse_tool_call('{"name": "t"}').arguments == {}
    raw_newline = parse_tool_call('{"name": "code", "arguments": {"code": "a = 1\nprint(a)"}}')
    assert raw_newline.error is None and raw_newline.arguments["code"] == "a = 1\nprint(a)"


def test_parse_tool_call_errors_say_what_is_wrong():
    cases = {
        "": "empty",
        '{"name": "t", "arguments": {': "not valid JSON",
        "[1, 2]": "must be a JSON object",
        '{"arguments": {}}': 'no "name"',
        '{"name": "t", "arguments": [1]}': "must be a JSON object, got list",
        '{"name": "t", "arguments": "not json"}': "string that is not a JSON object",
        "[" * 100_000: "not valid JSON",
    }
    for body, message in cases.items():
        call = parse_tool_call(body)
        assert call.error and message in call.error, (body[:20], call.error)
        assert call.raw == body
    assert parse_tool_call('{"name": "t", "arguments": 3}').name == "t"


def test_code_source_strips_fence_and_common_indent():
    assert code_source("\n```python\n    x = 1\n    if x:\n        print(x)\n```\n") == "x = 1\nif x:\n    print(x)"
    assert code_source("print(1)") == "print(1)"
    assert code_source("```py\nprint(2)```") == "print(2)"


def test_every_two_chunk_split_of_a_tricky_call_gives_the_same_result():
    code = 'print("a\\\\", "</tool_call>", \'\\"\')  # <code> 中'
    text = "<think>x</think><tool_call>" + json.dumps({"name": "code", "arguments": {"code": code}}) + \
        "</tool_call><answer>é</answer>"
    whole = run(TagParser(TAGS), [text])
    assert whole[0][1].call.arguments == {"code": code}
    data = text.encode()
    for i in range(len(data) + 1):
        assert run(TagParser(TAGS), [text[:i], text[i:]]) == whole, i
        assert run(TagParser(TAGS), [data[:i], data[i:]]) == whole, i
