"""The agent loop with scripted models and small real tools: events, budgets, cancellation, fork, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image as PILImage

from r1v4_nb.agent import Agent, Budgets
from r1v4_nb.errors import UsageError
from r1v4_nb.events import (
    Answered,
    NoteAdded,
    RunFinished,
    RunStarted,
    SegmentClosed,
    TokenDelta,
    ToolFinished,
    ToolStarted,
    TurnFinished,
    TurnStarted,
)
from r1v4_nb.images import Image, Provenance
from r1v4_nb.models.base import ModelError
from r1v4_nb.models.replay import ReplayModel, ScriptedModel
from r1v4_nb.records import ModelStep, NoteStep, Observation, ToolStep
from r1v4_nb.tools.base import Tool, ToolContext, ToolError
from r1v4_nb.tools.replay import replay_tools
from r1v4_nb.trajectory import read


class CropTool(Tool):
    """A real little tool: crops the input image to the box it is given and returns the crop."""

    name = "code"
    description = "crop"
    parameters = {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []

    def start(self, ctx: ToolContext) -> None:
        self.started.append(ctx.trajectory_id)

    def finish(self, ctx: ToolContext) -> None:
        self.finished.append(ctx.trajectory_id)

    def run(self, arguments: dict, ctx: ToolContext) -> Observation:
        if arguments["code"] == "boom":
            raise ToolError("the code failed")
        if arguments["code"] == "interrupt":
            raise KeyboardInterrupt
        src = ctx.resolve_image("image_1")
        assert src is not None
        box = [0, 0, 8, 8]
        crop = src.open().crop(tuple(box))
        im = Image.from_pil(crop, ctx.workdir, Provenance("code", ctx.step, src.sha256, box, "crop.png"))
        ctx.register_image(im, "crop.png")
        return Observation(text="crop.png", images=[im])


def call(name: str, **arguments: object) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    p = tmp_path / "in.png"
    PILImage.new("RGB", (32, 24), (200, 30, 30)).save(p)
    return p


def run(agent: Agent, picture: Path, tmp_path: Path, question: str = "What is it?"):
    events = list(agent.run(question, [picture], out=tmp_path / "run.jsonl"))
    return events, read(tmp_path / "run.jsonl")


def test_tool_then_answer_records_every_step_and_event(picture: Path, tmp_path: Path) -> None:
    model = ScriptedModel(["<think>Crop it.</think>" + call("code", code="crop"),
                           "<think>Red.</think><answer>red</answer>"])
    tool = CropTool()
    seen: list[object] = []
    agent = Agent(model, tools=[tool], runs_dir=tmp_path)
    agent.subscribe(seen.append)
    events, traj = run(agent, picture, tmp_path)

    assert seen == events
    kinds = [type(e) for e in events]
    assert kinds[0] is RunStarted and kinds[-1] is RunFinished
    assert kinds.count(TurnStarted) == 2 and kinds.count(TurnFinished) == 2
    assert kinds.count(ToolStarted) == 1 and kinds.count(ToolFinished) == 1
    assert [e.text for e in events if isinstance(e, Answered)] == ["red"]
    streamed = "".join(e.text for e in events if isinstance(e, TokenDelta) and e.kind == "think")
    assert streamed == "Crop it.Red."
    assert any(isinstance(e, SegmentClosed) and e.segment.kind == "tool_call" for e in events)
    assert events[-1].reason == "answered" and events[-1].answer == "red"

    assert [s.type for s in traj.steps] == ["model", "tool", "model"]
    assert traj.end is not None and traj.end.reason == "answered" and traj.answer == "red"
    tool_step = traj.steps[1]
    assert isinstance(tool_step, ToolStep) and tool_step.call.id == "call_0_0"
    (crop,) = tool_step.observation.images
    assert crop.path.parent == tmp_path / "run.images" and crop.path.is_file()
    assert crop.provenance.kind == "code" and crop.provenance.box == [0, 0, 8, 8]
    assert crop.provenance.source == traj.header.images[0].sha256
    assert tool.started == tool.finished == [traj.header.id]


def test_context_rebuilt_from_the_record_is_what_the_model_saw(picture: Path, tmp_path: Path) -> None:
    model = ScriptedModel([call("code", code="crop"), call("code", code="crop"), "<answer>x</answer>"])
    _, traj = run(Agent(model, tools=[CropTool()], runs_dir=tmp_path), picture, tmp_path)
    turns = [s.index for s in traj.model_steps]
    assert len(model.seen) == len(turns) == 3
    for index, messages in zip(turns, model.seen, strict=True):
        assert traj.context_at(index) == messages


def test_step_budget_asks_once_for_a_final_answer(picture: Path, tmp_path: Path) -> None:
    model = ScriptedModel([call("code", code="crop")] * 2 + ["<answer>late</answer>"])
    events, traj = run(Agent(model, tools=[CropTool()], budgets=Budgets(max_steps=2), runs_dir=tmp_path),
                       picture, tmp_path)
    notes = [s for s in traj.steps if isinstance(s, NoteStep)]
    assert len(notes) == 1 and "step budget" in notes[0].text and notes[0].reason == "budget:step"
    assert any(isinstance(e, NoteAdded) for e in events)
    assert traj.end.reason == "answered" and traj.answer == "late"


def test_a_model_that_ignores_the_final_notice_ends_with_budget(picture: Path, tmp_path: Path) -> None:
    model = ScriptedModel([call("code", code="crop")] * 3)
    _, traj = run(Agent(model, tools=[CropTool()], budgets=Budgets(max_tool_calls=1), runs_dir=tmp_path),
                  picture, tmp_path)
    assert traj.end.reason == "budget" and traj.answer is None
    assert len(traj.tool_steps) == 1


@pytest.mark.parametrize("budgets, why", [(Budgets(max_total_tokens=5), "token"), (Budgets(max_wall_s=0.0), "time")])
def test_token_and_time_budgets_ask_once_for_a_final_answer(picture: Path, tmp_path: Path, budgets: Budgets,
                                                           why: str) -> None:
    model = ScriptedModel([call("code", code="crop"), "<answer>in time</answer>"] if why == "token"
                          else ["<answer>in time</answer>"])
    _, traj = run(Agent(model, tools=[CropTool()], budgets=budgets, runs_dir=tmp_path), picture, tmp_path)
    notes = [s for s in traj.steps if isinstance(s, NoteStep)]
    assert [n.reason for n in notes] == [f"budget:{why}"] and f"{why} budget" in notes[0].text
    assert traj.end.reason == "answered" and traj.answer == "in time"


def test_a_turn_is_cut_at_the_per_turn_token_budget(picture: Path, tmp_path: Path) -> None:
    model = ScriptedModel(["<think>" + "word " * 40 + "</think><answer>a</answer>", "<answer>b</answer>"])
    _, traj = run(Agent(model, tools=[CropTool()], budgets=Budgets(max_tokens_per_turn=5), runs_dir=tmp_path),
                  picture, tmp_path)
    first = traj.steps[0]
    assert isinstance(first, ModelStep) and first.finish_reason == "length" and "<answer>" not in first.text
    assert traj.answer == "b"


def test_errors_in_calls_become_observations_and_the_run_goes_on(picture: Path, tmp_path: Path) -> None:
    model = ScriptedModel([
        "<tool_call>{not json</tool_call>",
        call("zoom", factor=2),
        call("code"),
        call("code", code="boom"),
        "<answer>done</answer>",
    ])
    _, traj = run(Agent(model, tools=[CropTool()], runs_dir=tmp_path), picture, tmp_path)
    errors = [s.observation.error for s in traj.tool_steps]
    assert len(errors) == 4 and all(errors)
    assert "unknown tool 'zoom'" in errors[1] and "code" in errors[1]
    assert "missing argument" in errors[2]
    assert "the code failed" in errors[3]
    assert traj.answer == "done"


def test_stop_string_inside_a_json_string_lets_the_model_go_on(picture: Path, tmp_path: Path) -> None:
    code = "print('</tool_call>')"
    full = call("code", code=code)
    # The scripted backend cuts at every stop string, like a real one: the first call ends inside the string.
    rest = full[full.index("</tool_call>") + len("</tool_call>"):]
    model = ScriptedModel([full, rest, "<answer>ok</answer>"])

    class Echo(CropTool):
        def run(self, arguments: dict, ctx: ToolContext) -> Observation:
            return Observation(text=arguments["code"])

    _, traj = run(Agent(model, tools=[Echo()], runs_dir=tmp_path), picture, tmp_path)
    first = traj.steps[0]
    assert isinstance(first, ModelStep) and first.text == full
    assert traj.tool_steps[0].observation.text == code
    assert traj.answer == "ok"


def test_stop_from_a_subscriber_cancels_cleanly(picture: Path, tmp_path: Path) -> None:
    model = ScriptedModel(["<think>" + "long thought " * 50 + "</think><answer>never</answer>"], chunk=3)
    agent = Agent(model, tools=[CropTool()], runs_dir=tmp_path)
    agent.subscribe(lambda e: agent.stop() if isinstance(e, TokenDelta) else None)
    events, traj = run(agent, picture, tmp_path)
    assert events[-1].reason == "cancelled"
    assert traj.end.reason == "cancelled" and traj.answer is None
    assert traj.model_steps[0].finish_reason == "cancelled"


def test_keyboard_interrupt_is_recorded_as_cancelled(picture: Path, tmp_path: Path) -> None:
    model = ScriptedModel([call("code", code="interrupt"), "<answer>never</answer>"])
    tool = CropTool()
    events, traj = run(Agent(model, tools=[tool], runs_dir=tmp_path), picture, tmp_path)
    assert events[-1].reason == "cancelled" and traj.end.reason == "cancelled"
    assert tool.finished == [traj.header.id]


def test_model_error_is_recorded_then_reported(picture: Path, tmp_path: Path) -> None:
    class Down(ScriptedModel):
        def stream(self, messages, **kw):
            raise ModelError("server at http://127.0.0.1:9 refused the connection; is it running?")
            yield  # pragma: no cover

    events, traj = run(Agent(Down([]), tools=[CropTool()], runs_dir=tmp_path), picture, tmp_path)
    assert events[-1].reason == "error"
    assert traj.end.reason == "error" and "refused" in traj.end.error


def test_fork_with_an_edited_observation_continues_into_a_branch(picture: Path, tmp_path: Path) -> None:
    model = ScriptedModel([call("code", code="crop"), "<answer>red</answer>"])
    _, traj = run(Agent(model, tools=[CropTool()], runs_dir=tmp_path), picture, tmp_path)
    edited = ToolStep(1, traj.steps[1].call, Observation(text="the crop is blue"))
    brancher = Agent(ScriptedModel(["<answer>blue</answer>"]), tools=[CropTool()], runs_dir=tmp_path)
    events = list(brancher.fork(traj, 1, [edited], out=tmp_path / "branch.jsonl"))
    branch = read(tmp_path / "branch.jsonl")
    assert branch.header.parent == {"id": traj.header.id, "path": str(traj.path), "step": 1}
    assert [s.type for s in branch.steps] == ["model", "tool", "model"]
    assert branch.steps[1].observation.text == "the crop is blue"
    assert branch.answer == "blue" and events[-1].reason == "answered"
    assert read(tmp_path / "run.jsonl").answer == "red"  # the source is untouched


def test_replay_reproduces_a_recorded_run(picture: Path, tmp_path: Path) -> None:
    model = ScriptedModel([call("code", code="crop"), "<answer>red</answer>"])
    _, traj = run(Agent(model, tools=[CropTool()], runs_dir=tmp_path), picture, tmp_path)
    again = Agent(ReplayModel.from_trajectory(traj), tools=replay_tools(traj), runs_dir=tmp_path)
    result = again.ask(traj.header.question, traj.header.images, out=tmp_path / "again.jsonl")
    assert result.answer == "red"
    assert [s.to_json(tmp_path) for s in result.trajectory.steps][0]["text"] == traj.steps[0].text
    a, b = traj.tool_steps[0].observation.images[0], result.trajectory.tool_steps[0].observation.images[0]
    assert a.sha256 == b.sha256 and a.path.read_bytes() == b.path.read_bytes()


def test_bad_input_gives_clear_errors(picture: Path, tmp_path: Path) -> None:
    agent = Agent(ScriptedModel(["<answer>x</answer>"]), tools=[], runs_dir=tmp_path)
    with pytest.raises(UsageError, match="question is empty"):
        agent.run("  ", [picture])
    with pytest.raises(UsageError, match="not found"):
        agent.run("q", [tmp_path / "missing.png"])
    with pytest.raises(UsageError, match="unknown mode"):
        Agent(ScriptedModel([]), tools=[], mode="chat")
    for bad in (Budgets(max_steps=0), Budgets(max_tool_calls=-1), Budgets(max_tokens_per_turn=0),
                Budgets(max_wall_s=float("nan"))):
        with pytest.raises(UsageError, match="budget max_"):
            Agent(ScriptedModel([]), tools=[], budgets=bad)
    agent.budgets.max_total_tokens = 0
    with pytest.raises(UsageError, match="budget max_total_tokens must be at least 1, got 0"):
        agent.run("q", [picture])


def test_fork_on_an_edited_model_turn_runs_its_calls_or_ends_on_its_answer(picture: Path,
                                                                          tmp_path: Path) -> None:
    model = ScriptedModel(["<answer>guess</answer>"])
    _, traj = run(Agent(model, tools=[CropTool()], runs_dir=tmp_path), picture, tmp_path)

    with_call = ModelStep(0, "<think>Look closer.</think>" + call("code", code="crop"))
    with_call.segments = Agent(ScriptedModel([]), tools=[]).dialect.parse(with_call.text)
    brancher = Agent(ScriptedModel(["<answer>red</answer>"]), tools=[CropTool()], runs_dir=tmp_path)
    list(brancher.fork(traj, 0, [with_call], out=tmp_path / "b1.jsonl"))
    b1 = read(tmp_path / "b1.jsonl")
    assert [s.type for s in b1.steps] == ["model", "tool", "model"] and b1.answer == "red"
    assert b1.tool_steps[0].observation.images  # the edited turn's call ran live

    answered = ModelStep(0, "<answer>blue</answer>")
    answered.segments = brancher.dialect.parse(answered.text)
    idle = ScriptedModel([])
    list(Agent(idle, tools=[CropTool()], runs_dir=tmp_path).fork(traj, 0, [answered], out=tmp_path / "b2.jsonl"))
    b2 = read(tmp_path / "b2.jsonl")
    assert b2.end.reason == "answered" and b2.answer == "blue" and idle.calls == 0


def test_a_consumer_that_stops_iterating_still_ends_the_run(picture: Path, tmp_path: Path) -> None:
    model = ScriptedModel(["<think>" + "slow thought " * 40 + "</think><answer>x</answer>"], chunk=3)
    tool = CropTool()
    events = Agent(model, tools=[tool], runs_dir=tmp_path).run("q", [picture], out=tmp_path / "run.jsonl")
    for ev in events:
        if isinstance(ev, TokenDelta):
            break
    events.close()
    traj = read(tmp_path / "run.jsonl")
    assert traj.end is not None and traj.end.reason == "cancelled"
    assert tool.finished == [traj.header.id]


@pytest.mark.parametrize("dialect", ["r1v4", "qwen", "fenced"])
def test_the_context_grown_step_by_step_equals_a_full_rebuild_at_every_call(picture: Path, tmp_path: Path,
                                                                            dialect: str) -> None:
    from r1v4_nb.dialects import get_dialect

    d = get_dialect(dialect)
    full = call("code", code="print('</tool_call>')") if dialect != "fenced" else None
    script = [call("code", code="crop")]
    if full is not None:  # a call cut inside its string by the stop string: the same turn goes on
        script += [full, full[full.index("</tool_call>") + len("</tool_call>"):]]
    script += [call("code", code="crop"), "<answer>x</answer>"]
    if dialect == "fenced":
        script = [f"<code>\n```python\ncrop_{i}\n```\n</code>" for i in range(3)] + ["<answer>x</answer>"]
    model = ScriptedModel(script)
    budgets = Budgets(max_steps=3)  # the last turn comes after a budget note
    _, traj = run(Agent(model, tools=[CropTool()], dialect=d, budgets=budgets, runs_dir=tmp_path), picture,
                  tmp_path)
    assert any(isinstance(s, NoteStep) for s in traj.steps) and traj.tool_steps
    h = traj.header
    calls = iter(model.seen)
    for step in traj.steps:
        if not isinstance(step, ModelStep):
            continue
        before = traj.steps[:traj.steps.index(step)]
        assert next(calls) == d.build_messages(h.system_prompt, h.question, h.images, before)
        if full is not None and step.text == full:  # the continued call saw its own beginning
            partial = ModelStep(step.index, full[:full.index("</tool_call>") + len("</tool_call>")])
            assert next(calls) == d.build_messages(h.system_prompt, h.question, h.images, [*before, partial])
    assert next(calls, None) is None


def test_a_dialect_that_builds_whole_contexts_is_rebuilt_every_turn(picture: Path, tmp_path: Path) -> None:
    from r1v4_nb.dialects.r1v4 import R1V4Dialect

    class Whole(R1V4Dialect):
        built = 0

        def build_messages(self, system, question, images, steps):
            Whole.built += 1
            return super().build_messages(system, question, images, steps)

    assert not Whole().incremental and R1V4Dialect().incremental
    model = ScriptedModel([call("code", code="crop"), "<answer>x</answer>"])
    _, traj = run(Agent(model, tools=[CropTool()], dialect=Whole(), runs_dir=tmp_path), picture, tmp_path)
    assert Whole.built >= 2 and traj.context_at(traj.model_steps[-1].index) == model.seen[-1]
