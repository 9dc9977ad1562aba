"""The rule-based world baseline: the real offline tools answer each kind of world question; Direct cannot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from r1v4_nb.eval.baseline import UNKNOWN, WorldBaseline
from r1v4_nb.eval.runner import read_results, run
from r1v4_nb.eval.tasks import load_tasks, write_tasks
from r1v4_nb.world import ensure_world


def _one_per_kind(tmp_path: Path):
    tasks = load_tasks(ensure_world().questions, image_dir=tmp_path / "ic")
    return [t for i, t in enumerate(tasks) if i % 20 == 0]  # the generator writes the five kinds in blocks


def test_baseline_answers_every_kind_with_tools_and_none_without(tmp_path: Path) -> None:
    picked = _one_per_kind(tmp_path)
    assert len(picked) == 5 and len({t.question[:40] for t in picked}) == 5
    res = run(picked, WorldBaseline(), modes="direct,deepresearch", out=tmp_path / "run", progress=None)
    by = {(r["id"], r["mode"]): r for r in res.results}
    for t in picked:
        deep, direct = by[(t.id, "deepresearch")], by[(t.id, "direct")]
        assert deep["correct"], (t.question, deep["answer"], t.answer)
        assert not direct["correct"] and direct["answer"] == UNKNOWN and direct["tool_calls"] == {}
        assert deep["tool_calls"].get("web_visit", 0) >= 1
    assert res.accuracy("deepresearch") == 1.0 and res.accuracy("direct") == 0.0


def test_cli_runs_the_baseline(tmp_path: Path) -> None:
    f = write_tasks(tmp_path / "t.jsonl", _one_per_kind(tmp_path)[:2])
    out = subprocess.run([sys.executable, "-m", "r1v4_nb.cli", "eval", "run", str(f), "--model", "world-baseline",
                          "--modes", "direct,general", "--out", str(tmp_path / "r"), "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    recs = read_results(tmp_path / "r")
    general = [r for r in recs if r["mode"] == "general"]
    assert len(recs) == 4 and all(r["tool_calls"] == {"code": 1} for r in general)  # it looks, cannot search
    assert json.loads((tmp_path / "r" / "report.json").read_text())["modes"]["general"]["accuracy"] == 0.0
