"""The one configuration of an SFT run, shared by the Python API, `%%r1v4 train` and `r1v4-nb train`.

A config can be written as YAML, JSON or `key = value` lines; unknown keys and
values of the wrong type are errors that name the key, so a typo never trains
with a silent default.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import UsageError, read_text_file

TARGETS = ("attention", "mlp", "experts")
SCHEDULERS = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
QUANTIZATIONS = (None, "4bit", "8bit")
FINETUNES = ("lora", "full")


@dataclass
class TrainConfig:
    """Everything a run needs. `data` lists trajectory files, folders or globs (or a ShareGPT .json)."""

    model: str = ""
    data: list[str] = field(default_factory=list)
    output_dir: str = "runs/sft"
    quantization: str | None = None  # "4bit": QLoRA
    finetune: str = "lora"  # "lora": train an adapter; "full": train every parameter (small models, from scratch)
    # LoRA
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0  # must be 0 when experts are targeted (peft's parameter LoRA has no dropout)
    targets: list[str] = field(default_factory=lambda: ["attention", "mlp", "experts"])
    # optimisation
    learning_rate: float = 2e-4
    lr_scheduler: str = "cosine"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_steps: int = 100
    batch_size: int = 1
    grad_accum: int = 1
    gradient_checkpointing: bool = False
    precision: str = "auto"
    seed: int = 0
    # data
    max_length: int = 4096
    max_pixels: int = 0  # resize images to at most this many pixels (0: the processor's own limit)
    overlong: str = "cut"
    last_turn_only: bool = False
    require_correct: bool = False
    match: str = "normalised"
    drop_tool_errors: bool = True
    drop_recrops: bool = True
    filters: list[str] = field(default_factory=list)  # curation filters (r1v4_nb.data.filters), e.g. ["format"]
    # checkpoints and outputs
    save_every: int = 0
    resume: bool = False
    merge: bool = False
    log_every: int = 1

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        bad = [t for t in self.targets if t not in TARGETS]
        if bad or not self.targets:
            raise UsageError(f"targets {self.targets}: choose from {', '.join(TARGETS)}")
        if self.lr_scheduler not in SCHEDULERS:
            raise UsageError(f"lr_scheduler={self.lr_scheduler!r}: choose one of {', '.join(SCHEDULERS)}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision={self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.quantization not in QUANTIZATIONS:
            raise UsageError(f"quantization={self.quantization!r}: use 4bit, 8bit or leave it empty")
        if self.filters:
            from ..data.filters import FILTERS

            unknown = [f for f in self.filters if f.partition(":")[0].strip().replace("-", "_") not in FILTERS]
            if unknown:
                raise UsageError(f"filters: unknown filter {unknown[0]!r}; choose from {', '.join(FILTERS)}")
        if self.finetune not in FINETUNES:
            raise UsageError(f"finetune={self.finetune!r}: use lora (an adapter) or full (every parameter)")
        if self.finetune == "full" and self.quantization:
            raise UsageError("finetune=full trains full-precision weights; drop quantization (or use finetune=lora)")
        if self.overlong not in ("cut", "drop"):
            raise UsageError(f"overlong={self.overlong!r}: use cut or drop")
        for name in ("lora_r", "max_steps", "batch_size", "grad_accum", "max_length", "log_every"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name}={getattr(self, name)}: must be at least 1")
        if "experts" in self.targets and self.lora_dropout:
            raise UsageError("lora_dropout must be 0 when targets include experts "
                             "(LoRA on fused expert tensors has no dropout); set lora_dropout=0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise UsageError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(known)}")
        defaults = cls()
        values = {}
        for key, value in d.items():
            values[key] = _coerce(key, value, getattr(defaults, key))
        return cls(**values)

    @classmethod
    def from_text(cls, text: str) -> TrainConfig:
        """Parse a config written as JSON, YAML or `key = value` lines."""
        return cls.from_dict(parse_text(text))

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"no training config at {p}; write one as YAML, JSON or key = value lines")
        return cls.from_text(read_text_file(p, "a training config (YAML, JSON or key = value lines)"))

    def with_overrides(self, pairs: list[str]) -> TrainConfig:
        """A copy with `key=value` strings applied (the CLI's --set)."""
        d = self.to_dict()
        d.update(parse_text("\n".join(pairs)))
        return TrainConfig.from_dict(d)


def parse_text(text: str) -> dict[str, Any]:
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"training config is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return d
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if lines and all("=" in ln and ":" not in ln.split("=", 1)[0] for ln in lines):
        out: dict[str, Any] = {}
        for ln in lines:
            key, value = ln.split("=", 1)
            out[key.strip()] = _scalar(value.strip())
        return out
    import yaml

    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"training config is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(d, dict):
        raise UsageError("training config must be a mapping of option: value")
    return d


def _scalar(value: str) -> Any:
    """A `key = value` right-hand side: JSON when it parses (numbers, true, lists), else the string."""
    if value.lower() in ("none", "null", ""):
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        if value.lower() in ("true", "yes", "on"):
            return True
        if value.lower() in ("false", "no", "off"):
            return False
        return value


def _coerce(key: str, value: Any, default: Any) -> Any:
    if key == "quantization":
        return None if value in (None, "", "none", False) else str(value)
    if isinstance(default, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise UsageError(f"{key} must be a list, got {value!r}")
        return [str(v) for v in value]
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise UsageError(f"{key} must be true or false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise UsageError(f"{key} must be an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{key} must be a number, got {value!r}")
        return float(value)
    if value is None:
        raise UsageError(f"{key} needs a value")
    return str(value)
