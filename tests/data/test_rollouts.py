"""Teacher rollouts: k runs per task with real tools, recorded with the task in meta, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1v4_nb.data.rollouts import read_index, rollouts
from r1v4_nb.errors import UsageError
from r1v4_nb.eval.tasks import Task
from r1v4_nb.trajectory import read
from tests.support.eval import LoopbackServer, user_text


def _teacher(messages: list) -> str:
    q = user_text(messages[:2])
    n = sum(1 for m in messages if m["role"] == "assistant")
    return f"<think>Sample for {q[:12]} (history {n}).</think><answer>{'K7' if 'plaque' in q else 'no'}</answer>"


def test_rollouts_from_an_endpoint_teacher(tmp_path: Path) -> None:
    tasks = [Task("a", "What code is on the plaque?", answers=["K7"]), Task("b", "Which bell?", answers=["x"])]
    with LoopbackServer(_teacher, model="teacher") as srv:
        rs = rollouts(tasks, endpoint=srv.url, k=3, mode="direct", out=tmp_path / "r", concurrency=3,
                      temperature=0.7, seed=1)
        assert len(srv.requests) == 6 and {r["temperature"] for r in srv.requests} == {0.7}
        assert len({r["seed"] for r in srv.requests}) == 6  # each sample has its own seed
        assert sorted((r["task"], r["sample"]) for r in rs.index) == [(t, j) for t in "ab" for j in range(3)]
        t = read(rs.out / next(r["trajectory"] for r in rs.index if r["task"] == "a"))
        assert t.header.meta["task"] == "a" and t.header.meta["gold"] == ["K7"] and t.answer == "K7"
        assert t.header.meta["teacher"]["backend"] == "openai"
        with pytest.raises(UsageError, match="already holds rollouts"):
            rollouts(tasks, endpoint=srv.url, k=3, mode="direct", out=tmp_path / "r")
        # a lost line (a kill) is run again on resume, and only it
        lines = (rs.out / "index.ndjson").read_text().splitlines()
        (rs.out / "index.ndjson").write_text("\n".join(lines[:-1]) + "\n")
        again = rollouts(tasks, endpoint=srv.url, k=3, mode="direct", out=tmp_path / "r", resume=True, seed=1)
        assert len(srv.requests) == 7 and len(again.index) == 6
        with pytest.raises(UsageError, match="seed differ"):
            rollouts(tasks, endpoint=srv.url, k=3, mode="direct", out=tmp_path / "r", resume=True, seed=2)
    manifest = json.loads((rs.out / "manifest.json").read_text())
    assert manifest["k"] == 3 and manifest["mode"] == "direct" and len(manifest["resumed"]) == 1
    assert len(read_index(rs.out)) == 6 and all(p.is_file() for p in again.paths)
