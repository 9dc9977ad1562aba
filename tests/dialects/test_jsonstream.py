"""dialects/jsonstream.py: a tool call's JSON read while it streams in."""

from __future__ import annotations

import json

from r1v4_nb.dialects.jsonstream import JsonStringReader, StreamedCall, partial_json_string


def test_partial_json_string_only_grows():
    raw = r'{"name": "code", "arguments": {"code": "a\nb\"c\u00e9 d'
    shown = [partial_json_string(raw[:n], raw.index('"code": "') + 9) for n in range(len(raw) + 1)]
    assert all(b.startswith(a) for a, b in zip(shown, shown[1:], strict=False))
    assert shown[-1] == 'a\nb"cé d'


def test_streamed_code_call_shows_the_decoded_code_chunk_by_chunk():
    code = 'print("a\\tb")\n' * 50 + "x = '\u00e9'\n"
    raw = json.dumps({"name": "code", "arguments": {"code": code}})
    for size in (1, 3, 7, 64):
        call, shown = StreamedCall(), ""
        for i in range(0, len(raw), size):
            shown += call.feed(raw[i:i + size])
        assert shown == code, size
    other = json.dumps({"name": "text_search", "arguments": {"queries": ["q"]}})
    call = StreamedCall()
    assert "".join(call.feed(other[i:i + 5]) for i in range(0, len(other), 5)) == other


def test_a_reader_stops_at_the_closing_quote_and_waits_on_a_cut_escape():
    reader = JsonStringReader()
    assert reader.feed(r"ab\\") == "ab\\"
    assert reader.feed(r"\u00") == ""  # an escape cut by the chunk waits for the rest
    assert reader.feed(r'e9x" rest') == "\u00e9x" and reader.closed
    assert reader.feed("more") == ""
