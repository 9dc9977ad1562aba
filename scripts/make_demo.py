"""Build the bundled demonstration: an input picture and a hand-written trajectory over it.

The model turns are written by hand (the project has no trained model yet); the tool
result is real: the agent runs the demo's code in the code tool's sandbox, so a
replay with the live code tool gives the same crop. Run: python scripts/make_demo.py
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from r1v4_nb.agent import Agent
from r1v4_nb.models.replay import ScriptedModel
from r1v4_nb.tools.code import CodeTool

OUT = Path(__file__).resolve().parent.parent / "r1v4_nb" / "demo"
BOX = (1345, 690, 1515, 790)


def draw_street() -> Image.Image:
    """A 1600x1000 street front; the year on the bakery's small plaque is too small to read at full view."""
    im = Image.new("RGB", (1600, 1000), (150, 190, 230))
    d = ImageDraw.Draw(im)
    d.rectangle((0, 860, 1600, 1000), fill=(90, 90, 95))
    for x0, colour in ((40, (170, 90, 70)), (560, (200, 180, 140)), (1080, (120, 140, 110))):
        d.rectangle((x0, 260, x0 + 480, 860), fill=colour)
        for wx in range(x0 + 40, x0 + 440, 110):
            for wy in (320, 460):
                d.rectangle((wx, wy, wx + 70, wy + 90), fill=(230, 235, 240), outline=(60, 60, 60), width=4)
    d.rectangle((1200, 630, 1310, 860), fill=(80, 50, 30))  # the bakery door
    big = ImageFont.load_default(size=44)
    small = ImageFont.load_default(size=13)
    d.rectangle((1110, 560, 1530, 612), fill=(250, 240, 220), outline=(40, 30, 20), width=3)
    d.text((1150, 563), "MARLOW BAKERY", fill=(120, 40, 20), font=big)
    d.rectangle(BOX, fill=(200, 170, 60), outline=(60, 40, 10), width=2)
    d.text((BOX[0] + 52, BOX[1] + 30), "EST. 1897", fill=(40, 20, 10), font=small)
    d.text((BOX[0] + 38, BOX[1] + 54), "ovens lit daily", fill=(40, 20, 10), font=small)
    return im


CODE = (
    "from PIL import Image\n"
    f"plaque = image_1.crop({BOX})\n"
    "zoom = plaque.resize((plaque.width * 4, plaque.height * 4), Image.LANCZOS)\n"
    "zoom.save('plaque_zoom.png')\n"
    "print('plaque_zoom.png')"
)

TURN_1 = (
    "<think>The question asks for the year on the small plaque beside the bakery door. The plaque is the "
    "yellow rectangle to the right of the door, around x 1345-1515, y 690-790; its text is far too small "
    "to read at this scale, so I will crop it and enlarge it four times.</think>"
    "<tool_call>" + json.dumps({"name": "code", "arguments": {"code": CODE}}) + "</tool_call>"
)
TURN_2 = (
    "<think>The enlarged plaque reads \"EST. 1897\" with \"ovens lit daily\" underneath. So the bakery was "
    "established in 1897.</think><answer>1897</answer>"
)


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    street = Path(tempfile.mkdtemp()) / "street.png"  # the trajectory keeps its own copy, named by hash
    draw_street().save(street)
    # The model turns are hand-written; the tool result is real: the code tool runs the demo's code.
    model = ScriptedModel([TURN_1, TURN_2], name="hand-written demonstration")
    agent = Agent(model, tools=[CodeTool()], mode="general", runs_dir=OUT)
    result = agent.ask("What year is written on the small plaque next to the bakery door?", [street],
                       out=OUT / "demo.jsonl",
                       meta={"source": "hand-written demonstration: model turns written by hand, not by a model",
                             "gold": "1897"})
    assert result.answer == "1897", result.reason
    print(f"wrote {result.path}")


if __name__ == "__main__":
    main()
