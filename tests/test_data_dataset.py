"""The dataset folder: kept trajectories + plans + a manifest with the filter table; train reads it; ShareGPT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_support import prepared

from r1v4_nb.data.dataset import build_dataset, export_sharegpt
from r1v4_nb.errors import UsageError
from r1v4_nb.models.replay import DEMO_TRAJECTORIES
from r1v4_nb.train.data import load_trajectories


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
