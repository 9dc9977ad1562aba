"""runs.py: one way to turn a recording back into a run (re-run, fork) and to build a tool set."""

from __future__ import annotations

import json
from pathlib import Path

from r1v4_nb.agent import Agent
from r1v4_nb.cli import main
from r1v4_nb.events import RunStarted, TokenDelta, ToolFinished, TurnFinished, TurnStarted, events_of_step
from r1v4_nb.models.replay import DEMO_TRAJECTORY, ReplayModel, ScriptedModel
from r1v4_nb.modes import MODES
from r1v4_nb.records import ModelStep, ToolStep
from r1v4_nb.runs import fork, is_replay, live_tools, mode_tools, recorded_tools, rerun
from r1v4_nb.tools.replay import ReplayTool
from r1v4_nb.trajectory import read

DEMO = read(DEMO_TRAJECTORY)


def test_tool_sets_live_by_mode_and_name_or_replayed():
    assert [t.name for t in mode_tools("deepresearch")] == list(MODES["deepresearch"].tools)
    web = live_tools(["web_visit"], {"web_visit": {"budget": 1234}})[0]
    assert web.settings()["budget"] == 1234
    replayed = recorded_tools(DEMO)
    assert [t.name for t in replayed] == ["code"] and all(isinstance(t, ReplayTool) for t in replayed)
    live = recorded_tools(DEMO, live=True)
    assert [t.name for t in live] == ["code"] and not isinstance(live[0], ReplayTool)


def test_from_header_sets_the_agent_up_as_the_recording_was():
    agent = Agent.from_header(DEMO.header, ReplayModel.from_trajectory(DEMO), [])
    assert (agent.dialect.name, agent.mode, agent.system_prompt) == (
        DEMO.header.dialect, DEMO.header.mode, DEMO.header.system_prompt)
    assert is_replay(agent.model) and not is_replay(ScriptedModel([]))


def test_rerun_reproduces_the_recording_and_names_it(tmp_path):
    agent, events = rerun(DEMO, runs_dir=tmp_path)
    result = agent.collect(events)
    assert result.answer == DEMO.answer and result.path.parent == tmp_path
    assert result.path.name.startswith(f"{DEMO_TRAJECTORY.stem}.replay-")
    assert result.trajectory.header.meta["replay_of"] == DEMO.header.id
    assert [s.text for s in result.trajectory.model_steps] == [s.text for s in DEMO.model_steps]


def test_a_fork_replays_the_recording_after_the_edit_and_emits_its_kept_steps(tmp_path):
    tool = DEMO.steps[1]
    assert isinstance(tool, ToolStep)
    edited = ToolStep(1, tool.call, tool.observation)
    agent, events = fork(DEMO, 1, [edited], runs_dir=tmp_path, out=tmp_path / "b.jsonl")
    seen = list(events)
    want = [*events_of_step(DEMO.steps[0]), *events_of_step(edited)]
    kept = seen[1:1 + len(want)]  # right after RunStarted, before the first new turn
    assert isinstance(seen[0], RunStarted) and [type(e) for e in kept] == [type(e) for e in want]
    assert isinstance(kept[-1], ToolFinished) and kept[-1].step.observation.text == tool.observation.text
    assert isinstance(seen[1 + len(want)], TurnStarted) and seen[1 + len(want)].index == 2
    assert not any(isinstance(e, TokenDelta) for e in kept)
    branch = read(tmp_path / "b.jsonl")
    assert branch.answer == DEMO.answer and branch.header.parent["step"] == 1 and is_replay(agent.model)


def test_a_fork_goes_on_with_a_given_model(tmp_path):
    edited = ModelStep(0, "<think>No need to look.</think><answer>1900</answer>", [])
    edited.segments = Agent.from_header(DEMO.header, ScriptedModel([]), []).dialect.parse(edited.text)
    agent, events = fork(DEMO, 0, [edited], model=ScriptedModel([]), tools=[], out=tmp_path / "b.jsonl")
    seen = list(events)
    want = events_of_step(edited)
    assert [type(e) for e in seen[1:1 + len(want)]] == [type(e) for e in want]
    assert any(isinstance(e, TurnFinished) and e.step.answer == "1900" for e in seen)
    assert read(tmp_path / "b.jsonl").answer == "1900" and agent.tools == {}


def test_the_cli_rerun_command_and_its_old_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("rerun", "replay"):
        out = tmp_path / f"{name}.jsonl"
        assert main([name, str(DEMO_TRAJECTORY), "--quiet", "--out", str(out)]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["answer"] == DEMO.answer and Path(summary["path"]) == out
