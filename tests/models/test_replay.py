"""ScriptedModel and ReplayModel behave like a real streaming backend."""

from __future__ import annotations

import threading

import pytest

from r1v4_nb.errors import UsageError
from r1v4_nb.models.base import GenerationSettings, Model, cut_at_stop
from r1v4_nb.models.replay import DEMO_TRAJECTORY, ReplayModel, ScriptedModel, demo_model

MSGS = [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]


def collect(model, stop=(), max_tokens=100, cancel=None):
    deltas = list(model.stream(MSGS, stop=list(stop), settings=GenerationSettings(max_tokens=max_tokens),
                               cancel=cancel))
    return "".join(d.text for d in deltas), deltas[-1]


def test_scripted_streams_in_chunks_and_cuts_at_stop() -> None:
    m = ScriptedModel(["abc</tool_call>ignored"], chunk=2)
    assert isinstance(m, Model)
    text, last = collect(m, stop=["</tool_call>"])
    assert text == "abc" and last.finish_reason == "stop" and last.usage.prompt_tokens == 2


def test_max_tokens_ends_with_length() -> None:
    text, last = collect(ScriptedModel(["one two three four"]), max_tokens=2)
    assert text == "one two" and last.finish_reason == "length"


def test_cancel_stops_the_stream() -> None:
    cancel = threading.Event()
    cancel.set()
    text, last = collect(ScriptedModel(["x" * 100]), cancel=cancel)
    assert text == "" and last.finish_reason == "cancelled"


def test_running_out_of_turns_is_a_clear_error() -> None:
    m = ScriptedModel(["a"])
    collect(m)
    with pytest.raises(UsageError, match="no more scripted turns"):
        collect(m)


def test_replay_gives_recorded_turns_verbatim() -> None:
    m = ReplayModel.from_file(DEMO_TRAJECTORY)
    first, _ = collect(m, stop=["</tool_call>"])
    assert first.endswith("</tool_call>")  # recorded text is replayed as it was, stop strings and all
    second, _ = collect(m)
    assert second.endswith("<answer>1897</answer>")
    assert demo_model().describe()["backend"] == "replay"


def test_cut_at_stop_takes_the_earliest() -> None:
    assert cut_at_stop("a</code>b</tool_call>", ["</tool_call>", "</code>"]) == ("a", True)
    assert cut_at_stop("abc", ["", "zz"]) == ("abc", False)
