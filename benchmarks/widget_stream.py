"""Bytes over the widget comm: a streamed 2,000-token turn (and 4,000, to show linearity), a 20-step replay;
and the time to build the replay view of a 50-step trajectory: the first view ever (empty disk cache), in a fresh
kernel (thumbnails on disk, nothing in memory) and warm.

Counts the JSON payload of every message RunView sends (what the patches cost; the Jupyter message envelope,
a few hundred bytes a message, comes on top and is reported from the message count).

    .venv/bin/python benchmarks/widget_stream.py [--replay-only]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from r1v4_nb.agent import Agent, Budgets
from r1v4_nb.dialects import get_dialect
from r1v4_nb.events import RunStarted, TurnFinished
from r1v4_nb.images import Image, Provenance
from r1v4_nb.models.replay import ScriptedModel
from r1v4_nb.records import ModelStep, Observation, ToolStep
from r1v4_nb.trajectory import End, Header, TrajectoryWriter, input_image, read
from r1v4_nb.ui.widget import RunView

ENVELOPE = 600  # bytes of a typical comm_msg header + parent header + metadata, for the estimate

WORDS = ("the plaque beside the door is small so I crop the region and enlarge it to read the year "
         "then I compare the letters with the sign above the window").split()


def turn_text(tokens: int) -> str:
    """A model turn of about `tokens` words: 70% thinking, 30% code in a tool call."""
    think = " ".join(WORDS[i % len(WORDS)] for i in range(int(tokens * 0.7)))
    lines = [f"crop_{i} = image_1.crop(({i}, {i + 10}, {i + 200}, {i + 150}))  # region {i}"
             for i in range(int(tokens * 0.3) // 6)]
    call = json.dumps({"name": "code", "arguments": {"code": "\n".join(lines)}})
    return f"<think>{think}</think><tool_call>{call}</tool_call>"


def streamed_bytes(tokens: int, photo: Path, folder: Path, delay_s: float) -> tuple[int, int, int]:
    """(payload bytes, messages, text bytes) sent while one turn of `tokens` streams."""
    text = turn_text(tokens)
    model = ScriptedModel([text, "<answer>done</answer>"], chunk=4, delay_s=delay_s)
    agent = Agent(model, tools=[], runs_dir=folder, budgets=Budgets(max_tokens_per_turn=10 * tokens,
                                                                     max_total_tokens=100 * tokens))
    view = RunView()
    start_bytes = start_msgs = 0
    result = None
    for ev in agent.run("What year is on the plaque?", [photo]):
        view.apply(ev)
        if isinstance(ev, RunStarted):  # the question card (with its thumbnail) is not streaming traffic
            view.flush()
            start_bytes, start_msgs = view.bytes_sent, view.messages_sent
        if isinstance(ev, TurnFinished) and ev.step.index == 0:
            view.flush()
            result = (view.bytes_sent - start_bytes, view.messages_sent - start_msgs, len(text.encode()))
    assert result is not None
    return result


def view_seconds(tokens: int, photo: Path, folder: Path) -> float:
    """CPU time the live view spends on one streamed turn (events collected first, then applied)."""
    model = ScriptedModel([turn_text(tokens), "<answer>done</answer>"], chunk=4)
    agent = Agent(model, tools=[], runs_dir=folder, budgets=Budgets(max_tokens_per_turn=10 * tokens,
                                                                     max_total_tokens=100 * tokens))
    events = list(agent.run("What year is on the plaque?", [photo]))
    view = RunView()
    t0 = time.perf_counter()
    for ev in events:
        view.apply(ev)
    view.flush()
    return time.perf_counter() - t0


def make_trajectory(folder: Path, steps: int, photo: Path) -> Path:
    """A recorded run of `steps` steps: model turns with code that crops, and tool steps with the crops."""
    from PIL import Image as PILImage

    src = input_image(photo)
    dialect = get_dialect("r1v4")
    w = TrajectoryWriter(folder / f"run{steps}.jsonl", Header(question="Read the plaque.", images=[src]))
    pil = PILImage.open(photo).convert("RGB")
    for k in range(steps // 2):
        box = [40 * k, 30 * k, 40 * k + 320, 30 * k + 200]
        text = (f"<think>Step {k}: look at region {box}. " + " ".join(WORDS) + "</think><tool_call>"
                + json.dumps({"name": "code", "arguments": {"code": f"im = image_1.crop({tuple(box)})\n"
                                                                    f"im.save('c{k}.png')\nprint('c{k}.png')"}})
                + "</tool_call>")
        step = ModelStep(2 * k, text, dialect.parse(text), tokens_in=500 + 50 * k, tokens_out=80, elapsed_s=1.0)
        w.write(step)
        crop = Image.from_pil(pil.crop(box).resize((640, 400)), folder / "src",
                              Provenance("code", 2 * k + 1, source=src.sha256, box=box, name=f"c{k}.png"))
        w.write(ToolStep(2 * k + 1, step.calls[0], Observation(f"c{k}.png", [crop]), elapsed_s=0.2))
    w.finish(End("no_answer", None, 10.0, {"prompt_tokens": 1000, "completion_tokens": 800}))
    return w.path


def main() -> None:
    from r1v4_nb.models.replay import DEMO_TRAJECTORY

    photo = read(DEMO_TRAJECTORY).header.images[0].path
    folder = Path(tempfile.mkdtemp(prefix="r1v4-bench-"))
    os.environ["R1V4_CACHE"] = str(folder / "cache")  # thumbnails go here, not into the user's cache
    if "--replay-only" not in sys.argv:
        stream(photo, folder)
    replay(photo, folder)


def stream(photo: Path, folder: Path) -> None:
    print("streamed turn, from the first token to the end of the turn (payload bytes / bytes of the text):")
    for tokens, delay in ((2000, 0.0), (2000, 0.001), (4000, 0.001)):
        sent, msgs, text = streamed_bytes(tokens, photo, folder, delay)
        pace = "as fast as possible" if not delay else f"{delay * 1000:.0f} ms per 4-char chunk"
        print(f"  {tokens} tokens, {pace}: text {text} B, sent {sent} B in {msgs} messages, "
              f"ratio {sent / text:.2f}x (with ~{ENVELOPE} B envelopes: {(sent + msgs * ENVELOPE) / text:.2f}x)")
    small, large = view_seconds(2000, photo, folder), view_seconds(8000, photo, folder)
    print(f"view time for a streamed turn: 2000 tokens {small:.3f} s, 8000 tokens {large:.3f} s "
          f"(ratio {large / small:.1f}; linear: ~4, quadratic: ~16)")


FRESH_VIEW = """
import sys, time
from r1v4_nb.trajectory import read
from r1v4_nb.ui.widget import RunView
import r1v4_nb.ui.highlight, r1v4_nb.ui.render  # imports are not the view's time
t0 = time.perf_counter()
view = RunView.from_trajectory(read(sys.argv[1]))
view.snapshot_html()  # what a replay shows besides the widget (the saved-notebook copy)
print(time.perf_counter() - t0)
"""


def _fresh_view(path: Path) -> float:
    """Seconds a new Python process (a fresh kernel: nothing in memory) takes to build the view and snapshot."""
    out = subprocess.run([sys.executable, "-c", FRESH_VIEW, str(path)], capture_output=True, text=True, check=True,
                         cwd=path.parent)  # not the checkout: its r1v4_nb would shadow the one being measured
    return float(out.stdout.strip().splitlines()[-1])


def replay(photo: Path, folder: Path) -> None:
    path20 = make_trajectory(folder, 20, photo)
    view = RunView.from_trajectory(read(path20))
    print(f"20-step replay: {view.bytes_sent} B in {view.messages_sent} message(s) "
          f"({len(read(path20).all_images())} images as thumbnails; image files on disk: "
          f"{sum(im.path.stat().st_size for im in read(path20).all_images())} B)")
    path50 = make_trajectory(folder, 50, photo)
    _fresh_view(path20)  # the interpreter's own first-run costs (compiled modules, file cache) are not the view's
    times = {}
    for attempt in range(3):
        os.environ["R1V4_CACHE"] = str(folder / f"cache50-{attempt}")  # an empty disk cache: the first view ever
        times.setdefault("first view ever", []).append(_fresh_view(path50))
        times.setdefault("fresh kernel", []).append(_fresh_view(path50))
    times = {k: statistics.median(v) for k, v in times.items()}
    RunView.from_trajectory(read(path50)).snapshot_html()
    t0 = time.perf_counter()
    view50 = RunView.from_trajectory(read(path50))
    view50.snapshot_html()
    times["warm"] = time.perf_counter() - t0
    cold = times["fresh kernel"]
    print(f"50-step replay view + snapshot (load {os.getloadavg()[0]:.1f}), goal < 1 s cold: "
          + ", ".join(f"{k} {v:.3f} s" for k, v in times.items())
          + f" (target: {'ok' if cold < 1 else 'MISSED'}); {view50.bytes_sent} B")


if __name__ == "__main__":
    main()
