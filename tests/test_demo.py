"""The bundled DeepResearch demonstration: `r1v4-nb demo --replay --mode deepresearch` with live tools over the world.

The world is generated once into a temporary cache folder (about 10 s), as on a user's first run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from r1v4_nb.agent import Agent
from r1v4_nb.cli.core import _diverged
from r1v4_nb.models.replay import DEMO_TRAJECTORIES, ReplayModel
from r1v4_nb.tools.registry import build_tool
from r1v4_nb.trajectory import Trajectory, read

PIECE_URL = "https://atlas.r1v4.test/wiki/motho_music_box"
SIMILARITY = re.compile(r"similarity (\d\.\d+)")


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """The demo run once in a fresh cache folder: (process, trajectory path, cache folder)."""
    home = tmp_path_factory.mktemp("demo")
    cache, out = home / "cache", home / "dr.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "R1V4_CACHE": str(cache)}
    r = subprocess.run([sys.executable, "-m", "r1v4_nb.cli", "demo", "--replay", "--mode", "deepresearch", "--out", str(out)],
                       cwd=home, capture_output=True, text=True, env=env, timeout=300)
    return r, out, cache


@pytest.mark.slow
def test_deepresearch_demo_crops_searches_reads_and_answers(first_run) -> None:
    r, out, _ = first_run
    assert r.returncode == 0, r.stdout + r.stderr
    assert "world: generating the offline demo world" in r.stderr and "world: building the image index" in r.stderr
    assert "hand-written demonstration" in r.stdout and "tools are run live" in r.stdout
    for n, name in ((1, "code"), (3, "image_search"), (5, "web_visit"), (7, "text_search"), (9, "web_visit")):
        assert f"step {n} · tool {name}" in r.stdout
    assert "answer: 1409" in r.stdout
    traj = read(out)
    assert traj.answer == "1409" and traj.end is not None and traj.end.reason == "answered"
    assert [s.type for s in traj.steps] == ["model", "tool"] * 5 + ["model"]
    assert [s.call.name for s in traj.tool_steps] == ["code", "image_search", "web_visit", "text_search", "web_visit"]
    crop = traj.tool_steps[0].observation.images
    assert len(crop) == 1 and (crop[0].width, crop[0].height) == (260, 200)
    search = traj.tool_steps[1].observation
    assert not search.error and search.data["matches"][0]["url"] == PIECE_URL
    assert search.data["matches"][0]["image"] == "case_14.png" and len(search.images) == 1


def _similarities(text: str) -> list[float]:
    return [float(x) for x in SIMILARITY.findall(text)]


@pytest.mark.slow
def _pixels(path: Path) -> tuple[str, tuple[int, int], bytes]:
    """An image as what it shows: the PNG encoder's settings may change the file's bytes, not its pixels."""
    from PIL import Image

    with Image.open(path) as im:
        return im.mode, im.size, im.tobytes()


def test_live_tools_give_the_recorded_observations(first_run, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, cache = first_run
    monkeypatch.setenv("R1V4_CACHE", str(cache))  # the world the first run generated
    recorded = read(DEMO_TRAJECTORIES["deepresearch"])
    tools = [build_tool(t["name"]) if t["name"] == "code" else build_tool(t["name"], cache_mode="off")
             for t in recorded.header.tools]
    agent = Agent(ReplayModel.from_trajectory(recorded), tools=tools, dialect=recorded.header.dialect,
                  mode=recorded.header.mode, system_prompt=recorded.header.system_prompt)
    live = agent.ask(recorded.header.question, recorded.header.images, out=cache.parent / "replay.jsonl").trajectory
    assert len(live.tool_steps) == len(recorded.tool_steps) == 5
    for want, got in zip(recorded.tool_steps, live.tool_steps, strict=True):
        a, b = want.observation, got.observation
        assert SIMILARITY.sub("", b.text) == SIMILARITY.sub("", a.text), (got.index, b.text)
        assert _similarities(b.text) == pytest.approx(_similarities(a.text), abs=0.05)
        assert [_pixels(im.path) for im in b.images] == [_pixels(im.path) for im in a.images], got.index
    assert _diverged(recorded, live) is None


def test_a_drifted_tool_result_is_reported() -> None:
    recorded = read(DEMO_TRAJECTORIES["deepresearch"])
    assert _diverged(recorded, recorded) is None
    steps = list(recorded.steps)
    at = steps.index(recorded.tool_steps[1])
    obs = replace(steps[at].observation, text=steps[at].observation.text.replace("Motho Music Box", "Other Bell"))
    steps[at] = replace(steps[at], observation=obs)
    drifted = Trajectory(recorded.header, steps, recorded.end, recorded.path)
    assert _diverged(recorded, drifted) == "the live image_search result at step 3 differs from the recorded one"
    rescored = replace(steps[at].observation, text=recorded.tool_steps[1].observation.text.replace("0.80", "0.83"))
    steps[at] = replace(steps[at], observation=rescored)
    assert _diverged(recorded, Trajectory(recorded.header, steps, recorded.end, recorded.path)) is None
    assert "tool calls" in _diverged(recorded, Trajectory(recorded.header, steps[:at], None, None))
