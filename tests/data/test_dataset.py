"""The dataset folder: kept trajectories + plans + a manifest with the filter table; train reads it; ShareGPT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1v4_nb.data.dataset import build_dataset, export_sharegpt
from r1v4_nb.errors import UsageError
from r1v4_nb.models.replay import DEMO_TRAJECTORIES
from r1v4_nb.train.data import load_trajectories
from tests.support.data import prepared


def test_build_dataset_and_export(tmp_path: Path) -> None:
    src = tmp_path / "src"
    prepared(src)
    ds = build_dataset([src, DEMO_TRAJECTORIES["deepresearch"]], tmp_path / "ds")
    assert len(ds.trajectories) == 3 and len(ds.plans) == 1  # the good two and the demo; the demo has a plan
    m = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert m["counts"] == {"in": 14, "kept": 3, "plans": 1}
    assert [r["filter"] for r in m["table"]] == ["format", "answer", "tool_errors", "repeats", "consistency"]
    assert {d["filter"] for d in m["dropped"]} == {"format", "answer", "tool_errors", "repeats", "consistency"}
    assert len(m["plans_not_extracted"]) == 2
    trajs = load_trajectories(tmp_path / "ds")  # what `r1v4-nb train` with data = [the folder] reads
    assert sorted(t.header.mode for t in trajs) == ["deepresearch", "general", "general", "plan"]
    out = export_sharegpt(tmp_path / "ds", tmp_path / "export" / "data.json")
    records = json.loads(out.read_text())
    assert len(records) == 4 and all(r["conversations"] for r in records)
    with pytest.raises(UsageError, match="already holds a dataset"):
        build_dataset([src], tmp_path / "ds")
    with pytest.raises(UsageError, match="not a dataset folder"):
        export_sharegpt(src, tmp_path / "x.json")


def test_cli_rollouts_then_curate(tmp_path: Path) -> None:
    import subprocess
    import sys

    from r1v4_nb.eval.tasks import load_tasks, write_tasks
    from r1v4_nb.world import ensure_world

    tasks = load_tasks(ensure_world().questions, image_dir=tmp_path / "ic")
    f = write_tasks(tmp_path / "t.jsonl", [tasks[0], tasks[20]])  # a one-hop and a two-hop question
    cli = [sys.executable, "-m", "r1v4_nb.cli", "eval"]
    ro = subprocess.run([*cli, "rollouts", str(f), "--model", "world-baseline", "-k", "1", "--mode", "deepresearch",
                         "--out", str(tmp_path / "ro")], capture_output=True, text=True, timeout=300)
    assert ro.returncode == 0, ro.stderr
    assert "2 trajectories" in ro.stdout and "answered 2" in ro.stdout
    cu = subprocess.run([*cli, "curate", str(tmp_path / "ro" / "trajectories"), "--out", str(tmp_path / "ds"),
                         "--tasks", str(f), "--filters", "format;answer;length:max_turns=3,max_tool_calls=5",
                         "--sharegpt", str(tmp_path / "sg.json")], capture_output=True, text=True, timeout=300)
    assert cu.returncode == 0, cu.stderr
    assert "| length | 2 | 1 | 1 | 4 turns > 3 (1) |" in cu.stdout
    m = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert m["counts"] == {"in": 2, "kept": 1, "plans": 1}
    assert len(json.loads((tmp_path / "sg.json").read_text())) == 2
    bad = subprocess.run([*cli, "curate", str(tmp_path / "ro"), "--out", str(tmp_path / "x"), "--filters", "nope"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown filter 'nope'" in bad.stderr
