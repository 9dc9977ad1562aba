"""train/config.py: one SFT configuration from JSON, YAML or key = value lines, checked as it is read."""

from __future__ import annotations

import pytest

from r1v4_nb.errors import UsageError
from r1v4_nb.train.config import TrainConfig, parse_text

WANT = {"model": "tiny-moe", "data": ["runs/a.jsonl", "runs/b"], "max_steps": 30, "learning_rate": 0.001,
        "quantization": "4bit", "last_turn_only": True}


@pytest.mark.parametrize("text", [
    '{"model": "tiny-moe", "data": ["runs/a.jsonl", "runs/b"], "max_steps": 30, "learning_rate": 1e-3,'
    ' "quantization": "4bit", "last_turn_only": true}',
    "model: tiny-moe\ndata: [runs/a.jsonl, runs/b]\nmax_steps: 30\nlearning_rate: 0.001\nquantization: 4bit\n"
    "last_turn_only: yes\n",
    "# a comment\nmodel = tiny-moe\ndata = runs/a.jsonl, runs/b\nmax_steps = 30\nlearning_rate = 1e-3\n"
    "quantization = 4bit\nlast_turn_only = on\n",
])
def test_the_three_notations_give_the_same_config(text):
    cfg = TrainConfig.from_text(text)
    assert {k: getattr(cfg, k) for k in WANT} == WANT
    assert cfg.lora_r == TrainConfig().lora_r  # the rest keeps its defaults


def test_round_trip_and_overrides():
    cfg = TrainConfig.from_text("model = m\nmax_steps = 5")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    changed = cfg.with_overrides(["max_steps=7", "quantization=none", "targets=attention,mlp"])
    assert (changed.max_steps, changed.quantization, changed.targets) == (7, None, ["attention", "mlp"])
    assert cfg.max_steps == 5  # the original is untouched


@pytest.mark.parametrize("text, says", [
    ("max_stepz = 3", "unknown training option(s) max_stepz"),
    ("max_steps = 2.5", "max_steps must be an integer"),
    ("max_steps = 0", "max_steps=0: must be at least 1"),
    ("learning_rate = fast", "learning_rate must be a number"),
    ("merge = maybe", "merge must be true or false"),
    ("targets = attention, brains", "targets ['attention', 'brains']"),
    ("lr_scheduler = step", "lr_scheduler='step'"),
    ("precision = fp8", "precision='fp8'"),
    ("quantization = 2bit", "quantization='2bit'"),
    ("overlong = wrap", "overlong='wrap'"),
    ("lora_dropout = 0.1", "lora_dropout must be 0 when targets include experts"),
    ('{"model": ', "not valid JSON"),
    ("model: [unclosed", "not valid YAML"),
    ("- just\n- a list", "must be a mapping"),
])
def test_mistakes_are_one_line_naming_the_problem(text, says):
    with pytest.raises(UsageError) as info:
        TrainConfig.from_text(text)
    assert says in str(info.value) and "\n" not in str(info.value)


def test_dropout_is_fine_without_expert_targets():
    assert TrainConfig.from_text("targets = attention\nlora_dropout = 0.1").lora_dropout == 0.1


def test_a_missing_file_and_an_empty_text(tmp_path):
    with pytest.raises(UsageError, match="no training config at"):
        TrainConfig.from_file(tmp_path / "nope.yaml")
    (tmp_path / "c.yaml").write_text("model: m\nmax_steps: 2\n")
    assert TrainConfig.from_file(tmp_path / "c.yaml").max_steps == 2
    assert parse_text("   ") == {} and TrainConfig.from_text("") == TrainConfig()
