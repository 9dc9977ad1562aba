"""Shared helpers for the dialect tests: feeding a parser in chunks, tag soup, a realistic transcript."""

from __future__ import annotations

from hypothesis import strategies as st

from r1v4_nb.dialects.base import Parser

SOUP = [
    "<think>", "</think>", "<tool_call>", "</tool_call>", "<code>", "</code>", "<answer>", "</answer>",
    "<observation>", "</observation>", "<tool_response>", "</tool_response>", "<sandbox_output>",
    "</sandbox_output>", '{"name": "code", "arguments": {"code": "', '"}}', '"', "\\", "{", "}", "[", "]",
    "<", ">", "</", "<th", "</tool_", "```python\n", "```", "\n", " ", "x", "中文", "🙂", "é",
    '[{"description": "d", "tool_name": "none", "parameters": {}}', ",", "```json\n",
]

soup = st.lists(st.one_of(st.sampled_from(SOUP), st.text(max_size=5)), max_size=40).map("".join)


def split(text: str, cuts: list[int], as_bytes: bool) -> list[str | bytes]:
    """`text` cut at the given positions (byte positions when `as_bytes`, so cuts land inside characters)."""
    data: str | bytes = text.encode("utf-8") if as_bytes else text
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points + [len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


def run(parser: Parser, chunks) -> tuple[list, list[tuple[str, str]]]:
    """Feed all chunks, finish; the segments and, per segment, (kind, concatenated deltas)."""
    events = []
    for c in chunks:
        events += parser.feed(c)
    events += parser.finish()
    streamed: list[tuple[str, str]] = []
    current: list[str] | None = None
    for ev in events:
        if ev.type == "open":
            current = []
        elif ev.type == "delta":
            assert current is not None, "delta outside an open segment"
            current.append(ev.text)
        elif ev.type == "close":
            assert current is not None, "close without open"
            assert ev.segment is not None and ev.segment.kind == ev.kind
            streamed.append((ev.kind, "".join(current)))
            current = None
    assert current is None, "segment left open after finish()"
    return parser.segments, streamed


cuts = st.lists(st.integers(min_value=0, max_value=10_000), max_size=24)


TRANSCRIPT = """<think>The photo shows a stone bridge with a clock tower behind it. The inscription on the \
plaque is too small to read, so I will crop and enlarge it.</think>
<tool_call>{"name": "code", "arguments": {"code": "w, h = image_1.size\\ncrop = image_1.crop((int(w*0.6), \
int(h*0.7), w, h)).resize((800, 400))\\ncrop.save('plaque.png')\\nprint('plaque.png')"}}</tool_call>\
<observation>{"result": "plaque.png", "type": "code"}</observation>
<think>The plaque reads "Pont 1889". Let me run a reverse image search on the original photo.</think>
<tool_call>{"name": "image_search", "arguments": {"image_paths": ["image_1"]}}</tool_call>\
<observation>{"result": "1. Pont Neuf de Lorsac - Wikipedia ...", "type": "image_search"}</observation>
<think>Candidates: Pont Neuf de Lorsac. I need the architect; search the text web in two languages.</think>
<tool_call>{"name": "text_search", "arguments": {"queries": ["Pont Neuf de Lorsac architect", \
"洛尔萨克 新桥 建筑师"]}}</tool_call>\
<observation>{"result": "Pont Neuf de Lorsac was designed by Émile Garnier 🙂 ...", "type": "text_search"}\
</observation>
<think>Confirm on the city page.</think>
<tool_call>{"name": "web_visit", "arguments": {"urls": ["https://lorsac.example/histoire"]}}</tool_call>\
<observation>{"result": "The bridge, opened in 1889, is the work of Émile Garnier.", "type": "web_visit"}\
</observation>
<think>Two sources agree.</think>
<answer>Émile Garnier</answer>"""
