"""Our SFT step against TRL's SFTTrainer: tokens/s and peak memory on the same model and examples.

One run builds a tiny-but-not-trivial Qwen3-VL-MoE (hidden 256, 4 layers, 8
experts), renders synthetic agent trajectories without images (TRL takes them
only as plain text), and trains each setup in its own subprocess (so peak
resident memory is each one's own) with the same LoRA (attention + fused
experts), batch size, learning rate, steps and no gradient checkpointing.
Throughput counts every non-padding token a step processes, after warm-up
steps. It also prints how many tokens each setup puts in the loss: ours only
the model-written text, TRL every token of the conversation (system, question
and tool results included), which is the masking gap this project closes.

    .venv/bin/python benchmarks/sft.py [--steps 12] [--warmup 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH, LR, R, ALPHA = 4, 1e-3, 8, 16


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _examples(model_dir: Path, data_dir: Path):
    from r1v4_nb.models.processor import load_processor
    from r1v4_nb.train.data import load_trajectories, render_examples

    trajs = load_trajectories(data_dir)
    for t in trajs:  # text only: TRL gets these as plain text
        t.header.images = []
        for s in t.tool_steps:
            s.observation.images = []
    processor = load_processor(model_dir)
    return processor, render_examples(trajs, processor).examples


def _lora_targets():
    from r1v4_nb.train.lora import EXPERT_PARAMS

    return r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)", [f"mlp.experts.{p}" for p in EXPERT_PARAMS]


def run_ours(model_dir: Path, data_dir: Path, steps: int, warmup: int) -> dict:
    import torch
    from transformers import AutoModelForImageTextToText

    from r1v4_nb.train import TrainConfig
    from r1v4_nb.train.sft import Trainer

    processor, examples = _examples(model_dir, data_dir)
    model = AutoModelForImageTextToText.from_pretrained(str(model_dir), dtype=torch.float32)
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(model=str(model_dir), output_dir=out, targets=["attention", "experts"], lora_r=R,
                          lora_alpha=ALPHA, learning_rate=LR, lr_scheduler="constant", batch_size=BATCH,
                          max_steps=steps, max_grad_norm=1.0)
        trainer = Trainer(cfg, examples, model, processor)
        trainer.setup()
        base_rss = _rss_mb()
        tokens = loss_tokens = 0
        t0 = 0.0
        for k in range(steps):
            if k == warmup:
                t0 = time.perf_counter()
            _, n, n_loss = trainer.train_step()
            if k >= warmup:
                tokens += n
                loss_tokens += n_loss
        elapsed = time.perf_counter() - t0
    return {"tokens_per_s": tokens / elapsed, "peak_mb": _peak_mb() - base_rss, "tokens": tokens,
            "loss_tokens": loss_tokens}


def run_trl(model_dir: Path, data_dir: Path, steps: int, warmup: int) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    processor, examples = _examples(model_dir, data_dir)
    tok = processor.tokenizer
    texts = [tok.decode(e.input_ids) for e in examples]
    model = AutoModelForImageTextToText.from_pretrained(str(model_dir), dtype=torch.float32)
    modules, params = _lora_targets()
    peft_config = LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=modules,
                             target_parameters=params)
    state = {"t0": 0.0, "tokens": 0, "loss_tokens": 0, "step": 0}

    class Clock(TrainerCallback):
        def on_step_begin(self, args, st, control, **kw):
            if st.global_step == warmup:
                state["t0"] = time.perf_counter()

    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(output_dir=out, per_device_train_batch_size=BATCH, learning_rate=LR,
                         lr_scheduler_type="constant", max_steps=steps, gradient_checkpointing=False,
                         logging_steps=10_000, save_strategy="no", report_to=[], bf16=False, fp16=False,
                         max_length=None, packing=False, dataset_text_field="text", seed=0, use_cpu=True,
                         dataloader_num_workers=0, max_grad_norm=1.0, disable_tqdm=True)
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts}),
                             processing_class=tok, peft_config=peft_config, callbacks=[Clock()])
        collate = trainer.data_collator

        def counting(features):
            batch = collate(features)
            if state["step"] >= warmup:
                state["tokens"] += int(batch["attention_mask"].sum()) if "attention_mask" in batch \
                    else int(batch["input_ids"].numel())
                state["loss_tokens"] += int((batch["labels"][:, 1:] != -100).sum())
            state["step"] += 1
            return batch

        trainer.data_collator = counting
        base_rss = _rss_mb()
        trainer.train()
        elapsed = time.perf_counter() - state["t0"]
    return {"tokens_per_s": state["tokens"] / elapsed, "peak_mb": _peak_mb() - base_rss,
            "tokens": state["tokens"], "loss_tokens": state["loss_tokens"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--child", choices=["ours", "trl"])
    ap.add_argument("--dir")
    a = ap.parse_args()
    if a.child:
        d = Path(a.dir)
        fn = run_ours if a.child == "ours" else run_trl
        print(json.dumps(fn(d / "model", d / "data", a.steps, a.warmup)))
        return 0

    from r1v4_nb.models.tiny import make_tiny_model
    from r1v4_nb.train.synthetic import make_dataset

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        make_tiny_model(d / "model", moe=True, hidden=256, layers=4)
        make_dataset(d / "data", n=16, variants=("clean", "search"))
        res = {}
        for which in ("ours", "trl"):
            out = subprocess.run([sys.executable, __file__, "--child", which, "--dir", str(d), "--steps",
                                  str(a.steps), "--warmup", str(a.warmup)], capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            res[which] = json.loads(out.stdout.strip().splitlines()[-1])
    ours, trl = res["ours"], res["trl"]
    print(f"model: tiny Qwen3-VL-MoE (hidden 256, 4 layers, 8 experts); 16 examples, batch {BATCH}, "
          f"{a.steps - a.warmup} timed steps after {a.warmup} warm-up; LoRA r={R} on attention + fused experts")
    for name, r in (("ours", ours), ("TRL SFTTrainer", trl)):
        print(f"{name:15s} {r['tokens_per_s']:9.1f} tok/s   peak +{r['peak_mb']:7.1f} MiB   "
              f"tokens {r['tokens']:6d}   in the loss {r['loss_tokens']:6d} "
              f"({100 * r['loss_tokens'] / max(1, r['tokens']):.0f}%)")
    print(f"throughput ratio ours / TRL: {ours['tokens_per_s'] / trl['tokens_per_s']:.2f} (target >= 1.0)")
    print(f"peak memory ratio ours / TRL: {ours['peak_mb'] / max(1e-9, trl['peak_mb']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
