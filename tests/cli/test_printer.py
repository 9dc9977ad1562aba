"""The terminal view of a run: code calls read as code, other calls as name and arguments."""

from __future__ import annotations

import io
import json
from pathlib import Path

from r1v4_nb.agent import Agent
from r1v4_nb.cli.printer import Printer
from r1v4_nb.models.replay import ScriptedModel
from r1v4_nb.records import Observation
from r1v4_nb.tools.base import Tool, ToolContext


class Echo(Tool):
    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, arguments: dict, ctx: ToolContext) -> Observation:
        return Observation(text=f"ran {self.name}")


def test_calls_are_printed_decoded_not_as_raw_json(tmp_path: Path) -> None:
    code = "x = 1\nprint('\u00e9t\u00e9', x)"
    turns = [
        "<think>Look.</think><tool_call>" + json.dumps({"name": "code", "arguments": {"code": code}}) + "</tool_call>",
        "<tool_call>" + json.dumps({"name": "text_search", "arguments": {"queries": ["bakery 1897"]}}) + "</tool_call>",
        "<tool_call>{broken</tool_call>",
        "<answer>1897</answer>",
    ]
    out = io.StringIO()
    agent = Agent(ScriptedModel(turns, chunk=3), tools=[Echo("code"), Echo("text_search")], runs_dir=tmp_path)
    agent.subscribe(Printer(out, color=False))
    agent.ask("When?")
    text = out.getvalue()
    assert "[code]\n    x = 1\n    print('été', x)\n" in text
    assert '{"name": "code"' not in text  # the raw call JSON is not streamed
    assert '[call] text_search {"queries": ["bakery 1897"]}' in text
    assert "[call] malformed:" in text and "{broken" in text
    assert "── step 1 · tool code\nran code" in text
    assert "answer: 1897" in text


def test_escape_sequences_from_a_model_do_not_reach_the_terminal(tmp_path: Path) -> None:
    out = io.StringIO()
    agent = Agent(ScriptedModel(["<answer>\x1b]52;c;cHduZWQ=\x07ok</answer>"]), tools=[], runs_dir=tmp_path)
    agent.subscribe(Printer(out, color=False))
    agent.ask("q")
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
