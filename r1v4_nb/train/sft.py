"""The SFT run: a plain PyTorch loop over masked examples with LoRA / QLoRA, or every parameter.

The loop is deliberately standard (AdamW, warm-up then cosine / linear /
constant, gradient accumulation with the loss normalised by the number of
loss tokens of the whole accumulated batch, clipping, optional gradient
checkpointing and bf16 autocast on a GPU). What is ours is the data path and
reproducibility: the order of examples is a function of (seed, epoch), and a
checkpoint holds the LoRA weights, optimizer, scheduler, RNG states and step,
so a resumed run continues the same loss curve. `finetune="full"` trains every
parameter (what a small model trained from scratch needs) and saves a whole model
folder instead of an adapter.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .config import TrainConfig
from .data import Example, collate, load_trajectories, render_examples
from .progress import Progress, StepMetrics, TrainInfo, peak_memory_mb


@dataclass
class TrainResult:
    output_dir: Path
    adapter: Path | None
    steps: int
    losses: list[float] = field(default_factory=list)  # one per optimizer step, from step 1
    stopped: bool = False
    checkpoint: Path | None = None
    merged: Path | None = None
    elapsed_s: float = 0.0
    tokens: int = 0
    loss_tokens: int = 0
    model_dir: Path | None = None  # finetune="full": the trained model folder

    def to_json(self) -> dict[str, Any]:
        return {"output_dir": str(self.output_dir), "adapter": str(self.adapter) if self.adapter else None,
                "steps": self.steps, "final_loss": self.losses[-1] if self.losses else None,
                "first_loss": self.losses[0] if self.losses else None, "stopped": self.stopped,
                "checkpoint": str(self.checkpoint) if self.checkpoint else None,
                "merged": str(self.merged) if self.merged else None, "elapsed_s": round(self.elapsed_s, 3),
                "model_dir": str(self.model_dir) if self.model_dir else None,
                "tokens": self.tokens, "loss_tokens": self.loss_tokens}


def _load(config: TrainConfig) -> tuple[Any, Any]:
    from ..models.hf import load

    if not config.model:
        raise UsageError("no model to train: set model = PATH (a local folder or hub id)")
    loaded = load(config.model, quantization=config.quantization, max_pixels=config.max_pixels or None)
    return loaded.model, loaded.processor


def _unpack_model(model: Any) -> tuple[Any, Any]:
    if isinstance(model, tuple):
        return model
    return model.model, model.processor


def prepare_examples(config: TrainConfig, data: Any, processor: Any) -> list[Example]:
    """Examples from whatever `data` is: examples, trajectories, paths, or None (config.data)."""
    from ..trajectory import Trajectory
    from .filters import select

    if data is None:
        if not config.data:
            raise UsageError("no training data: set data = [trajectory files, folders or globs]")
        data = config.data
    if isinstance(data, (str, Path)):
        data = [data]
    items = list(data)
    if items and all(isinstance(x, Example) for x in items):
        return items
    trajs = [x for x in items if isinstance(x, Trajectory)]
    paths = [x for x in items if isinstance(x, (str, Path))]
    if len(trajs) + len(paths) != len(items):
        raise UsageError("data must be examples, trajectories, or paths to trajectory files / folders")
    trajs += _read_sources(paths)
    sel = select(trajs, require_correct=config.require_correct, match=config.match,
                 drop_tool_errors=config.drop_tool_errors, drop_recrops=config.drop_recrops)
    if config.filters:
        from ..data.filters import apply_filters, parse_filters

        sel.kept = apply_filters(sel.kept, parse_filters(config.filters)).kept
    report = render_examples(sel.kept, processor, last_turn_only=config.last_turn_only,
                             max_length=config.max_length, overlong=config.overlong)
    if not report.examples:
        raise UsageError(f"no training examples left ({sel.summary()}, over-long {len(report.dropped_overlong)}); "
                         "check the data and the filters")
    return report.examples


def _read_sources(paths: Sequence[str | Path]) -> list[Any]:
    """Trajectory files and folders; a ShareGPT .json file is imported first."""
    import tempfile

    out = []
    for p in paths:
        if str(p).endswith(".json") and Path(p).is_file():
            from ..formats.sharegpt import import_file

            tmp = Path(tempfile.mkdtemp(prefix="r1v4-sharegpt-"))
            out += load_trajectories(import_file(p, tmp))
        else:
            out += load_trajectories(p)
    return out


def _device_setup(model: Any, precision: str) -> tuple[Any, Any]:
    import torch

    device = next(model.parameters()).device
    dtype = None
    if precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        dtype = torch.bfloat16
    elif precision == "fp16":
        dtype = torch.float16
    return device, dtype


def _schedule(config: TrainConfig) -> Any:
    def factor(step: int) -> float:
        if config.warmup_steps and step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.lr_scheduler == "constant":
            return 1.0
        span = max(1, config.max_steps - config.warmup_steps)
        t = min(1.0, (step - config.warmup_steps) / span)
        if config.lr_scheduler == "linear":
            return 1.0 - t
        return 0.5 * (1.0 + math.cos(math.pi * t))

    return factor


def _order(n_examples: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    import torch

    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n_examples, generator=g).tolist()
    return [perm[i:i + batch_size] for i in range(0, n_examples, batch_size)]


def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    ckpts = [p for p in Path(output_dir).glob("checkpoint-*") if (p / "state.json").is_file()]
    return max(ckpts, key=lambda p: int(p.name.split("-")[1]), default=None)


class Trainer:
    """One SFT run; `train()` is the usual way in. `stop_event` ends it cleanly after the current step."""

    def __init__(self, config: TrainConfig, examples: list[Example], model: Any, processor: Any,
                 progress: Progress | None = None, stop_event: threading.Event | None = None):
        self.config = config
        self.examples = examples
        self.processor = processor
        self.progress = progress or Progress()
        self.stop_event = stop_event or threading.Event()
        self.output_dir = Path(config.output_dir)
        self.base_model = model
        self.model = None
        self.optimizer = None
        self.step = 0
        self.losses: list[float] = []

    def setup(self) -> None:
        import torch

        from ..models.lora import apply_lora

        cfg = self.config
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        model = self.base_model
        if cfg.finetune == "full":
            if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
                raise UsageError("finetune=full needs a full-precision model; load it without quantization")
            for p in model.parameters():
                p.requires_grad_(True)
            self.model = model
        elif cfg.quantization or getattr(model, "is_loaded_in_4bit", False):
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
        if cfg.finetune == "lora":
            with warnings.catch_warnings():  # transformers' deprecation notices from inside peft
                warnings.simplefilter("ignore", FutureWarning)
                self.model = apply_lora(model, cfg.targets, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout)
        if cfg.gradient_checkpointing:
            enable = getattr(self.model, "activation_checkpointing_enable", None) or \
                self.model.gradient_checkpointing_enable
            enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            self.model.config.use_cache = False
        self.model.train()
        self.device, self.autocast_dtype = _device_setup(self.model, cfg.precision)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _schedule(cfg))
        tok = self.processor.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.image_id = tok.convert_tokens_to_ids(self.processor.image_token)
        if cfg.resume:
            ckpt = latest_checkpoint(self.output_dir)
            if ckpt:
                self.load_checkpoint(ckpt)

    # -- checkpoints ----------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        import torch

        from ..models.lora import trainable_state

        path = self.output_dir / f"checkpoint-{self.step}"
        path.mkdir(parents=True, exist_ok=True)
        torch.save({"model": trainable_state(self.model), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "rng": _rng_state()}, path / "trainer.pt")
        (path / "state.json").write_text(json.dumps({"step": self.step, "losses": self.losses,
                                                      "config": self.config.to_dict()}, indent=1))
        self.progress.on_checkpoint(self.step, path)
        return path

    def load_checkpoint(self, path: Path) -> None:
        import torch

        from ..models.lora import load_trainable_state

        if not (path / "trainer.pt").is_file():
            raise UsageError(f"no checkpoint at {path}; give a checkpoint-N folder written by a run")
        blob = torch.load(path / "trainer.pt", weights_only=False)
        state = json.loads((path / "state.json").read_text())
        load_trainable_state(self.model, blob["model"])
        self.optimizer.load_state_dict(blob["optimizer"])
        self.scheduler.load_state_dict(blob["scheduler"])
        _set_rng_state(blob["rng"])
        self.step = int(state["step"])
        self.losses = list(state["losses"])

    # -- the loop -------------------------------------------------------------------------------

    def micro_batches(self, step: int) -> list[list[Example]]:
        """The micro-batches of optimizer step `step` (0-based): a pure function of (seed, step)."""
        cfg = self.config
        n_batches = math.ceil(len(self.examples) / cfg.batch_size)
        out = []
        for j in range(cfg.grad_accum):
            m = step * cfg.grad_accum + j
            epoch, k = divmod(m, n_batches)
            idx = _order(len(self.examples), cfg.batch_size, cfg.seed, epoch)[k]
            out.append([self.examples[i] for i in idx])
        return out

    def train_step(self) -> tuple[float, int, int]:
        """One optimizer step; returns (loss, tokens, loss tokens)."""
        import contextlib

        import torch

        batches = self.micro_batches(self.step)
        n_loss = sum(e.loss_tokens for b in batches for e in b)
        tokens = sum(e.length for b in batches for e in b)
        total = 0.0
        for batch in batches:
            feats = {k: v.to(self.device) for k, v in collate(batch, self.pad_id, self.image_id).items()}
            labels = feats.pop("labels")
            ctx = (torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype
                   else contextlib.nullcontext())
            # logits only where a next token is in the loss: the LM head skips every masked position
            keep = (labels[:, 1:] != -100).any(dim=0).nonzero().squeeze(1)
            with ctx:
                logits = self.model(**feats, use_cache=False, logits_to_keep=keep).logits
            targets = labels[:, keep + 1].reshape(-1)
            loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets,
                                                     ignore_index=-100, reduction="sum") / max(1, n_loss)
            loss.backward()
            total += loss.item()
        if self.config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad],
                                           self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return total, tokens, n_loss

    def run(self) -> TrainResult:
        cfg = self.config
        if self.model is None:
            self.setup()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        info = TrainInfo(total_steps=cfg.max_steps, start_step=self.step, examples=len(self.examples),
                         trainable=sum(p.numel() for p in self.model.parameters() if p.requires_grad),
                         output_dir=str(self.output_dir), losses=list(self.losses))
        self.progress.on_start(info)
        t0 = time.monotonic()
        done_tokens = done_loss = 0
        stopped = False
        checkpoint = None
        window: list[tuple[float, int]] = []
        start_step = self.step
        while self.step < cfg.max_steps:
            ts = time.monotonic()
            loss, tokens, n_loss = self.train_step()
            done_tokens += tokens
            done_loss += n_loss
            self.losses.append(loss)
            window = (window + [(time.monotonic() - ts, tokens)])[-20:]
            secs = sum(w[0] for w in window)
            tps = sum(w[1] for w in window) / secs if secs > 0 else 0.0
            per_step = (time.monotonic() - t0) / (self.step - start_step)
            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                self.progress.on_step(StepMetrics(
                    step=self.step, total_steps=cfg.max_steps, loss=loss, lr=self.scheduler.get_last_lr()[0],
                    tokens_per_s=tps, tokens=tokens, loss_tokens=n_loss, elapsed_s=time.monotonic() - t0,
                    eta_s=per_step * (cfg.max_steps - self.step), memory_mb=peak_memory_mb(self.device)))
            if cfg.save_every and self.step % cfg.save_every == 0 and self.step < cfg.max_steps:
                checkpoint = self.save_checkpoint()
            if self.stop_event.is_set() and self.step < cfg.max_steps:
                checkpoint = self.save_checkpoint()
                stopped = True
                break
        if cfg.finetune == "full":
            adapter, merged, model_dir = None, None, self.save_model()
        else:
            adapter, model_dir = self.save_adapter(), None
            merged = self.merge(adapter) if cfg.merge and not stopped else None
        result = TrainResult(self.output_dir, adapter, self.step, list(self.losses), stopped, checkpoint, merged,
                             time.monotonic() - t0, done_tokens, done_loss, model_dir)
        (self.output_dir / "result.json").write_text(json.dumps(result.to_json(), indent=1))
        self.progress.on_end(result)
        return result

    def save_adapter(self) -> Path:
        from ..models.lora import save_adapter

        path = save_adapter(self.model, self.output_dir / "adapter")
        self.processor.save_pretrained(str(path))
        (path / "r1v4_train.json").write_text(json.dumps({"config": self.config.to_dict(), "steps": self.step}))
        return path

    def save_model(self) -> Path:
        """finetune=full: the whole trained model as a folder `load()` reads (weights, tokenizer, processor)."""
        path = self.output_dir / "model"
        self.model.eval()
        self.model.save_pretrained(str(path))
        self.model.train()
        self.processor.save_pretrained(str(path))
        (path / "r1v4_train.json").write_text(json.dumps({"config": self.config.to_dict(), "steps": self.step}))
        return path

    def merge(self, adapter: Path) -> Path:
        return merge_adapter(self.config.model, adapter, self.output_dir / "merged")


def merge_adapter(base: str | Path, adapter: str | Path, out: str | Path) -> Path:
    """Merge an adapter into a full-precision copy of the base model (also for adapters trained with QLoRA)."""
    from ..models.hf import load

    if not base:
        raise UsageError("merging needs the base model's path: set model = PATH")
    from peft import PeftModel

    loaded = load(str(base))
    merged = PeftModel.from_pretrained(loaded.model, str(adapter)).merge_and_unload()
    out = Path(out)
    merged.save_pretrained(str(out))
    loaded.processor.save_pretrained(str(out))
    return out


def train(config: TrainConfig | dict[str, Any], data: Any = None, *, model: Any = None,
          progress: Progress | None = None, stop_event: threading.Event | None = None) -> TrainResult:
    """Train a LoRA adapter on `data` (examples, trajectories, paths; default config.data).

    `model` is an already loaded HFModel (or a (model, processor) pair); otherwise config.model is loaded.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    m, processor = _unpack_model(model) if model is not None else _load(cfg)
    examples = prepare_examples(cfg, data, processor)
    trainer = Trainer(cfg, examples, m, processor, progress, stop_event)
    return trainer.run()
