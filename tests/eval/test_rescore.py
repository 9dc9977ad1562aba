"""Re-scoring without a model: a run folder with another scorer, and trajectories recorded elsewhere."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from r1v4_nb.agent import Agent
from r1v4_nb.errors import UsageError
from r1v4_nb.eval.rescore import rescore
from r1v4_nb.eval.runner import read_results, run
from r1v4_nb.eval.tasks import load_tasks
from r1v4_nb.models.replay import ScriptedModel


def _tasks(tmp_path: Path) -> Path:
    rows = [{"id": "a", "question": "Code?", "answer": "K7"}, {"id": "b", "question": "Maker?", "answer": "Ada"},
            {"id": "c", "question": "Year?", "answer": "1204"}]
    f = tmp_path / "tasks.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


ANSWERS = {"a": "k7", "b": "Ada Lovelace", "c": "in 1204"}


def _model(task, mode):
    return ScriptedModel([f"<think>Sure.</think><answer>{ANSWERS[task.id]}</answer>"])


def test_rescore_a_run_in_place_with_another_scorer(tmp_path: Path) -> None:
    tasks = _tasks(tmp_path)
    first = run(load_tasks(tasks), _model, modes=["direct"], out=tmp_path / "run", progress=None)
    assert {r["id"]: r["correct"] for r in first.results} == {"a": True, "b": False, "c": True}
    exact = rescore(tmp_path / "run", scorer="exact")
    assert {r["id"]: r["correct"] for r in exact.results} == {"a": False, "b": False, "c": False}
    f1 = rescore(tmp_path / "run", scorer="f1")
    assert {r["id"]: r["correct"] for r in f1.results} == {"a": True, "b": True, "c": True}  # F1 2/3 each
    assert json.loads((tmp_path / "run" / "report.json").read_text())["modes"]["direct"]["mean_score"] == pytest.approx(0.7778, abs=1e-4)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert [r["scorer"] for r in manifest["rescored"]] == ["exact", "f1"] and manifest["scorer"]["scorer"] == "f1"
    assert all(r["turns"] == 1 and r["trajectory"] for r in read_results(tmp_path / "run"))


def test_score_trajectories_recorded_elsewhere(tmp_path: Path) -> None:
    tasks = _tasks(tmp_path)
    folder = tmp_path / "elsewhere"
    for tid, by_id in (("a", False), ("b", True), ("zzz", False)):
        agent = Agent(ScriptedModel([f"<think>x</think><answer>{ANSWERS.get(tid, 'x')}</answer>"]), tools=[],
                      mode="general")
        meta = {} if by_id else {"task": tid}
        events = agent.run("Q?", out=folder / "sub" / f"{tid}.jsonl", meta=meta)
        result = agent.collect(events)
        if by_id:  # matched by the trajectory's id instead of meta.task
            text = result.path.read_text().replace(result.trajectory.header.id, "b", 1)
            result.path.write_text(text)
    (folder / "notes.jsonl").write_text('{"not": "a trajectory"}\n')
    cmd = [sys.executable, "-m", "r1v4_nb.cli", "eval", "score", str(folder), "--tasks", str(tasks), "--out",
           str(tmp_path / "scored")]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "1 trajectories matched no task" in out.stdout
    recs = {r["id"]: r for r in read_results(tmp_path / "scored")}
    assert set(recs) == {"a", "b"} and recs["a"]["correct"] and not recs["b"]["correct"]
    assert (tmp_path / "scored" / recs["a"]["trajectory"]).resolve() == (folder / "sub" / "a.jsonl").resolve()
    assert json.loads((tmp_path / "scored" / "report.json").read_text())["modes"]["general"]["n"] == 2
    with pytest.raises(UsageError, match="--tasks"):
        rescore(folder)
    with pytest.raises(UsageError, match="--out"):
        rescore(folder, tasks=tasks)
