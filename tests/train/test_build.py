"""`r1v4-nb build-demo-model` end to end at a small scale: tasks, expert rollouts with the real tools,
filters, SFT in stages, evaluation through the runner, and a model folder with its card; a second run on
the same work folder resumes (finished runs and stages are reused), and a stage trained with another
tokenizer is trained again, with every stage after it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from r1v4_nb.train.build import BuildPlan, build_demo_model


def test_a_small_build_makes_a_model_folder_with_its_card_and_resumes(tmp_path: Path) -> None:
    plan = replace(BuildPlan().scaled(0.005), eval_sets={"zoom": ("zoom", 2, ("general", "direct"), 2)})
    assert [s.steps for s in plan.stages] == [1, 13, 3, 2] and plan.sets["zoom"][2] == 12
    assert plan.sets["interleaved"][2] == 4
    said: list[str] = []
    out, work = tmp_path / "model", tmp_path / "work"
    record = build_demo_model(out, plan, work=work, say=said.append)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json",
                 "r1v4_agent.json", "README.md", "build.json", "learning_curve.png"):
        assert (out / name).is_file(), name
    assert record["filters"]["zoom"] == {"runs": 12, "no_answer": 0, "no_gold": 0, "wrong": 0, "tool_error": 0,
                                         "recrop": 0, "kept": 12}
    assert record["filters"]["interleaved"]["runs"] == 4 and record["filters"]["interleaved"]["kept"] >= 3
    assert [s["name"] for s in record["stages"]] == ["read-easy", "find-and-read", "search", "polish"]
    for mode in ("general", "direct"):
        figures = record["eval"]["zoom"][mode]
        assert figures["n"] == 2 and 0.0 <= figures["accuracy"] <= 1.0 and figures["turns"] >= 2
    report = json.loads(Path(work / "eval" / "zoom" / "run" / "report.json").read_text())
    assert set(report["modes"]) == {"general", "direct"} and "accuracy" in report["modes"]["general"]
    card = (out / "README.md").read_text()
    assert "## Evaluation" in card and "## Curation" in card and "find-and-read" in card
    assert json.loads((out / "build.json").read_text())["seed"] == 0 and record["reused"] == []
    assert "resumed" not in card

    said.clear()
    again = build_demo_model(out, plan, work=work, say=said.append)
    assert any("trained before" in s for s in said)  # the stages are reused, not retrained
    assert again["stages"][-1]["last_loss"] == record["stages"][-1]["last_loss"]
    assert "12 zoom runs" in again["reused"] and "stage search" in again["reused"]
    assert "resumed an earlier run" in (out / "README.md").read_text()  # the card says its timings are not all its own

    said.clear()
    (work / "sft" / "find-and-read" / "model" / "tokenizer.json").write_text("{}")  # trained with another one
    build_demo_model(out, plan, work=work, say=said.append)
    reused = [s for s in said if "trained before" in s]
    assert len(reused) == 1 and "read-easy" in reused[0]
    assert sum("stage find-and-read:" in s and "examples" in s for s in said) == 1
    assert sum("stage search:" in s and "examples" in s for s in said) == 1
    assert sum("stage polish:" in s and "examples" in s for s in said) == 1
