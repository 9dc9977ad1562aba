"""Build the bundled demonstrations: an input picture and a hand-written trajectory over it, per mode.

- general (demo.jsonl): crop and enlarge a plaque too small to read, then answer.
- deepresearch (deepresearch.jsonl): crop a piece out of a gallery photo, reverse-search the crop,
  read the piece's page, search for its maker, read the birthplace's page, then answer.

The model turns are written by hand (the project has no trained model yet); every tool result is
real: the agent runs the turns' calls through the code tool's sandbox and the offline search tools
over the generated demo world, so a replay with the live tools gives the same observations.
Run: python scripts/make_demo.py [general|deepresearch]  (default: both)
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from r1v4_nb.agent import Agent, RunResult
from r1v4_nb.models.replay import ScriptedModel
from r1v4_nb.tools.code import CodeTool

OUT = Path(__file__).resolve().parent.parent / "r1v4_nb" / "demo"
SOURCE = "hand-written demonstration: model turns written by hand, not by a model"


def call(name: str, **arguments: Any) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


def record(name: str, agent: Agent, question: str, picture: Image.Image, picture_name: str, gold: str) -> RunResult:
    """Run the scripted agent on `picture` into OUT/<name>.jsonl (replacing that demo only)."""
    out = OUT / f"{name}.jsonl"
    out.unlink(missing_ok=True)
    shutil.rmtree(out.with_suffix(".images"), ignore_errors=True)
    path = Path(tempfile.mkdtemp()) / picture_name
    picture.save(path)  # the trajectory keeps its own copy, named by hash
    result = agent.ask(question, [path], out=out, meta={"source": SOURCE, "gold": gold})
    assert result.answer == gold, (result.reason, result.answer)
    print(f"wrote {result.path}")
    return result


# -- general: read a plaque ----------------------------------------------------------------------

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
    "to read at this scale, so I will crop it and enlarge it four times.</think>" + call("code", code=CODE)
)
TURN_2 = (
    "<think>The enlarged plaque reads \"EST. 1897\" with \"ovens lit daily\" underneath. So the bakery was "
    "established in 1897.</think><answer>1897</answer>"
)


def build_general() -> None:
    model = ScriptedModel([TURN_1, TURN_2], name="hand-written demonstration")
    agent = Agent(model, tools=[CodeTool()], mode="general", runs_dir=OUT)
    record("demo", agent, "What year is written on the small plaque next to the bakery door?", draw_street(),
           "street.png", "1897")


# -- deepresearch: a piece in a glass case -> its page -> its maker -> the maker's birthplace ------

PIECE = "motho_music_box"  # world slugs: the piece in the case, and an unrelated portrait on the wall
PORTRAIT = "garka_quiquiru"
PIECE_AT = (950, 330)  # where the piece's picture (240x180) sits in the 1400x900 photo
CASE_CROP = (940, 320, 1200, 520)


def draw_gallery(media: Path) -> Image.Image:
    """A 1400x900 gallery: a large framed portrait, a vase on a plinth, and the piece small inside a glass case."""
    im = Image.new("RGB", (1400, 900), (222, 212, 192))
    d = ImageDraw.Draw(im)
    d.rectangle((0, 0, 1400, 70), fill=(200, 190, 170))
    d.rectangle((0, 640, 1400, 900), fill=(132, 96, 62))
    for y in range(660, 900, 40):
        d.line((0, y, 1400, y), fill=(112, 80, 50), width=3)
    d.rectangle((0, 628, 1400, 646), fill=(90, 70, 50))
    label = ImageFont.load_default(size=14)
    d.rectangle((110, 150, 470, 435), fill=(176, 140, 60), outline=(110, 80, 30), width=6)
    im.paste(Image.open(media / f"{PORTRAIT}.png").convert("RGB").resize((300, 225)), (140, 180))
    d.rectangle((230, 460, 350, 490), fill=(245, 240, 228))
    d.text((244, 467), "gallery loan", fill=(60, 50, 40), font=label)
    d.rectangle((160, 700, 560, 730), fill=(70, 45, 25))  # a bench
    for x in (180, 520):
        d.rectangle((x, 730, x + 20, 800), fill=(60, 40, 20))
    d.rectangle((600, 470, 720, 660), fill=(236, 232, 224), outline=(150, 140, 130), width=3)  # vase plinth
    d.ellipse((625, 380, 695, 470), fill=(60, 90, 140))
    d.rectangle((648, 360, 672, 390), fill=(60, 90, 140))
    d.rectangle((880, 560, 1260, 720), fill=(236, 232, 224), outline=(150, 140, 130), width=3)  # case plinth
    d.rectangle((900, 250, 1240, 560), fill=(205, 222, 228), outline=(80, 90, 95), width=5)  # the glass case
    im.paste(Image.open(media / f"{PIECE}.png").convert("RGB").resize((240, 180)), PIECE_AT)
    d.line((912, 262, 960, 262), fill=(250, 252, 255), width=3)  # glints on the glass
    d.line((1228, 420, 1228, 540), fill=(250, 252, 255), width=3)
    d.rectangle((1020, 585, 1120, 605), fill=(245, 240, 228))
    d.text((1030, 587), "case 14", fill=(60, 50, 40), font=label)
    return im


CASE_CODE = (
    f"piece = image_1.crop({CASE_CROP})\n"
    "piece.save('case_14.png')\n"
    "print('case_14.png')"
)
PIECE_URL = f"https://atlas.r1v4.test/wiki/{PIECE}"
BIRTHPLACE_URL = "https://atlas.r1v4.test/wiki/yordan"

DR_QUESTION = "In what year was the birthplace of the maker of the piece in the glass case founded?"
DR_TURNS = [
    "<think>The photo shows a gallery: a large framed portrait on the left wall, a blue vase on a plinth in "
    "the middle, and on the right a glass case labelled \"case 14\" with a picture-like piece inside, roughly "
    "x 950-1190, y 330-510. The question is about the piece in the case, and nothing in the photo names it, so "
    "I will need a reverse image search. Searching the whole photo would mostly match the big portrait, so I "
    "will first crop the case's contents, with a small margin, into a picture of their own.</think>"
    + call("code", code=CASE_CODE),
    "<think>The crop shows the piece alone, inside a thin strip of the case's pale glass: an olive-green "
    "many-sided shape with a pale pink ring and a bright green core, on a blue-violet ground crossed by thin "
    "coloured lines. Now I search for pages that show this picture.</think>" + call("image_search", image_paths=["case_14.png"]),
    "<think>The top match for the crop is the page of The Motho Music Box, with a high similarity. To find "
    "who made it I will read that page.</think>" + call("web_visit", urls=[PIECE_URL], goal="who made the Motho Music Box"),
    "<think>The page says the Motho Music Box is a glass music box made in 1747 by Brako Selfen, and that it "
    "is kept in Ixen today. Ixen is where the box is kept, not where its maker was born, so I still need Brako "
    "Selfen's birthplace. I will search for it.</think>"
    + call("text_search", queries=["Brako Selfen birthplace"]),
    "<think>The top result, Brako Selfen's own page, says he was an instrument maker from Yordan, and the "
    "Yordan result lists him among the people born there. That snippet also shows a founding year, but "
    "snippets are cut from the middle of pages, so I will confirm it on Yordan's page.</think>"
    + call("web_visit", urls=[BIRTHPLACE_URL], goal="when was Yordan founded"),
    "<think>Yordan's page says it is a valley hamlet in the Lowmarch, founded in 1409. The chain holds: case 14 "
    "shows the Motho Music Box, made by Brako Selfen, who was born in Yordan, founded in 1409.</think>"
    "<answer>1409</answer>",
]


def build_deepresearch() -> None:
    from r1v4_nb.tools.base import ToolContext
    from r1v4_nb.tools.image_search import ImageSearchTool
    from r1v4_nb.tools.search import TextSearchTool
    from r1v4_nb.tools.web import WebVisitTool
    from r1v4_nb.world import ensure_world

    world = ensure_world(quiet=False)
    facts = {e["url"]: e for e in world.load_entities()}
    maker = facts[facts[PIECE_URL]["links"]["made_by"]]
    birthplace = facts[maker["links"]["born_in"]]
    assert birthplace["url"] == BIRTHPLACE_URL, "the world changed: rewrite the hand-written turns"
    gold = str(birthplace["facts"]["founded"])
    gallery = draw_gallery(world.root / "media")

    # off: every observation is computed now, from the world, not served from an older cache
    tools = [CodeTool(), ImageSearchTool(cache_mode="off"), TextSearchTool(cache_mode="off"),
             WebVisitTool(cache_mode="off")]
    model = ScriptedModel(DR_TURNS, name="hand-written demonstration")
    agent = Agent(model, tools=tools, mode="deepresearch", runs_dir=OUT)
    result = record("deepresearch", agent, DR_QUESTION, gallery, "gallery.png", gold)

    # The turns cite what the observations say; check that they still do.
    obs = [s.observation for s in result.trajectory.tool_steps]
    assert [m["url"] for m in obs[1].data["matches"]][:1] == [PIECE_URL], obs[1].text
    assert f"by {maker['title']}" in obs[2].text, obs[2].text
    assert f"from {birthplace['title']}" in obs[3].text, obs[3].text
    assert f"founded in {gold}" in obs[4].text, obs[4].text
    # The crop matters: a search of the whole photo does not find the piece.
    whole = ImageSearchTool(cache_mode="off")
    ctx = ToolContext("check", Path(tempfile.mkdtemp()))
    ctx.register_image(result.trajectory.header.images[0], "image_1")
    found = [m["url"] for m in whole.run({"image_paths": ["image_1"]}, ctx).data["matches"]]
    assert PIECE_URL not in found, found


BUILDERS = {"general": build_general, "deepresearch": build_deepresearch}


def main(argv: list[str]) -> None:
    names = argv or list(BUILDERS)
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        sys.exit(f"unknown demo {unknown[0]!r}; choose from: {', '.join(BUILDERS)}")
    for name in names:
        BUILDERS[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
