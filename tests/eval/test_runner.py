"""The runner: run folders, resume after a real SIGKILL, concurrency against an endpoint, offline replay."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from r1v4_nb.errors import UsageError
from r1v4_nb.eval.runner import read_results, run
from r1v4_nb.eval.tasks import Task, load_tasks
from r1v4_nb.models.replay import ScriptedModel
from r1v4_nb.trajectory import read
from tests.support.eval import LoopbackServer, user_text

TIMING = ("wall_s", "model_s", "tool_s")


def _tasks(tmp_path: Path, n: int) -> Path:
    (tmp_path / "img").mkdir(exist_ok=True)
    rows = []
    for i in range(n):
        Image.new("RGB", (24, 16), (10 * i, 0, 0)).save(tmp_path / "img" / f"{i}.png")
        rows.append({"id": f"t{i:02d}", "question": f"What is code {i}?", "images": [f"img/{i}.png"],
                     "answer": f"K{i}", "category": "even" if i % 2 == 0 else "odd", "split": "test"})
    rows.append({"id": "mc", "question": "Which colour?", "images": ["img/0.png"], "answer": "B",
                 "choices": {"A": "blue", "B": "red"}, "category": "mc", "split": "test"})
    f = tmp_path / "tasks.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def _reply(messages: list) -> str:
    """A scripted endpoint model: right on even codes, wrong on odd ones, 'red' on the colour question."""
    q = user_text(messages[:2])
    m = re.search(r"code (\d+)", q)
    if m is None:
        return "<think>It looks red.</think><answer>Answer: B) red</answer>"
    i = int(m.group(1))
    return f"<think>I read the code.</think><answer>K{i if i % 2 == 0 else i + 100}</answer>"


def _strip(records: list[dict]) -> dict:
    return {(r["id"], r["mode"]): {k: v for k, v in r.items() if k not in TIMING} for r in records}


def test_run_folder_records_report_and_trajectories(tmp_path: Path) -> None:
    tasks = load_tasks(_tasks(tmp_path, 4), image_dir=tmp_path / "ic")

    def model_for(task: Task, mode: str) -> ScriptedModel:
        if mode == "general" and task.id == "t00":  # one item looks at the image with code first
            return ScriptedModel(['<think>Check the size.</think><code>print(image_1.size)</code>',
                                  "<think>Fine.</think><answer>K0</answer>"])
        return ScriptedModel([_reply([{"role": "system", "content": ""},
                                      {"role": "user", "content": task.prompt()}])])

    res = run(tasks, model_for, modes="direct,general", out=tmp_path / "run", progress=None, seed=7)
    recs = read_results(tmp_path / "run")
    assert len(recs) == 10 and {r["mode"] for r in recs} == {"direct", "general"}
    r0 = next(r for r in recs if r["id"] == "t00" and r["mode"] == "general")
    assert r0["correct"] is True and r0["answer"] == "K0" and r0["gold"] == "K0" and r0["tool_calls"] == {"code": 1}
    assert r0["turns"] == 2 and r0["scorer"] == "auto:normalised" and r0["end"] == "answered"
    traj = read(tmp_path / "run" / r0["trajectory"])
    assert traj.header.meta["task"] == "t00" and traj.header.mode == "general"
    assert "(24, 16)" in traj.tool_steps[0].observation.text
    mc = next(r for r in recs if r["id"] == "mc" and r["mode"] == "direct")
    assert mc["correct"] and mc["extracted"] == "B"
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["modes"]["direct"]["accuracy"] == pytest.approx(3 / 5)
    assert report["modes"]["general"]["by_category"]["odd"]["accuracy"] == 0.0
    assert report["modes"]["general"]["tool_calls_per_tool"] == {"code": 0.2}
    assert res.accuracy("direct") == pytest.approx(0.6)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["modes"] == ["direct", "general"] and manifest["tasks"]["count"] == 5
    assert (tmp_path / "run" / "report.md").read_text().startswith("# Evaluation")
    assert (tmp_path / "run" / "plots" / "summary.png").is_file()
    direct = read(tmp_path / "run" / "trajectories" / "direct" / "t01.jsonl")
    assert "without tools" in direct.header.system_prompt and direct.header.tools == []
    with pytest.raises(UsageError, match="already holds an eval run"):
        run(tasks, model_for, modes="direct,general", out=tmp_path / "run", progress=None, seed=7)
    with pytest.raises(UsageError, match="seed differ"):
        run(tasks, model_for, modes="direct,general", out=tmp_path / "run", progress=None, seed=8, resume=True)
    again = run(tasks, model_for, modes="direct,general", out=tmp_path / "run", progress=None, seed=7, resume=True)
    assert len(again.results) == 10  # nothing left to do
    with pytest.raises(UsageError, match="unknown mode"):
        run(tasks, model_for, modes="plan", out=tmp_path / "x", progress=None)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "r1v4_nb.cli", "eval", "run", *args]


def test_kill_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    tasks = _tasks(tmp_path, 11)
    with LoopbackServer(_reply, model="scripted", latency_s=0.15) as srv:
        common = [str(tasks), "--endpoint", srv.url, "--modes", "direct", "--concurrency", "2", "--quiet"]
        whole = subprocess.run(_cli(*common, "--out", str(tmp_path / "whole")), capture_output=True, text=True,
                               timeout=300)
        assert whole.returncode == 0, whole.stderr
        killed_dir = tmp_path / "killed"
        proc = subprocess.Popen(_cli(*common, "--out", str(killed_dir)), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 240
        results = killed_dir / "results.jsonl"
        while time.monotonic() < deadline:
            if results.is_file() and results.read_text().count("\n") >= 3:
                break
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        at_kill = len(read_results(killed_dir))
        assert 3 <= at_kill < 12 and not (killed_dir / "report.json").exists()
        resumed = subprocess.run(_cli(*common, "--out", str(killed_dir), "--resume"), capture_output=True,
                                 text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        again = subprocess.run(_cli(*common, "--out", str(killed_dir)), capture_output=True, text=True)
        assert again.returncode == 2 and "--resume" in again.stderr and again.stderr.count("\n") == 1
        assert len(srv.requests) >= 12 + 12 - at_kill
    a, b = read_results(tmp_path / "whole"), read_results(killed_dir)
    assert len(a) == len(b) == 12
    assert _strip(a) == _strip(b)
    ra = json.loads((tmp_path / "whole" / "report.json").read_text())
    rb = json.loads((killed_dir / "report.json").read_text())
    assert ra["modes"]["direct"]["accuracy"] == rb["modes"]["direct"]["accuracy"] == pytest.approx(7 / 12)
    manifest = json.loads((killed_dir / "manifest.json").read_text())
    assert manifest["concurrency"]["used"] == 2 and len(manifest["resumed"]) == 1
    assert manifest["model"]["backend"] == "openai"


def _research(messages: list) -> str:
    """A scripted deepresearch model: search the world's corpus once, then answer with the first title."""
    def text(m: dict) -> str:
        c = m["content"]
        return c if isinstance(c, str) else " ".join(p.get("text", "") for p in c if p.get("type") == "text")

    results = [text(m) for m in messages if m["role"] == "tool" or "<observation>" in text(m)]
    if results:
        m = re.search(r"\[1\.1\] ([^\n\\]+)", results[-1])
        return f"<think>The first result.</think><answer>{m.group(1).strip() if m else 'nothing'}</answer>"
    q = user_text(messages[:2]).split("\n")[0]
    return ('<think>Search for it.</think><tool_call>{"name": "text_search", "arguments": {"queries": ["'
            + q.replace('"', "") + '"]}}</tool_call>')


def test_offline_replay_from_a_read_only_cache_gives_identical_scores(tmp_path: Path) -> None:
    from r1v4_nb.world import ensure_world

    world = ensure_world()
    tasks = load_tasks(world.questions, limit=3, image_dir=tmp_path / "ic")
    cache = tmp_path / "tools.sqlite"
    with LoopbackServer(_research, model="scripted") as srv:
        first = run(tasks, endpoint=srv.url, modes=["deepresearch"], out=tmp_path / "live", cache=cache,
                    progress=None, tools=_search_only(cache, "read-write"))
    assert all(r["tool_calls"] == {"text_search": 1} and r["tool_errors"] == 0 for r in first.results)
    assert all(r["answer"] and r["answer"] != "nothing" for r in first.results)
    replayed = run(tasks, replay=tmp_path / "live", modes=["deepresearch"], out=tmp_path / "offline", cache=cache,
                   cache_mode="read-only", progress=None, tools=_search_only(cache, "read-only"))
    assert _scores(first.results) == _scores(replayed.results)
    assert all(r["tool_errors"] == 0 for r in replayed.results)
    a = read(tmp_path / "live" / first.results[0]["trajectory"])
    b = read(tmp_path / "offline" / replayed.results[0]["trajectory"])
    assert a.tool_steps[0].observation.text == b.tool_steps[0].observation.text
    empty = tmp_path / "empty.sqlite"
    missing = run(tasks, replay=tmp_path / "live", modes=["deepresearch"], out=tmp_path / "nocache", progress=None,
                  tools=_search_only(empty, "read-only"))
    assert all(r["tool_errors"] == 1 for r in missing.results)  # a miss is an 'offline, not cached' observation


def _search_only(cache: Path, mode: str):
    from r1v4_nb.tools.registry import build_tool

    return lambda _mode: [build_tool("text_search", cache=cache, cache_mode=mode)]


def _scores(records: list[dict]) -> dict:
    return {(r["id"], r["mode"]): (r["correct"], r["answer"], r["score_reason"]) for r in records}


def test_run_needs_a_model_and_valid_settings(tmp_path: Path) -> None:
    tasks = load_tasks(_tasks(tmp_path, 1), image_dir=tmp_path / "ic")
    with pytest.raises(UsageError, match="no model given"):
        run(tasks, out=tmp_path / "a", progress=None)
    with pytest.raises(UsageError, match="concurrency"):
        run(tasks, ScriptedModel([]), concurrency=0, out=tmp_path / "b", progress=None)
    bad = subprocess.run(_cli(str(tmp_path / "tasks.jsonl"), "--out", str(tmp_path / "c")), capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "exactly one of --model" in bad.stderr
