"""The one message mapping of a run, through our chat template and through Qwen3-VL Thinking's own.

The tiny models run with both templates (`templated_model_path`). What the real template does to a
context (drops text between the first and last `</think>` of a message, drops reasoning before the
last user query, opens the generation prompt with `<think>\\n`) is exactly what broke runs and masks
when a run was one assistant message with inline observations.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from PIL import Image as PILImage

from r1v4_nb.agent import Agent, Budgets
from r1v4_nb.dialects import get_dialect
from r1v4_nb.images import Image, Provenance
from r1v4_nb.messages import (
    MessageError,
    chat_prompt,
    chat_text,
    expand_images,
    image_paths,
    rewritten_turns,
    to_openai,
    turn_opening,
)
from r1v4_nb.models.base import Delta, GenerationSettings
from r1v4_nb.models.hf import load
from r1v4_nb.models.processor import load_processor
from r1v4_nb.records import ModelStep, NoteStep, Observation, ToolStep
from r1v4_nb.tools.base import Tool, ToolContext
from r1v4_nb.train.data import RenderError, render_example
from r1v4_nb.trajectory import read
from tests.conftest import real_template

SHORT = GenerationSettings(temperature=0.0, max_tokens=2)


def shaped(think: str, rest: str) -> str:
    """A turn as a Qwen3-VL Thinking model writes it (and as its template renders it back)."""
    return f"<think>\n{think}\n</think>\n\n{rest}"


def tool_call(name: str, **arguments: object) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


@pytest.fixture
def pictures(tmp_path: Path) -> tuple[Image, Image, Image]:
    paths = []
    for k, colour in enumerate(["red", "green", "blue"]):
        p = tmp_path / f"p{k}.png"
        PILImage.new("RGB", (48, 32), colour).save(p)
        paths.append(p)
    return tuple(Image.from_file(p, Provenance("input" if k == 0 else "code", k)) for k, p in enumerate(paths))


def steps_of_a_run(pictures, shape=shaped) -> list:
    """Two code calls that each return an image, a budget note, an answer: 3 images in all."""
    _, a, b = pictures
    c0 = tool_call("code", code="crop")
    s0 = ModelStep(0, shape("Crop the sign.", c0), get_dialect("r1v4").parse(shape("Crop the sign.", c0)))
    s0.calls[0].id = "call_0_0"
    c2 = tool_call("code", code="zoom")
    s2 = ModelStep(2, shape("Zoom in.", c2), get_dialect("r1v4").parse(shape("Zoom in.", c2)))
    s2.calls[0].id = "call_2_0"
    return [s0, ToolStep(1, s0.calls[0], Observation("crop.png", [a])),
            s2, ToolStep(3, s2.calls[0], Observation("zoom.png", [b])),
            NoteStep(4, "Answer now.", "budget:step"),
            ModelStep(5, shape("It reads Café.", "<answer>Café</answer>"))]


# --- helpers ---------------------------------------------------------------------------------------------


def test_image_paths_and_openai_parts(pictures) -> None:
    image, crop, _ = pictures
    msgs = get_dialect("qwen").build_messages("S", "Q", [image], steps_of_a_run(pictures))
    assert image_paths(msgs) == [str(im.path) for im in pictures]
    wire = to_openai(msgs)
    assert [m["role"] for m in wire] == ["system", "user", "assistant", "tool", "assistant", "tool", "system",
                                         "assistant"]
    assert wire[3]["tool_call_id"] == "call_0_0" and wire[3]["content"][1]["image_url"]["url"].startswith(
        "data:image/png;base64,")
    with pytest.raises(MessageError, match="assistant message holds an image"):
        to_openai([{"role": "assistant", "content": [{"type": "image", "image": str(crop.path)}]}])


def test_expand_images_counts_placeholders() -> None:
    assert expand_images("a<P>b<P>", "<P>", [2, 1]) == "a<P><P>b<P>"
    with pytest.raises(MessageError, match="placed 2 images but the messages hold 3"):
        expand_images("a<P>b<P>", "<P>", [1, 1, 1])


def test_turn_opening_is_what_the_generation_prompt_opens(tiny_dense_path, tiny_real_template_path) -> None:
    msgs = [{"role": "user", "content": "Q"}]
    assert turn_opening(load_processor(tiny_dense_path), msgs) == ""
    assert turn_opening(load_processor(tiny_real_template_path), msgs) == "<think>\n"


def test_the_real_template_is_read_from_beside_the_repository() -> None:
    text = real_template()
    assert "reasoning_content" in text and "<tool_response>" in text and "<think>\\n" in text


# --- runs through both templates -------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["r1v4", "qwen", "fenced"])
def test_every_step_of_a_run_encodes_and_generates(templated_model_path, pictures, dialect) -> None:
    """Reproduces 'the chat template placed 2 images but the messages hold 3' and 'continue_final_message is
    set but the final message does not appear in the chat': every context of a run, ending in a tool
    result, a note or a turn being continued, goes through the template and the model."""
    model = load(templated_model_path, progress=None)
    image = pictures[0]
    steps = steps_of_a_run(pictures)
    d = get_dialect(dialect)
    for i in range(len(steps) + 1):
        msgs = d.build_messages("You are a test.", "What does the sign say?", [image], steps[:i])
        out = list(model.stream(msgs, stop=list(d.stop), settings=SHORT))
        assert out[-1].finish_reason in ("stop", "length")
        assert model.last_stats["prompt_tokens"] > 0
        n_images = len(image_paths(msgs))
        assert model._encode(msgs)[0]["image_grid_thw"].shape[0] == n_images


def test_a_turn_in_progress_is_continued_exactly_as_written(templated_model_path, pictures) -> None:
    processor = load_processor(templated_model_path)
    steps = steps_of_a_run(pictures)
    d = get_dialect("r1v4")
    head = d.build_messages("S", "Q", [pictures[0]], steps[:2])
    partial = ModelStep(2, "<think>\nZoom" if turn_opening(processor, head) else "<think>Zoom")
    prompt = chat_prompt(processor, d.build_messages("S", "Q", [pictures[0]], [*steps[:2], partial]))
    assert prompt == chat_prompt(processor, head)[:len(prompt) - len(partial.text)] + partial.text
    assert prompt.endswith("<|im_start|>assistant\n" + partial.text)


def test_the_real_template_opens_thinking_and_the_turn_is_recorded_with_it(templated_model_path, pictures,
                                                                          tmp_path) -> None:
    """The model's output starts inside `<think>`: the backend gives the opening first, so the recorded
    text parses as thinking."""
    model = load(templated_model_path, progress=None)
    msgs = get_dialect("r1v4").build_messages("S", "Q", [pictures[0]], [])
    opening = turn_opening(model.processor, msgs)
    deltas = list(model.stream(msgs, stop=[], settings=SHORT))
    assert [d.text for d in deltas if d.prompted] == ([opening] if opening else [])
    text = "".join(d.text for d in deltas)
    segs = get_dialect("r1v4").parse(text)
    if opening:
        assert text.startswith("<think>\n") and segs[0].kind == "think"


class ZoomTool(Tool):
    """Returns a new image on every call, as the code tool does for a crop."""

    name = "code"
    description = "zoom"
    parameters = {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}

    def run(self, arguments: dict, ctx: ToolContext) -> Observation:
        src = ctx.resolve_image("image_1")
        assert src is not None
        im = Image.from_pil(src.open().resize((16 + ctx.step, 16)), ctx.workdir, Provenance("code", ctx.step))
        return Observation(text=f"zoom{ctx.step}.png", images=[im])


class CheckedScript:
    """The tiny model reads every context (through its template) before a scripted turn is streamed, so a
    run's contexts meet the real template while its turns stay meaningful."""

    def __init__(self, hf, turns: list[str]):
        self.hf, self.turns, self.name = hf, list(turns), "checked-script"

    def describe(self) -> dict:
        return {"name": self.name, "backend": "script"}

    def stream(self, messages, *, stop, settings, cancel=None):
        opening = "".join(d.text for d in self.hf.stream(messages, stop=stop, settings=SHORT) if d.prompted)
        if opening:
            yield Delta(text=opening, prompted=True)
        text = self.turns.pop(0)
        yield Delta(text=text[len(opening):] if text.startswith(opening) else text)
        yield Delta(finish_reason="stop")


def test_an_agent_run_and_its_training_mask_through_both_templates(templated_model_path, pictures,
                                                                  tmp_path) -> None:
    """Reproduces 'the chat template rewrites the text the model wrote' from the mask builder: a run of
    turns in the template's shape becomes a mask whose spans are exactly what the model generated."""
    hf = load(templated_model_path, progress=None)
    real = bool(turn_opening(hf.processor, [{"role": "user", "content": "Q"}]))
    turns = [shaped("Crop it.", tool_call("code", code="a")), shaped("Again.", tool_call("code", code="b")),
             shaped("Read it.", tool_call("code", code="c")), shaped("Done.", "<answer>Café</answer>")]
    agent = Agent(CheckedScript(hf, turns), tools=[ZoomTool()], budgets=Budgets(max_steps=8),
                  runs_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the template keeps every turn verbatim: no rewrite warning
        list(agent.run("What does the sign say?", [pictures[0].path], out=tmp_path / "run.jsonl"))
    traj = read(tmp_path / "run.jsonl")
    assert traj.end.reason == "answered" and len(traj.model_steps) == 4
    assert all(s.segments[0].kind == "think" for s in traj.model_steps)
    ex = render_example(traj, hf.processor)
    assert ex.n_images == 4
    tok = hf.processor.tokenizer
    for (s, e), step in zip(ex.spans, traj.model_steps, strict=True):
        generated = step.text[len("<think>\n"):] if real else step.text
        closed = generated + ("</tool_call>" if not generated.endswith(("</tool_call>", "</answer>")) else "")
        assert tok.decode(ex.input_ids[s:e]).removesuffix(tok.eos_token) == closed


def test_text_the_template_rewrites_is_refused_loudly(templated_model_path, pictures, tmp_path) -> None:
    """`<think>x</think><tool_call>` (no newlines) is rendered `<think>\\nx\\n</think>\\n\\n<tool_call>` by the
    real template: the model would be trained on text it never wrote. Ours keeps it."""
    from tests.support.trajectory import write_sample

    traj = read(write_sample(tmp_path / "run.jsonl"))  # turns written '<think>\n..\n</think>\n<tool_call>'
    processor = load_processor(templated_model_path)
    msgs = traj.context_at(len(traj.steps))
    real = bool(turn_opening(processor, msgs))
    bad = rewritten_turns(chat_text(processor, msgs), msgs)
    if not real:
        assert bad == [] and render_example(traj, processor).spans
        return
    assert bad  # the rendered history differs from the recording
    with pytest.raises(RenderError, match="model step 0: the chat template rewrites the text the model wrote"):
        render_example(traj, processor)
    model = load(templated_model_path, progress=None)
    with pytest.warns(UserWarning, match="rewrites earlier model turns"):
        list(model.stream(msgs, stop=[], settings=SHORT))


def test_reasoning_survives_notes_and_tool_results(tiny_real_template_path, pictures) -> None:
    """A budget note is a system message, so the template keeps every earlier turn's reasoning."""
    processor = load_processor(tiny_real_template_path)
    steps = steps_of_a_run(pictures)
    msgs = get_dialect("r1v4").build_messages("S", "Q", [pictures[0]], steps)
    text = chat_text(processor, msgs)
    for step in (s for s in steps if isinstance(s, ModelStep)):
        assert step.text in text
    assert "<tool_response>\n{\"result\": \"crop.png\", \"type\": \"code\"}<|vision_start|>" in text
