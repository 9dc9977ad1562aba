"""Report figures: Wilson intervals, efficiency per mode, Markdown and plots, McNemar and `eval compare`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from r1v4_nb.eval.report import build_report, compare, mcnemar_exact, to_markdown, wilson, write_report


def _rec(i: str, mode: str, correct: bool, **kw) -> dict:
    base = {"id": i, "mode": mode, "correct": correct, "answered": True, "answer": "x", "gold": "x", "value": float(correct),
            "category": kw.pop("category", "c"), "split": "test", "wall_s": 2.0, "model_s": 1.5, "tool_s": 0.5,
            "tokens_out": 30, "tokens_in": 100, "turns": 2, "tool_calls": {"code": 1}, "tool_errors": 0,
            "end": "answered"}
    return {**base, **kw}


def test_wilson_against_known_values() -> None:
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0) and wilson(0, 0) == (0.0, 1.0)


def test_mcnemar_exact() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(1, 9) == pytest.approx(0.021484375)  # 2 * (1 + 10) / 1024
    assert mcnemar_exact(5, 5) == 1.0


def test_report_figures_and_outputs(tmp_path: Path) -> None:
    recs = [_rec("a", "direct", True, tool_calls={}, tool_s=0.0, turns=1),
            _rec("b", "direct", False, answered=False, answer=None, tool_calls={}, tool_s=0.0, turns=1),
            _rec("a", "general", True, category="zoom"), _rec("b", "general", True, tool_calls={"code": 2})]
    rep = build_report(recs, {"modes": ["direct", "general"], "model": {"name": "m"}, "tasks": {"file": "t.jsonl",
                                                                                                 "skipped": ["x"]}})
    d, g = rep["modes"]["direct"], rep["modes"]["general"]
    assert list(rep["modes"]) == ["direct", "general"]
    assert d["accuracy"] == 0.5 and d["answer_rate"] == 0.5 and d["no_answer"] == 1 and d["tool_calls"] == 0
    assert g["accuracy"] == 1.0 and g["tool_calls_per_tool"] == {"code": 1.5} and g["tokens_per_s"] == 20.0
    assert g["by_category"]["zoom"]["n"] == 1 and rep["run"]["skipped_rows"] == 1
    md = to_markdown(rep)
    assert "| direct | 2 | 50.0 (" in md and "1 bad task rows were skipped" in md and "| zoom |" in md
    paths = write_report(tmp_path, rep)
    assert json.loads(paths["json"].read_text())["modes"]["general"]["accuracy"] == 1.0
    assert paths["summary"].stat().st_size > 1000 and paths["categories"].is_file()


def test_compare_and_cli(tmp_path: Path) -> None:
    a = [_rec(str(i), "general", i < 3) for i in range(10)]
    b = [_rec(str(i), "general", i < 8) for i in range(10)] + [_rec("extra", "general", True)]
    res = compare(a, b)["general"]
    assert res["paired"] == 10 and res["b_right_a_wrong"] == ["3", "4", "5", "6", "7"] and res["a_right_b_wrong"] == []
    assert res["mcnemar_p"] == pytest.approx(0.0625) and res["difference"] == pytest.approx(0.5)
    cross = compare(a, [_rec(str(i), "direct", False) for i in range(10)], "general", "direct")
    assert cross["general->direct"]["a_right_b_wrong"] == ["0", "1", "2"]
    for name, recs in (("A", a), ("B", b)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    cli = [sys.executable, "-m", "r1v4_nb.cli", "eval"]
    out = subprocess.run([*cli, "compare", str(tmp_path / "A"), str(tmp_path / "B"), "--json"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["general"]["mcnemar_p"] == pytest.approx(0.0625)
    text = subprocess.run([*cli, "compare", str(tmp_path / "A"), str(tmp_path / "B")], capture_output=True, text=True)
    assert "McNemar p" in text.stdout and "- general 3: now right" in text.stdout
    rep = subprocess.run([*cli, "report", str(tmp_path / "B")], capture_output=True, text=True)
    assert rep.returncode == 0 and "| general | 11 |" in rep.stdout and (tmp_path / "B" / "report.json").is_file()
    none = subprocess.run([*cli, "compare", str(tmp_path / "A"), str(tmp_path / "nope")], capture_output=True,
                          text=True)
    assert none.returncode == 2 and "no results.jsonl" in none.stderr
