"""Each curation filter drops exactly the trajectories prepared to fail it and keeps the good ones."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from r1v4_nb.data.filters import (
    DEFAULT_FILTERS,
    ConsistencyJudgeFilter,
    LengthFilter,
    apply_filters,
    parse_filters,
)
from r1v4_nb.errors import UsageError
from r1v4_nb.eval.tasks import Task
from r1v4_nb.trajectory import read
from tests.support.data import CODE, crop_tool, load, make, prepared, textured
from tests.support.eval import LoopbackServer

ORDER = ["format", "answer", "tool_errors", "repeats", "consistency"]


def test_the_funnel_drops_exactly_the_prepared_bad_trajectories(tmp_path: Path) -> None:
    paths = prepared(tmp_path)
    report = apply_filters(load(paths), parse_filters(DEFAULT_FILTERS))
    assert [r["filter"] for r in report.table] == ORDER
    by_filter = {f: sorted(Path(d["trajectory"]).stem for d in report.dropped if d["filter"] == f) for f in ORDER}
    for f in ORDER:
        want = sorted(n for n in paths if n.startswith(f.split("_")[0] if f != "tool_errors" else "tool_errors"))
        assert by_filter[f] == want, f
    assert sorted(t.header.id for t in report.kept) == ["good_crop", "good_direct"]
    row = {r["filter"]: r for r in report.table}
    assert row["format"]["in"] == len(paths) and row["format"]["dropped"] == 4
    assert row["consistency"]["reasons"] == {"blank or uniform image": 1,
                                             "crop box [40, 40, 90, 90] outside its 64x64 source": 1,
                                             "the next thinking never refers to the produced image": 1}
    assert "| format | 13 | 4 | 9 |" in report.markdown()
    assert report.summary().startswith("kept 2 of 13")


@pytest.mark.parametrize("name", ["format", "answer", "tool_errors", "repeats", "consistency"])
def test_each_filter_alone_keeps_the_good_ones(tmp_path: Path, name: str) -> None:
    paths = prepared(tmp_path)
    good = [read(paths["good_crop"]), read(paths["good_direct"])]
    assert len(apply_filters(good, parse_filters([name])).kept) == 2
    mine = [read(p) for n, p in paths.items() if n.startswith(name)]
    assert mine and apply_filters(mine, parse_filters([name])).kept == []


def test_answer_filter_uses_tasks_and_scorers(tmp_path: Path) -> None:
    p = make(tmp_path, "mc", ["<think>It is the second.</think><answer>Answer: B) red</answer>"], gold="zzz")
    t = read(p)
    tasks = [Task("mc", "Which colour?", answers=["B"], choices={"A": "blue", "B": "red"})]
    assert apply_filters([t], parse_filters(["answer"], tasks=tasks)).kept == [t]
    assert apply_filters([t], parse_filters(["answer"])).kept == []  # meta.gold "zzz" alone says wrong


def test_length_and_parse_errors(tmp_path: Path) -> None:
    paths = prepared(tmp_path)
    long = read(paths["repeats_loop"])  # 3 turns, 2 tool calls
    assert LengthFilter(max_turns=2).reason(long) == "3 turns > 2"
    assert LengthFilter(max_tool_calls=1).reason(long) == "2 tool calls > 1"
    assert parse_filters(["length:max_turns=2"])[0].reason(long) == "3 turns > 2"
    assert LengthFilter(max_turns=3, max_tool_calls=2).reason(long) is None
    with pytest.raises(UsageError, match="unknown filter"):
        parse_filters(["nope"])
    with pytest.raises(UsageError, match="key=value"):
        parse_filters(["length:8"])
    with pytest.raises(UsageError, match="filter 'length:bogus=1'"):
        parse_filters(["length:bogus=1"])


def _vlm_judge(messages: list) -> str:
    """A scripted VLM judge: NO when the thinking names a colour that is not the image's dominant channel."""
    parts = messages[-1]["content"]
    url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
    text = next(p["text"] for p in parts if p["type"] == "text")
    im = PILImage.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    dominant = ["red", "green", "blue"][int(np.asarray(im, dtype=float).mean(axis=(0, 1)).argmax())]
    thinking = text.split("Reasoning after the image:", 1)[1].lower()
    claimed = [c for c in ("red", "green", "blue") if re.search(rf"\b{c}\b", thinking)]
    return "NO" if claimed and dominant not in claimed else "YES"


def test_consistency_judge_on_a_loopback_vlm(tmp_path: Path) -> None:
    paths = prepared(tmp_path)
    red = textured(5, (32, 32), tint=(120, 0, 0))
    lie = make(tmp_path, "judge_unfaithful", [CODE, crop_tool(image=red),
                                              "<think>The crop shows a blue plaque with K7.</think><answer>K7</answer>"])
    true = make(tmp_path, "judge_faithful", [CODE, crop_tool(image=red),
                                             "<think>The crop shows a red plaque with K7.</think><answer>K7</answer>"])
    trajs = [read(paths["good_crop"]), read(paths["good_direct"]), read(lie), read(true)]
    cache = tmp_path / "judge.sqlite"
    with LoopbackServer(_vlm_judge, model="scripted-vlm") as srv:
        report = apply_filters(trajs, [ConsistencyJudgeFilter(srv.url, cache=cache)])
        assert [d["trajectory"] for d in report.dropped] == [str(lie)]
        assert "unfaithful" in report.dropped[0]["reason"]
        assert len(srv.requests) == 3  # one produced image each in three trajectories
        assert srv.requests[0]["messages"][0]["content"][0]["type"] == "image_url"
        apply_filters(trajs, parse_filters([f"consistency_judge:endpoint={srv.url},cache={cache}"]))
        assert len(srv.requests) == 3  # verdicts come from the cache


def test_training_configs_name_the_filters() -> None:
    from r1v4_nb.train.config import TrainConfig

    assert TrainConfig(filters=["format", "length:max_turns=8"]).filters == ["format", "length:max_turns=8"]
    with pytest.raises(UsageError, match="unknown filter 'nope'"):
        TrainConfig(filters=["nope"])
