"""The agent loop's own cost per step: parse + events + recording, with a scripted model and a free tool.

Prints the overhead per step (a model turn or a tool step, as the trajectory counts them) and per model
turn with its tool step, for runs of 5, 20, 80 and 320 turns: it must stay under 2 ms a step and flat in
the run's length (the context grows by each new step's messages instead of being rebuilt every turn).
Run: .venv/bin/python benchmarks/overhead.py [--turns 5 20 80 320] [--chunks 4 32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from r1v4_nb.agent import Agent, Budgets
from r1v4_nb.models.replay import ScriptedModel
from r1v4_nb.records import Observation
from r1v4_nb.tools.base import Tool, ToolContext


class Echo(Tool):
    """A tool that costs nothing, so the figure is the loop's own overhead."""

    name = "code"
    description = "echo"
    parameters = {"type": "object", "required": ["code"]}

    def run(self, arguments: dict, ctx: ToolContext) -> Observation:
        return Observation(text=f"ran {len(arguments['code'])} characters")


def turns(n: int) -> list[str]:
    code = "img = image_1.crop((10, 10, 200, 200))\nprint(img.size)\n" * 3
    call = json.dumps({"name": "code", "arguments": {"code": code}})
    body = ("<think>" + "I look at the region near the top left and crop it to read the label. " * 6
            + "</think><tool_call>" + call + "</tool_call>")
    return [body] * (n - 1) + ["<think>Done.</think><answer>42</answer>"]


def per_step_ms(n: int, chunk: int, repeat: int = 3) -> tuple[float, float]:
    """Best-of-`repeat` milliseconds per step and per model turn (a turn plus the tool step it asks for)."""
    best = float("inf")
    steps = 0
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as d:
            agent = Agent(ScriptedModel(turns(n), chunk=chunk), tools=[Echo()],
                          budgets=Budgets(max_steps=n + 1, max_tool_calls=n + 1, max_total_tokens=10**9),
                          runs_dir=d)
            t0 = time.perf_counter()
            events = list(agent.run("What is written on the label?"))
            elapsed = time.perf_counter() - t0
            assert events[-1].answer == "42", events[-1].reason
            steps = 2 * n - 1
            best = min(best, elapsed)
    return best * 1000 / steps, best * 1000 / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, nargs="+", default=[5, 20, 80, 320])
    ap.add_argument("--chunks", type=int, nargs="+", default=[4, 32])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print("a turn of ~700 characters streamed in chunks, then a tool step; the figures exclude reading back")
    print(f"load average {os.getloadavg()[0]:.1f}; goal: < 2 ms a step, flat in the run's length")
    print(f"{'model turns':>11} {'chunk':>6} {'ms/step':>8} {'ms/turn+tool':>13}")
    rows: dict[int, list[float]] = {}
    for n in args.turns:
        for chunk in args.chunks:
            ms, ms_turn = per_step_ms(n, chunk, args.repeat)
            rows.setdefault(chunk, []).append(ms)
            print(f"{n:>11} {chunk:>6} {ms:>8.3f} {ms_turn:>13.3f}")
    worst = max(max(v) for v in rows.values())
    growth = max(v[-1] / v[0] for v in rows.values())
    print(f"worst overhead per step: {worst:.3f} ms (target < 2 ms); longest / shortest run per step: "
          f"{growth:.2f}x (flat: ~1)")
    return 0 if worst < 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
