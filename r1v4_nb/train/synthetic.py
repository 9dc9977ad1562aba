"""Small synthetic R1V4-style trajectories for tutorials, tests and benchmarks.

Each task is a picture with one coloured shape; the model thinks, crops the
shape with the code tool (the crop comes back as an image inside the
observation), may run a text search, and answers with the colour. Variants
give the failure cases the filters must catch: a wrong answer, a tool error,
a repeated crop. Everything is drawn with PIL and written with
`r1v4_nb.trajectory.write`, so the files are ordinary trajectories.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ..dialects import get_dialect
from ..images import Image, Provenance
from ..records import ModelStep, Observation, ToolCall, ToolStep
from ..trajectory import End, Header, Trajectory, write

COLOURS = {"red": (220, 30, 30), "green": (30, 160, 60), "blue": (30, 60, 220), "yellow": (230, 200, 20),
           "purple": (140, 40, 170), "orange": (240, 130, 20)}
VARIANTS = ("clean", "search", "wrong", "tool_error", "recrop")
SYSTEM = "Think inside <think></think>, crop and zoom with the code tool when a detail is small, " \
         "and give the final answer inside <answer></answer>."


def _model_step(index: int, text: str) -> ModelStep:
    return ModelStep(index, text, get_dialect("r1v4").parse(text), finish_reason="stop")


def _code_call(box: tuple[int, int, int, int]) -> tuple[str, ToolCall]:
    code = f"crop = image_1.crop({box})\ncrop = crop.resize((crop.width * 2, crop.height * 2))\n" \
           "crop.save('crop.png')\nprint('crop.png')"
    call = ToolCall("code", {"code": code})
    return json.dumps({"name": "code", "arguments": {"code": code}}), call


def make_task(folder: str | Path, index: int, variant: str = "clean", seed: int = 0,
              size: tuple[int, int] = (96, 64), system_prompt: str = SYSTEM) -> Trajectory:
    """One synthetic trajectory (in memory; its images are written into `folder`)."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    rng = random.Random(seed * 1000 + index)
    folder = Path(folder)
    name, rgb = rng.choice(sorted(COLOURS.items()))
    w, h = size
    x0, y0 = rng.randrange(4, w - 28), rng.randrange(4, h - 28)
    box = (x0, y0, x0 + 24, y0 + 24)
    pic = PILImage.new("RGB", size, (245, 245, 240))
    ImageDraw.Draw(pic).rectangle(box, fill=rgb)
    shape = rng.choice(["square", "box", "tile"])
    source = Image.from_pil(pic, folder, Provenance("input", name="image_1"))
    crop = Image.from_pil(pic.crop(box).resize((48, 48)), folder,
                          Provenance("code", step=1, source=source.sha256, box=list(box), name="crop.png"))
    header = Header(question=f"What colour is the {shape} in the picture? Answer with one word.",
                    images=[source], mode="general", system_prompt=system_prompt,
                    tools=[{"name": "code", "settings": {}}, {"name": "text_search", "settings": {}}], meta={"gold": name, "task": f"colour-{index}"})
    call_json, call = _code_call(box)
    steps: list = [_model_step(0, f"<think>The {shape} is small. I crop it and zoom in before deciding."
                                  f"</think><tool_call>{call_json}</tool_call>")]
    if variant == "tool_error":
        steps.append(ToolStep(1, call, Observation("", error="NameError: name 'image_1' is not defined")))
    else:
        steps.append(ToolStep(1, call, Observation("crop.png", images=[crop])))
    if variant == "recrop":
        steps.append(_model_step(2, f"<think>Let me crop the same place again to be sure.</think>"
                                    f"<tool_call>{call_json}</tool_call>"))
        steps.append(ToolStep(3, call, Observation("crop.png", images=[crop])))
    if variant == "search":
        query = f"{name} colour name"
        q_json = json.dumps({"name": "text_search", "arguments": {"queries": [query]}})
        steps.append(_model_step(len(steps), f"<think>The crop looks {name}. I check the colour name."
                                             f"</think><tool_call>{q_json}</tool_call>"))
        steps.append(ToolStep(len(steps), ToolCall("text_search", {"queries": [query]}),
                              Observation(f"1. {name.title()} - a colour. {name} is a basic colour term.")))
    answer = name if variant != "wrong" else rng.choice([c for c in COLOURS if c != name])
    steps.append(_model_step(len(steps), f"<think>The zoomed crop is clearly {answer}.</think>"
                                         f"<answer>{answer}</answer>"))
    return Trajectory(header, steps, End("answered", answer))


def make_dataset(out_dir: str | Path, n: int = 8, variants: tuple[str, ...] = ("clean", "search"),
                 seed: int = 0, system_prompt: str = SYSTEM) -> list[Path]:
    """Write `n` synthetic trajectories into `out_dir` (variants taken in turn) and return their paths."""
    import tempfile

    out = Path(out_dir)
    paths = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            traj = make_task(tmp, i, variants[i % len(variants)], seed, system_prompt=system_prompt)
            paths.append(write(out / f"task-{i:03d}.jsonl", traj))
    return paths
