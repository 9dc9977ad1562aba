"""A realistic recorded run for the trajectory, formats and CLI tests, written with the real writer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from r1v4_nb.dialects import get_dialect
from r1v4_nb.images import Image, Provenance
from r1v4_nb.records import ModelStep, NoteStep, Observation, Step, ToolStep
from r1v4_nb.trajectory import End, Header, TrajectoryWriter, input_image

QUESTION = "What does the sign above the door say? 看板に何と書いてある?"
ANSWER = "Café Zürich"


def make_png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (16, 12)) -> Path:
    from PIL import Image as PILImage

    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", size, color).save(path, format="PNG")
    return path


def model(index: int, text: str) -> ModelStep:
    step = ModelStep(index, text, get_dialect("r1v4").parse(text), tokens_in=100 + index, tokens_out=20 + index,
                     elapsed_s=0.25, ttft_s=0.05)
    for n, call in enumerate(step.calls):
        call.id = f"call_{index}_{n}"
    return step


def call_text(name: str, arguments: dict[str, Any], think: str) -> str:
    body = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"<think>\n{think}\n</think>\n<tool_call>{body}</tool_call>"


def sample_steps(folder: Path, hosted: bool = False) -> tuple[Image, list[Step]]:
    """The input image and the steps of a run: code crop, image search (2 images), [failed visit, note], answer.

    `hosted=True` leaves out what a hosted R1V4 reply cannot hold (tool errors, notes).
    """
    src = folder / "src"
    photo = input_image(make_png(src / "photo.png", (200, 30, 30), (64, 48)))
    crop = Image.from_file(make_png(src / "crop.png", (30, 200, 30), (8, 8)),
                           Provenance("code", 1, source=photo.sha256, box=[0, 0, 8, 8], name="crop.png"))
    thumbs = [Image.from_file(make_png(src / f"t{k}.png", (30, 30, 100 + 50 * k), (10, 10)),
                              Provenance("search", 3, name=f"https://example.org/t{k}.png")) for k in range(2)]
    code = "im = image_1.crop((0, 0, 8, 8))\nim.save('crop.png')\nprint('crop.png')  # \"</tool_call>\" in a string"
    steps: list[Step] = [
        model(0, call_text("code", {"code": code}, "The sign is small; crop it.")),
    ]
    steps.append(ToolStep(1, steps[0].calls[0], Observation("crop.png", [crop]), elapsed_s=0.5))
    steps.append(model(2, call_text("image_search", {"image_paths": ["crop.png"]}, "Search for the sign.")))
    steps.append(ToolStep(3, steps[2].calls[0], Observation(
        "1. Café Zürich — the sign of a café\n2. Zürich old town", thumbs,
        data={"results": [{"url": "https://example.org/a"}]}), elapsed_s=1.25))
    if not hosted:
        steps.append(model(4, call_text("web_visit", {"urls": ["http://127.0.0.1/"]}, "Open the page.")))
        steps.append(ToolStep(5, steps[4].calls[0], Observation("", [], error="refused: a loopback address"),
                              elapsed_s=0.01))
        steps.append(NoteStep(6, "The tool-call budget is used up: give your final answer now.", "budget"))
    final = f"<think>\nThe crop and the search agree.\n</think>\n<answer>{ANSWER}</answer>"
    steps.append(model(len(steps), final))
    return photo, steps


def write_sample(path: Path, hosted: bool = False) -> Path:
    """Write the sample run to `path` with TrajectoryWriter, as the agent does."""
    photo, steps = sample_steps(path.parent, hosted)
    header = Header(QUESTION, [photo], model={"name": "scripted"}, mode="deepresearch",
                    system_prompt="You are a test.", tools=[{"name": "code", "settings": {}}])
    with TrajectoryWriter(path, header) as w:
        for s in steps:
            w.write(s)
        w.finish(End("answered", ANSWER, 2.5, {"prompt_tokens": 400, "completion_tokens": 90}))
    return path


def essence(step: Step) -> dict[str, Any]:
    """What must survive a round trip through another format: text, segments, calls, results, image bytes."""
    if isinstance(step, ModelStep):
        return {"type": "model", "index": step.index, "text": step.text,
                "segments": [s.to_json() for s in step.segments]}
    if isinstance(step, ToolStep):
        o = step.observation
        return {"type": "tool", "index": step.index, "call": step.call.to_json(), "text": o.text, "error": o.error,
                "images": [hashlib.sha256(im.path.read_bytes()).hexdigest() for im in o.images],
                "kinds": [im.provenance.kind for im in o.images]}
    return {"type": "note", "index": step.index, "text": step.text}
