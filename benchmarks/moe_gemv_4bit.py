"""Decode-time cost of one 30B-A3B-shaped MoE layer's chosen experts: bitsandbytes' CPU NF4 GEMV vs bf16.

Run: .venv/bin/python benchmarks/moe_gemv_4bit.py [--repeats N]
The probe for issue 16's "NF4 experts decode as fast as bf16": 8 chosen experts x (gate, up: 768x2048;
down: 2048x768), one token. bitsandbytes' CPU kernel (gemv_4bit_inference_cpu_nf4_bf16, AVX512-BF16)
reads its own packing (`_convert_weight_packed_for_cpu`, a private function of bitsandbytes 0.50) and
blocksizes 32 or 64 only (16, our stored format's, is refused). Prints the time per token-layer, the
output's error against dequantize-then-matmul, the weights' cosine and the memory, with the goal.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

HIDDEN, INTERMEDIATE, EXPERTS = 2048, 768, 8


def main() -> None:
    import bitsandbytes.functional as F

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    weights = [torch.randn(INTERMEDIATE, HIDDEN, dtype=torch.bfloat16) * 0.02 for _ in range(2 * EXPERTS)]
    weights += [torch.randn(HIDDEN, INTERMEDIATE, dtype=torch.bfloat16) * 0.02 for _ in range(EXPERTS)]
    x, xi = torch.randn(1, HIDDEN, dtype=torch.bfloat16), torch.randn(1, INTERMEDIATE, dtype=torch.bfloat16)

    def timed(step) -> float:
        step()
        start = time.perf_counter()
        for _ in range(args.repeats):
            step()
        return (time.perf_counter() - start) / args.repeats * 1000

    bf16_ms = timed(lambda: [(x if k < 2 * EXPERTS else xi) @ w.t() for k, w in enumerate(weights)])
    bf16_mib = sum(w.numel() * 2 for w in weights) / 2**20
    print("goal: NF4 experts decode no slower than bf16 (one token, 8 experts x 3 projections)")
    print(f"  bf16 matmul:            {bf16_ms:6.2f} ms per token-layer, {bf16_mib:5.1f} MiB")
    for blocksize in (32, 64):
        packed, ref = [], None
        for w in weights:
            codes, state = F.quantize_4bit(w, blocksize=blocksize, quant_type="nf4", compress_statistics=False)
            if ref is None:
                ref = (F.dequantize_4bit(codes, state).float(), w)
            codes, state = F._convert_weight_packed_for_cpu(codes, state)
            packed.append((codes, state.shape, state.absmax, state.code, blocksize))
        ms = timed(lambda packed=packed: [torch.ops.bitsandbytes.gemv_4bit(x if k < 2 * EXPERTS else xi, *p)
                            for k, p in enumerate(packed)])
        out = torch.ops.bitsandbytes.gemv_4bit(x, *packed[0]).float()
        exact = x.float() @ ref[0].t()
        err = ((out - exact).norm() / exact.norm()).item()
        cos = torch.nn.functional.cosine_similarity(ref[0].flatten(), ref[1].float().flatten(), dim=0).item()
        mib = sum(p[0].numel() + p[2].numel() * 2 for p in packed) / 2**20
        print(f"  NF4 gemv_4bit, block {blocksize}: {ms:6.2f} ms per token-layer ({bf16_ms / ms:.1f}x bf16), "
              f"{mib:5.1f} MiB, output vs dequantize+matmul {err:.4f}, weight cosine {cos:.4f}")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
