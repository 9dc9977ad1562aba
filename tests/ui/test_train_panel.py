"""The training panel, `%%r1v4 train` and the CLI entry: drawing, Stop, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from r1v4_nb.train.progress import StepMetrics, TerminalProgress, TrainInfo
from r1v4_nb.ui.magics import run_magic
from r1v4_nb.ui.train_panel import TrainPanel, loss_svg


def _m(step: int, loss: float) -> StepMetrics:
    return StepMetrics(step, 4, loss, 1e-3, 1234.0, 100, 50, 1.0, 3.0, 512.0)


def test_panel_draws_the_curve_and_stop_sets_the_flag():
    panel = TrainPanel(min_interval_s=0)
    panel.on_start(TrainInfo(4, 0, 3, 1000, "out"))
    for k, loss in enumerate([3.0, 2.5, 2.0], start=1):
        panel.on_step(_m(k, loss))
    assert panel.chart.value.count(",") == 3 and "3.000" in panel.chart.value and "2.000" in panel.chart.value
    assert "step 3/4" in panel.stats.value and "1,234 tok/s" in panel.stats.value
    assert not panel.stop_event.is_set()
    panel.stop_button.click()
    assert panel.stop_event.is_set() and panel.stop_button.disabled
    assert "<svg" in loss_svg([], 1)


def test_terminal_progress_lines(capsys):
    import io

    buf = io.StringIO()
    p = TerminalProgress(buf)
    p.on_start(TrainInfo(4, 2, 3, 1000, "out"))
    p.on_step(_m(3, 1.5))
    out = buf.getvalue()
    assert "resumed at step 2" in out and "step 3/4  loss 1.5000" in out and out.endswith("\n")


def test_magic_errors_are_one_line(capsys):
    run_magic("train", "")
    run_magic("train --fast", "model = x")
    run_magic("train", "max_step = 3")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3
    assert "needs a config" in err[0] and "unknown option --fast" in err[1] and "unknown training option" in err[2]


def test_cli_bad_config_is_exit_2(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: x\nmax_steps: lots\n")
    out = subprocess.run([sys.executable, "-m", "r1v4_nb.cli", "train", str(cfg)], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip() == \
        "r1v4-nb train: error: max_steps must be an integer, got 'lots'"


def test_before_after_runs_both_models_and_shows_them_side_by_side(tmp_path: Path):
    from r1v4_nb.models.replay import ScriptedModel
    from r1v4_nb.train.compare import before_after, summary
    from r1v4_nb.train.synthetic import make_task
    from r1v4_nb.ui.train_panel import before_after_view

    tasks = [make_task(tmp_path / "img", i) for i in range(2)]
    golds = [t.header.meta["gold"] for t in tasks]
    base = ScriptedModel(["<think>no idea</think><answer>grey</answer>"] * 2)
    tuned = ScriptedModel([f"<think>I see it.</think><answer>{g}</answer>" for g in golds])
    pairs = before_after(base, tuned, tasks, tools=lambda: [], runs_dir=tmp_path / "runs")
    assert [p.correct() for p in pairs] == [(False, True), (False, True)]
    assert all(p.base.path.is_file() and p.tuned.path.is_file() for p in pairs)
    assert tuned.seen[0][-1]["content"][0]["type"] == "image"  # the task's image reached the model
    assert f"tuned '{golds[0]}' ✓" in summary(pairs)
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(before_after_view(pairs)._repr_html_(), "html.parser")  # static: kept by a saved notebook
    assert len(soup.select(".r1v4-compare")) == 2 and "gold" in soup.select(".r1v4-pane-title")[0].parent.text
    heads = [h.text for h in soup.select(".r1v4-cmp-col")]
    assert heads[0].startswith("Base model") and heads[1].startswith("Tuned model")
    assert soup.select_one(".r1v4-cmp-diverge").text.endswith("at step 0")  # different from the first turn


def test_magic_trains_and_returns_the_result(tmp_path: Path, tiny_dense_path, capsys):
    from r1v4_nb.train.synthetic import make_dataset

    make_dataset(tmp_path / "data", n=2)
    body = (f"model = {tiny_dense_path}\ndata = {tmp_path / 'data'}\noutput_dir = {tmp_path / 'out'}\n"
            "max_steps = 2\ntargets = attention\n")
    result = run_magic("train --wait", body)
    assert result["steps"] == 2 and Path(result["adapter"], "adapter_config.json").is_file()
