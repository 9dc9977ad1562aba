"""Hand-made trajectories for the curation tests: each bad one is bad in one known way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from r1v4_nb.dialects import get_dialect
from r1v4_nb.images import Image, Provenance
from r1v4_nb.records import ModelStep, Observation, ToolCall, ToolStep
from r1v4_nb.trajectory import End, Header, Trajectory, read, write

R1V4 = get_dialect("r1v4")
CODE = '<think>The plaque is small; crop it.</think><code>show(crop(image_1, (8, 8, 40, 40)))</code>'


def textured(seed: int, size: tuple[int, int] = (64, 64), tint: tuple[int, int, int] = (0, 0, 0)) -> PILImage.Image:
    rng = np.random.default_rng(seed)
    arr = np.clip(rng.integers(0, 200, (size[1], size[0], 3)) + np.array(tint), 0, 255).astype(np.uint8)
    return PILImage.fromarray(arr)


def make(folder: Path, name: str, parts: list[Any], gold: str = "K7", end: str | None = None,
         question: str = "What code is on the plaque?") -> Path:
    """parts: model texts, or ("tool", name, arguments, observation text, [PIL images with boxes], error)."""
    work = folder / "work"
    work.mkdir(parents=True, exist_ok=True)
    src = Image.from_pil(textured(1), work, Provenance("input", name="image_1.png"))
    steps: list[Any] = []
    pending: list[ToolCall] = []
    for p in parts:
        if isinstance(p, str):
            segs = R1V4.parse(p)
            step = ModelStep(len(steps), p, segs, tokens_in=50, tokens_out=len(p.split()), elapsed_s=0.5)
            pending = list(step.calls)
            steps.append(step)
        else:
            _, tool, args, text, images, error = p
            call = pending.pop(0) if pending else ToolCall(tool, args)
            call = ToolCall(tool, args, call.raw, call.error, call.id or f"c{len(steps)}")
            ims = [Image.from_pil(im, work, Provenance("code", step=len(steps), source=src.sha256, box=box,
                                                         name=f"crop_{len(steps)}.png")) for im, box in images]
            steps.append(ToolStep(len(steps), call, Observation(text=text, images=ims, error=error), 0.2))
    answer = next((s.answer for s in reversed(steps) if isinstance(s, ModelStep) and s.answer), None)
    reason = end or ("answered" if answer is not None else "no_answer")
    header = Header(question=question, images=[src], model={"name": "teacher"}, dialect="r1v4", mode="general",
                    system_prompt="SYS", tools=[{"name": "code", "settings": {}}],
                    meta={"task": name, "gold": [gold]}, id=name)
    return write(folder / f"{name}.jsonl", Trajectory(header, steps, End(reason, answer, 1.0, {}), None))


def crop_tool(box: list[int] | None = (8, 8, 40, 40), image: PILImage.Image | None = None) -> tuple:
    im = image if image is not None else textured(2, (32, 32))
    return ("tool", "code", {"code": f"show(crop(image_1, {tuple(box) if box else None}))"}, "crop_1.png", [
        (im, list(box) if box else None)], None)


def prepared(folder: Path) -> dict[str, Path]:
    """Good trajectories and bad ones, named by the filter that must drop them."""
    look = "<think>The crop shows the code K7 clearly.</think><answer>K7</answer>"
    out = {
        "good_crop": make(folder, "good_crop", [CODE, crop_tool(), look]),
        "good_direct": make(folder, "good_direct", ["<think>I can read it: K7.</think><answer>K7</answer>"]),
        "format_nothink": make(folder, "format_nothink", ["<answer>K7</answer>"]),
        "format_badcall": make(folder, "format_badcall", ['<think>Search.</think><tool_call>{"name": "text_search", '
                                                          '"arguments": {"queries": [}</tool_call>', look]),
        "format_observation": make(folder, "format_observation", [
            '<think>I know it.</think><observation>{"result": "K7"}</observation><answer>K7</answer>']),
        "format_noanswer": make(folder, "format_noanswer", ["<think>I cannot tell what it says.</think>"]),
        "answer_wrong": make(folder, "answer_wrong", ["<think>It reads K1.</think><answer>K1</answer>"]),
        "tool_errors": make(folder, "tool_errors", [CODE, ("tool", "code", {"code": "x"}, "NameError",
                                                           [], "NameError: x"), look]),
        "repeats_recrop": make(folder, "repeats_recrop", [CODE, crop_tool(), CODE.replace("small", "tiny"),
                                                          crop_tool(), look]),
        "repeats_loop": make(folder, "repeats_loop", [
            '<think>Search.</think><tool_call>{"name": "text_search", "arguments": {"queries": ["K7 plaque"]}}'
            "</tool_call>", ("tool", "text_search", {"queries": ["K7 plaque"]}, "[1.1] K7", [], None),
            '<think>Search again.</think><tool_call>{"name": "text_search", "arguments": {"queries": ["K7 plaque"]}}'
            "</tool_call>", ("tool", "text_search", {"queries": ["K7 plaque"]}, "[1.1] K7", [], None), look]),
        "consistency_blank": make(folder, "consistency_blank", [
            CODE, crop_tool(image=PILImage.new("RGB", (32, 32), (200, 200, 200))), look]),
        "consistency_outside": make(folder, "consistency_outside", [CODE, crop_tool(box=[40, 40, 90, 90]), look]),
        "consistency_unreferenced": make(folder, "consistency_unreferenced", [
            CODE, crop_tool(), "<think>So the answer is K7.</think><answer>K7</answer>"]),
    }
    return out


def load(paths: dict[str, Path]) -> list[Trajectory]:
    return [read(p) for p in paths.values()]
