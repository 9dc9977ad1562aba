"""Quantize and decode time of one Qwen3-VL-30B-A3B-shaped experts block (CPU, random weights).

Run: .venv/bin/python benchmarks/moe_speed.py [--experts 8] [--decode-experts 32] [--threads 1]
Prints, measured in this run:
- quantizing experts: the scale search per expert matrix one at a time (`encode_nf4`) and all at once
  (`encode_nf4_many`, absent before it existed), extrapolated to the layer's 128 experts and to 48 layers;
  goal: seconds per layer;
- decoding one token through the block (8 of the experts active): our NF4 experts on bitsandbytes' CPU
  NF4 GEMV (the decode path) and dequantizing (the path before it, still the one for many tokens) against
  the same experts in bf16 (transformers' own block) and bitsandbytes' 4-bit matmul on the same 8 experts;
  goal: ours no slower than bf16;
  and, for the fast path's memory change, the GEMV on the zero-padded copy it used to keep beside the
  stored codes ("padded copy, before"; 8 bits a weight more): now the stored codes themselves, permuted into
  the kernel's layout, are read by two calls a matrix (even / odd 16-blocks' scales);
- one expert at 1-1024 tokens on each path (prefill: does the GEMV still beat dequantizing?).
`--threads` pins torch's CPU threads (on a shared, loaded machine 2 threads thrash; compare runs made
with the same setting).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from functools import partial
from types import SimpleNamespace

import torch

HIDDEN, INTER, EXPERTS, ACTIVE, LAYERS = 2048, 768, 128, 8, 48


def _config(experts: int) -> SimpleNamespace:
    return SimpleNamespace(num_experts=experts, hidden_size=HIDDEN, moe_intermediate_size=INTER,
                           hidden_act="silu", _experts_implementation="eager")


def _median_ms(fn, reps: int) -> float:  # noqa: ANN001
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def bench_quantize(n: int) -> None:
    import r1v4_nb.models.moe_quant as mq

    torch.manual_seed(0)
    gate_up = torch.randn(n, 2 * INTER, HIDDEN, dtype=torch.bfloat16) * 0.02
    down = torch.randn(n, HIDDEN, INTER, dtype=torch.bfloat16) * 0.02
    mq.encode_nf4(gate_up[0, :64])  # imports bitsandbytes, builds tables
    print(f"quantizing {n} experts (gate_up 1536x2048 + down 2048x768 each), goal: seconds per layer")
    t = time.perf_counter()
    for e in range(n):
        mq.encode_nf4(gate_up[e])
        mq.encode_nf4(down[e])
    one = (time.perf_counter() - t) / n
    print(f"  encode_nf4, matrix by matrix: {one:7.3f} s/expert -> {one * EXPERTS:7.1f} s/layer, "
          f"{one * EXPERTS * LAYERS / 60:6.1f} min for {LAYERS} layers")
    if hasattr(mq, "encode_nf4_many"):
        t = time.perf_counter()
        mq.encode_nf4_many(gate_up)
        mq.encode_nf4_many(down)
        many = (time.perf_counter() - t) / n
        print(f"  encode_nf4_many, all at once: {many:7.3f} s/expert -> {many * EXPERTS:7.1f} s/layer, "
              f"{many * EXPERTS * LAYERS / 60:6.1f} min for {LAYERS} layers")


def _padded(block, key: str, e: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:  # noqa: ANN001
    """Expert `e`'s codes zero-padded (each 16-block then 16 zero codes) in the kernel's layout, bf16 scales."""
    from r1v4_nb.models.moe_quant import _levels_to_absmax, gemv_codes

    rows, cols = block.shapes[key]
    blocks = getattr(block, f"nf4_{key}")[e].view(rows, cols // 16, 8)
    padded = torch.cat([blocks, torch.full_like(blocks, 0x77)], dim=2).view(-1)
    scale, top = getattr(block, f"scale_{key}")[e], getattr(block, f"top_{key}")[e]
    absmax = _levels_to_absmax(scale, top).to(torch.bfloat16).view(rows, cols // 16).t().contiguous()
    return gemv_codes(padded, (rows, 2 * cols)).view(rows, cols), absmax, (rows, 2 * cols)


def _padded_gemv(x: torch.Tensor, codes: torch.Tensor, absmax: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    from r1v4_nb.models.moe_quant import GEMV_BLOCK, _nf4_code

    spread = torch.nn.functional.pad(x.to(torch.bfloat16).view(x.shape[0], -1, 16), (0, 16)).view(x.shape[0], -1)
    return torch.ops.bitsandbytes.gemv_4bit(spread, codes, shape, absmax, _nf4_code(x.device), GEMV_BLOCK).float()


def bench_decode(n: int, reps: int) -> None:
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnbf
    from transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe import Qwen3VLMoeTextExperts

    from r1v4_nb.models.moe_quant import QuantizedExperts, decode_path

    torch.manual_seed(1)
    config = _config(n)
    bf16 = Qwen3VLMoeTextExperts(config)
    bf16.gate_up_proj.data = torch.randn(n, 2 * INTER, HIDDEN, dtype=torch.bfloat16) * 0.02
    bf16.down_proj.data = torch.randn(n, HIDDEN, INTER, dtype=torch.bfloat16) * 0.02
    ours = QuantizedExperts.from_experts(bf16, config)
    x = torch.randn(1, HIDDEN, dtype=torch.bfloat16)
    top_k = torch.randperm(n)[:ACTIVE][None]
    weights = torch.softmax(torch.randn(1, ACTIVE), dim=-1).to(torch.bfloat16)
    packed = [(bnbf.quantize_4bit(bf16.gate_up_proj[e], blocksize=64, quant_type="nf4"),
               bnbf.quantize_4bit(bf16.down_proj[e], blocksize=64, quant_type="nf4")) for e in top_k[0].tolist()]

    def bnb_block() -> torch.Tensor:
        out = torch.zeros_like(x)
        for k, ((gq, gs), (dq, ds)) in enumerate(packed):
            gate, up = bnb.matmul_4bit(x, gq.t(), quant_state=gs).chunk(2, dim=-1)
            y = bnb.matmul_4bit(torch.nn.functional.silu(gate) * up, dq.t(), quant_state=ds)
            out += y * weights[0, k]
        return out

    padded = [{k: _padded(ours, k, e) for k in ("gate_up", "down")} for e in top_k[0].tolist()]

    def padded_block() -> torch.Tensor:
        """The fast path as first wired: one GEMV call a matrix on a resident zero-padded copy of its codes."""
        out = torch.zeros_like(x)
        for k, packs in enumerate(padded):
            gate, up = _padded_gemv(x, *packs["gate_up"]).chunk(2, dim=-1)
            out += _padded_gemv(torch.nn.functional.silu(gate) * up, *packs["down"]) * weights[0, k]
        return out

    with torch.inference_mode():
        ref = bf16(x, top_k, weights).float()
        t = time.perf_counter()
        got = ours(x, top_k, weights).float()  # the first pass builds the 8 experts' decode packing
        first = (time.perf_counter() - t) * 1e3
        dequant = QuantizedExperts.from_experts(bf16, config)
        dequant.fast_decode = False
        old = dequant(x, top_k, weights).float()
        cos = torch.nn.functional.cosine_similarity(ref.flatten(), got.flatten(), dim=0)
        cos_old = torch.nn.functional.cosine_similarity(ref.flatten(), old.flatten(), dim=0)
        cos_paths = torch.nn.functional.cosine_similarity(old.flatten(), got.flatten(), dim=0)
        rows = [("bf16 (transformers' experts)", _median_ms(lambda: bf16(x, top_k, weights), reps)),
                ("bitsandbytes matmul_4bit, NF4/64", _median_ms(bnb_block, reps)),
                ("r1v4_nb NF4/16, dequantize", _median_ms(lambda: dequant(x, top_k, weights), reps)),
                ("r1v4_nb gemv, padded copy (before)", _median_ms(padded_block, reps)),
                ("r1v4_nb gemv, one copy, 2 calls (now)", _median_ms(lambda: ours(x, top_k, weights), reps))]
    print(f"decoding one token through the experts ({ACTIVE} of {n} active), goal: r1v4_nb no slower than bf16")
    print(f"  r1v4_nb decode path: {decode_path(ours)}")
    for name, ms in rows:
        print(f"  {name:<36} {ms:8.2f} ms/token  ({rows[0][1] / ms:4.2f}x bf16's speed)")
    print(f"  first token (converts the 8 experts to the kernel's layout): {first:.0f} ms")
    print(f"  output cosine against bf16: gemv {float(cos):.4f}, dequantize {float(cos_old):.4f}; "
          f"gemv against dequantize {float(cos_paths):.4f}")
    bench_rows(bf16, ours, dequant, reps)


def bench_rows(bf16, ours, dequant, reps: int) -> None:  # noqa: ANN001
    """One expert (all tokens routed to it) on each path, by token count."""
    print("one expert by tokens routed to it (ms)")
    print(f"  {'tokens':>6} {'bf16':>8} {'dequantize':>10} {'gemv':>8}")
    one = torch.zeros(1, 1, dtype=torch.long)
    with torch.inference_mode():
        for t in (1, 16, 64, 256, 1024):
            x = torch.randn(t, HIDDEN, dtype=torch.bfloat16)
            top_k, w = one.expand(t, 1), torch.ones(t, 1, dtype=torch.bfloat16)
            ms = [_median_ms(partial(f, x, top_k, w), max(3, reps // 3))
                  for f in (bf16, dequant, ours)]
            print(f"  {t:>6} {ms[0]:8.2f} {ms[1]:10.2f} {ms[2]:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, default=8, help="experts to quantize (timing extrapolated)")
    parser.add_argument("--decode-experts", type=int, default=32, help="experts in the decoded block")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average {open('/proc/loadavg').read().split()[0]} on {os.cpu_count()} cores, "
          f"torch threads {torch.get_num_threads()}")
    bench_quantize(args.experts)
    bench_decode(args.decode_experts, args.reps)


if __name__ == "__main__":
    main()
