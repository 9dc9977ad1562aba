"""Memory and decode time of one Qwen3-VL-30B-A3B-shaped MoE layer: bf16, bitsandbytes' default 4-bit, ours.

A one-layer Qwen3-VL-MoE with the real text shapes of Qwen3-VL-30B-A3B-Instruct
(hidden 2048, 128 experts of intermediate 768, 8 active, 32 query / 4 KV heads
of 128) and random weights is saved as a folder, then loaded three ways through
the normal path: bf16; `BitsAndBytesConfig(load_in_4bit=True)` (bitsandbytes'
default, which leaves the fused 3-D experts in bf16); and `r1v4_nb.models.hf.load(...,
quantization="4bit")` (our per-expert NF4). Ours is measured on both of its paths in the
same run: stored 4-bit decoding by dequantizing (`fast_decode = False`), and the CPU GEMV
fast path after every expert was converted (`build_decode_packing`, as if every expert had
been used). For each: the experts' bytes by `memory_report` (one layer and x48 for the full
model), and the decode time of the layer's MoE block for one token. The row "previous fast path" is computed: the decode packing
the fast path kept before (padded codes, 8 bits a weight, and bf16 scales) beside the stored
experts. Run: .venv/bin/python benchmarks/moe_memory.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

# Qwen3-VL-30B-A3B-Instruct text config (the values that shape the experts and attention).
REAL_TEXT = {
    "hidden_size": 2048,
    "moe_intermediate_size": 768,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "intermediate_size": 6144,
    "num_hidden_layers": 48,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
}


def _build(folder: Path) -> None:
    from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

    from r1v4_nb.models.tiny import build_tokenizer, make_processor

    text = dict(REAL_TEXT, num_hidden_layers=1, vocab_size=1024, max_position_embeddings=4096, tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20],
                                 "mrope_interleaved": True})
    vision = {"depth": 1, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4, "out_hidden_size": 2048,
              "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 64,
              "deepstack_visual_indexes": [0]}
    config = Qwen3VLMoeConfig(text_config=text, vision_config=vision, image_token_id=5, video_token_id=6,
                              vision_start_token_id=3, vision_end_token_id=4)
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = Qwen3VLMoeForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    make_processor(build_tokenizer()).save_pretrained(folder)


def _experts_bytes(model) -> int:
    """The experts' bytes on the path the model runs now: stored tensors plus what the fast path holds."""
    from r1v4_nb.models.moe_quant import memory_report

    report = memory_report(model)
    return report["experts"] + report.get("experts_decode", 0)


def _decode_ms(model, reps: int = 20) -> float:
    block = model.model.language_model.layers[0].mlp
    torch.manual_seed(1)
    xs = [torch.randn(1, 1, REAL_TEXT["hidden_size"], dtype=torch.bfloat16) for _ in range(reps + 2)]
    times = []
    with torch.inference_mode():
        for i, x in enumerate(xs):
            t0 = time.perf_counter()
            block(x)
            if i >= 2:
                times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

    from r1v4_nb.models.hf import load
    from r1v4_nb.models.moe_quant import QuantizedExperts, build_decode_packing, gemv_support

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "one-layer-30b-a3b"
        print("building a one-layer Qwen3-VL-30B-A3B-shaped model (random weights) ...", flush=True)
        _build(folder)
        bf16 = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.bfloat16)
        rows.append(("bf16", _experts_bytes(bf16), _decode_ms(bf16)))
        del bf16
        cfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
        bnb = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.bfloat16, quantization_config=cfg,
                                                          device_map="cpu")
        rows.append(("bitsandbytes 4-bit (default)", _experts_bytes(bnb), _decode_ms(bnb)))
        attn = type(bnb.model.language_model.layers[0].self_attn.q_proj).__name__
        del bnb
        t0 = time.perf_counter()
        ours = load(folder, quantization="4bit", dtype="bfloat16", progress=None)
        load_s = time.perf_counter() - t0
        blocks = [b for b in ours.model.modules() if isinstance(b, QuantizedExperts)]
        for b in blocks:
            b.fast_decode = False
        stored = _experts_bytes(ours.model)
        rows.append(("ours, stored 4-bit (dequantize)", stored, _decode_ms(ours.model)))
        for b in blocks:
            b.fast_decode = True
        if gemv_support()[0]:
            t0 = time.perf_counter()
            built = build_decode_packing(ours.model)
            build_s = time.perf_counter() - t0
            weights = sum(b.num_experts * sum(r * c for r, c in b.shapes.values()) for b in blocks)
            rows.append(("ours, previous fast path", stored + weights + weights // 8, float("nan")))
            rows.append(("ours, fast path (all used)", _experts_bytes(ours.model), _decode_ms(ours.model)))
        else:
            print(f"no fast path on this CPU: {gemv_support()[1]}")
    base = rows[0][1]
    print(f"\nexperts of one layer (128 x [1536x2048 + 2048x768]); the full model has {REAL_TEXT['num_hidden_layers']}")
    print(f"{'path':<34} {'MiB/layer':>10} {'GiB x48':>8} {'vs bf16':>8} {'decode ms/token':>16}")
    for name, nbytes, ms in rows:
        print(f"{name:<34} {nbytes / 2**20:>10.1f} {nbytes * 48 / 2**30:>8.2f} {base / nbytes:>7.2f}x {ms:>16.2f}")
    print(f"\nbitsandbytes' default path quantized attention ({attn}) but left the fused experts in bf16;")
    print(f"ours quantized them while loading ({load_s:.1f}s for the layer, on this CPU).")
    if gemv_support()[0]:
        print(f"converting the layer's {built} expert matrices to the GEMV layout took {build_s:.2f}s and added "
              f"{(rows[-1][1] - stored) / 2**20:.1f} MiB of bf16 scales (the codes are the stored ones, permuted)")
    with open("/proc/loadavg") as f:
        print(f"load average: {f.read().strip()}")


if __name__ == "__main__":
    main()
