"""Real 4-bit experts for Qwen3-(VL-)MoE models.

In transformers 5 the experts of a Qwen3-MoE layer are two fused 3-D parameters,
`gate_up_proj [E, 2I, H]` and `down_proj [E, H, I]`, not `nn.Linear` modules, so
bitsandbytes' 4-bit conversion leaves them in full precision and a "4-bit"
30B-A3B still needs ~60 GB. `QuantizedExperts` replaces the experts block: each
expert's two matrices are NF4-quantized on their own and dequantized one hit
expert at a time in the forward pass (bitsandbytes' `dequantize_4bit` decodes
the 4-bit codes). Plain NF4 (blocks of 64, fp32 absmax) keeps a SwiGLU expert's
output only ~0.987 cosine-close to full precision, so we use blocks of 16 whose
scale is chosen to minimise the block's squared error and stored as one byte on
a per-matrix log grid (2**(1/32) steps): 4.5 bits a weight, 3.55x smaller than
fp16, output cosine ~0.992. Its buffers are ordinary state-dict
entries, so the model saves and reloads with `save_pretrained` / `from_pretrained`.

Three ways in:
- `quantize_experts(model)`: swap the blocks of a model already in memory.
- `quantized_moe_class(cls, receive=True)`: a model class whose experts quantize
  each fused tensor as the loader hands it over (peak memory: one layer's experts).
- `quantized_moe_class(cls, receive=False)`: reload a folder saved after quantizing
  (its config carries `r1v4_experts_quant`).

On CPU: a token's chosen experts would be dequantized on every token (5x slower than bf16), so the experts
are computed by bitsandbytes' native CPU NF4 GEMV (`torch.ops.bitsandbytes.gemv_4bit`, AVX512-BF16)
instead, at decode and prefill alike (it beats dequantizing at every token count measured, 1 to 1024). That
kernel takes blocks of 32 or 64 with a bf16 absmax, in its own layout. Re-blocking our codes to 32 (or
searching 32-blocks from the original weights) drops a SwiGLU expert's output to ~0.986-0.990 cosine, so the
weights stay ours: each 32-block the kernel reads is two of our 16-blocks, and each matrix is multiplied in
two calls, one with the even 16-blocks' scales (bf16) and the input's odd 16-blocks zeroed, one the other way
round; their sum is the matrix product on our weights (scales rounded to bf16). There is one copy of the
codes: the first time an expert is decoded its stored codes are permuted in place into the kernel's byte
layout (the same nibbles, 4 bits a weight) and its scales kept beside them in bf16 (1 bit a weight). Saving,
moving, loading into the block and passes that read the stored layout (gradients, LoRA) permute them back
exactly first (`stored_layout`), so every way in (quantize, cache, reload) gets the fast path and what is
saved is unchanged. `build_decode_packing(model)` converts every expert up front.
`gemv_support()` checks once that the kernel exists and computes right on this CPU; without it, or with
`fast_decode = False` on a block, the block keeps dequantizing (`decode_path(model)` says which).

`ExpertsCache` keeps the packed experts of a model folder beside it (`.r1v4-nf4/`), keyed by the
weight files' names, sizes and times, so the second 4-bit load of the same folder reads them instead
of searching scales again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import torch
from torch import nn

BLOCKSIZE = 16
_CODE_BLOCK = 64  # bitsandbytes' block for decoding codes with unit absmax
_STEPS = 32  # scale levels per octave
CONFIG_KEY = "r1v4_experts_quant"
GEMV_BLOCK = 32  # bitsandbytes' CPU GEMV block (32 or 64): two of our 16-blocks, one call for each
_GEMV_N = 32  # rows interleaved per group in bitsandbytes' CPU packing (its `block_n`)
# Converting an expert's codes between the stored and the kernel's layout permutes them in place, so two
# threads converting the same expert would permute it twice (garbage weights). One lock for all blocks: a
# conversion happens once per expert, and a module-level lock keeps the blocks picklable and deep-copyable.
_LAYOUT_LOCK = threading.RLock()
CACHE_FORMAT = 1  # bump when the encoding changes: old cache files are then ignored
# Buffer names must not start with "gate_up_proj" / "down_proj": transformers'
# checkpoint conversions for qwen3_vl_moe match those prefixes and would transpose them.
_PROJ = {"gate_up_proj": "gate_up", "down_proj": "down"}


def _act(config: Any):
    from transformers.activations import ACT2FN

    return ACT2FN[config.hidden_act]


class QuantizedExperts(nn.Module):
    """Experts block with NF4 per-expert weights; same call signature as transformers' experts."""

    def __init__(self, config: Any, *, receive: bool = False, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.num_experts = config.num_experts
        self.hidden_dim = config.hidden_size
        self.intermediate_dim = config.moe_intermediate_size
        self.act_fn = _act(config)
        self.shapes = {
            "gate_up": (2 * self.intermediate_dim, self.hidden_dim),
            "down": (self.hidden_dim, self.intermediate_dim),
        }
        for shape in self.shapes.values():
            if (shape[0] * shape[1]) % BLOCKSIZE:
                raise ValueError(f"expert matrix {shape} is not a whole number of {BLOCKSIZE}-element blocks")
        self._receiving = receive
        if receive:
            # Placeholders the loader fills; __setattr__ quantizes them as they arrive.
            shape_dtype = dtype or torch.get_default_dtype()
            e, h, i = self.num_experts, self.hidden_dim, self.intermediate_dim
            gate_up = torch.empty(e, 2 * i, h, dtype=shape_dtype)
            down = torch.empty(e, h, i, dtype=shape_dtype)
            self.register_parameter("gate_up_proj", nn.Parameter(gate_up, requires_grad=False))
            self.register_parameter("down_proj", nn.Parameter(down, requires_grad=False))
        else:
            for key in self.shapes:
                self._register_packed(key, None)

    def _register_packed(self, key: str, device: torch.device | None) -> None:
        self.stored_layout()
        rows, cols = self.shapes[key]
        n, e = rows * cols, self.num_experts
        self.register_buffer(f"nf4_{key}", torch.empty(e, n // 2, dtype=torch.uint8, device=device))
        self.register_buffer(f"scale_{key}", torch.empty(e, n // BLOCKSIZE, dtype=torch.uint8, device=device))
        self.register_buffer(f"top_{key}", torch.empty(e, dtype=torch.float32, device=device))

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _PROJ and self.__dict__.get("_receiving") and isinstance(value, torch.Tensor) and not value.is_meta:
            self._store(_PROJ[name], value)
            self._parameters.pop(name, None)
            return
        super().__setattr__(name, value)

    @torch.no_grad()
    def _store(self, key: str, weight: torch.Tensor) -> None:
        """Quantize a fused [E, rows, cols] tensor (all experts in one pass) into this block's buffers."""
        rows, cols = self.shapes[key]
        if tuple(weight.shape) == (self.num_experts, cols, rows) and rows != cols:
            weight = weight.transpose(1, 2)
        if tuple(weight.shape) != (self.num_experts, rows, cols):
            raise ValueError(f"experts {key}: expected shape {(self.num_experts, rows, cols)}, got {tuple(weight.shape)}")
        self._register_packed(key, weight.device)
        cache, name = self.__dict__.get("_cache"), self.__dict__.get("_cache_name", "")
        cached = cache.get(f"{name}.{key}") if cache is not None else None
        if cached is not None:
            packed, scale, top = cached
        else:
            packed, scale, top = encode_nf4_many(weight)
            if cache is not None:
                cache.put(f"{name}.{key}", (packed, scale, top))
        getattr(self, f"nf4_{key}").copy_(packed)
        getattr(self, f"scale_{key}").copy_(scale)
        getattr(self, f"top_{key}").copy_(top)
        if all(f"nf4_{k}" in self._buffers for k in self.shapes):
            self.__dict__["_receiving"] = False

    @classmethod
    def from_experts(cls, experts: nn.Module, config: Any) -> QuantizedExperts:
        """Quantize an unquantized transformers experts block."""
        q = cls(config, receive=True)
        q.gate_up_proj = experts.gate_up_proj.detach()
        q.down_proj = experts.down_proj.detach()
        return q

    def weight(self, key: str, e: int, dtype: torch.dtype) -> torch.Tensor:
        """Expert `e`'s `key` matrix, dequantized (its codes go back to the stored layout first)."""
        self._restore(key, e)
        packed = getattr(self, f"nf4_{key}")[e]
        scale = getattr(self, f"scale_{key}")[e]
        top = getattr(self, f"top_{key}")[e]
        return decode_nf4(packed, scale, top, self.shapes[key], dtype)

    def forward(
        self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
    ) -> torch.Tensor:
        if self._receiving:
            raise RuntimeError("QuantizedExperts used before its weights were loaded")
        out = torch.zeros_like(hidden_states)
        # bitsandbytes' CPU decoder is ~3x faster to fp32 than to bf16, so CPU computes in fp32.
        cpu = hidden_states.device.type == "cpu"
        dtype = torch.float32 if cpu else hidden_states.dtype
        # the GEMV has no backward: a pass that trains through the experts (LoRA before them) dequantizes
        gemv = cpu and not (torch.is_grad_enabled() and hidden_states.requires_grad) and self.uses_gemv
        with torch.no_grad():
            hit = torch.unique(top_k_index).tolist()
        for e in hit:
            if e >= self.num_experts:
                continue
            token_idx, k_pos = torch.where(top_k_index == e)
            if gemv:
                y = self._expert_gemv(e, hidden_states[token_idx])
            else:
                x = hidden_states[token_idx].to(dtype)
                gate, up = nn.functional.linear(x, self.weight("gate_up", e, dtype)).chunk(2, dim=-1)
                y = nn.functional.linear(self.act_fn(gate) * up, self.weight("down", e, dtype))
            y = y * top_k_weights[token_idx, k_pos, None].to(y.dtype)
            out.index_add_(0, token_idx, y.to(out.dtype))
        return out

    @property
    def uses_gemv(self) -> bool:
        """Whether forward passes on CPU run on bitsandbytes' NF4 GEMV (see `gemv_support`)."""
        if not self.__dict__.get("fast_decode", True):
            return False
        shapes_ok = all(r % _GEMV_N == 0 and c % GEMV_BLOCK == 0 for r, c in self.shapes.values())
        return shapes_ok and gemv_support()[0]

    def _built(self) -> set[tuple[str, int]]:
        """(key, expert) pairs whose codes are in the kernel's layout (`nf4_*` rows permuted in place)."""
        return self.__dict__.setdefault("_gemv_built", set())

    @torch.no_grad()
    def _gemv_packing(self, key: str, e: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Expert `e`'s `key` codes in the kernel's layout (a view of `nf4_key[e]`) and its bf16 absmax; the
        first call permutes the stored codes in place (no second copy) and rounds the scales to bf16."""
        rows, cols = self.shapes[key]
        packed = getattr(self, f"nf4_{key}")
        absmax = self._buffers.get(f"gemv_absmax_{key}")
        if absmax is None or (key, e) not in self._built():
            with _LAYOUT_LOCK:  # another thread may have made the buffer or converted the expert while this one waited
                absmax = self._buffers.get(f"gemv_absmax_{key}")
                if absmax is None:
                    # Non-persistent, never saved; its pages stay unallocated until an expert is built into them. Not
                    # an inference tensor even when first built under inference_mode, so later builds may write into it.
                    with torch.inference_mode(False):
                        absmax = torch.empty(self.num_experts, 2, cols // GEMV_BLOCK, rows, dtype=torch.bfloat16,
                                             device=packed.device)
                    self.register_buffer(f"gemv_absmax_{key}", absmax, persistent=False)
                if (key, e) not in self._built():
                    scale, top = getattr(self, f"scale_{key}")[e], getattr(self, f"top_{key}")[e]
                    absmax[e].copy_(gemv_absmax(scale, top, self.shapes[key]))
                    packed[e].copy_(gemv_codes(packed[e], self.shapes[key]))
                    self._built().add((key, e))
        return packed[e], absmax[e]

    @torch.no_grad()
    def _restore(self, key: str, e: int) -> None:
        """Put expert `e`'s `key` codes back in the stored layout (exact: the same nibbles, permuted back)."""
        with _LAYOUT_LOCK:
            if (key, e) in self._built():
                packed = getattr(self, f"nf4_{key}")
                packed[e].copy_(stored_codes(packed[e], self.shapes[key]))
                self._built().discard((key, e))

    @torch.no_grad()
    def build_decode_packing(self) -> int:
        """Convert every expert to the kernel's layout now (so the first tokens do not pay it); returns how many
        matrices were converted. Does nothing where the GEMV does not run (GPU, no kernel, turned off)."""
        if self._receiving or not self.uses_gemv or self.nf4_gate_up.device.type != "cpu":
            return 0
        todo = [(k, e) for k in self.shapes for e in range(self.num_experts) if (k, e) not in self._built()]
        for key, e in todo:
            self._gemv_packing(key, e)
        return len(todo)

    @torch.no_grad()
    def stored_layout(self) -> None:
        """Every expert's codes back in the stored layout, the decode scales dropped: before saving, moving,
        loading into the block or anything else that reads `nf4_*` as a whole."""
        with _LAYOUT_LOCK:
            for key, e in sorted(self._built()):
                self._restore(key, e)
            for key in self.shapes:
                self._buffers.pop(f"gemv_absmax_{key}", None)

    def decode_bytes(self) -> int:
        """Bytes the fast path holds beside the stored packing: the bf16 scales of the experts built so far."""
        per = {k: (r * c // BLOCKSIZE) * 2 for k, (r, c) in self.shapes.items()}
        return sum(per[k] for k, _ in self._built())

    def _apply(self, fn, recurse: bool = True):
        self.stored_layout()
        return super()._apply(fn, recurse)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        self.stored_layout()
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.stored_layout()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _expert_gemv(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """One expert's SwiGLU on bitsandbytes' CPU NF4 GEMV (bf16 in, fp32 sums of its bf16 outputs)."""
        gate, up = gemv_matmul(x, *self._gemv_packing("gate_up", e), self.shapes["gate_up"]).chunk(2, dim=-1)
        return gemv_matmul(self.act_fn(gate) * up, *self._gemv_packing("down", e), self.shapes["down"])

    def extra_repr(self) -> str:
        return f"experts={self.num_experts}, hidden={self.hidden_dim}, intermediate={self.intermediate_dim}, nf4"


_CODES: dict[str, torch.Tensor] = {}
_SEARCH = 12  # candidate scales per block, from the block's absmax down by 2**(-11/32) (~0.79x)
# The scale search reads each weight's code under all 12 candidates from one table indexed by the weight's
# sign and u = 32 * log2(|w| / s0) (s0: the first candidate), in bins of 1/_UBINS grid step over [_UMIN, 0]:
# one gather per weight instead of 12 divisions and binary searches. Below _UMIN every candidate codes 0.
_UBINS = 16
_UMIN = -192
_CHUNK = 8192  # blocks per step of the search: its working set stays in cache
_QBINS = 256  # bins over [-1, 1] for the final nearest-code lookup; narrower than any gap between midpoints
_TABLES: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _nf4_code(device: torch.device) -> torch.Tensor:
    from bitsandbytes.functional import get_4bit_type

    key = str(device)
    if key not in _CODES:
        _CODES[key] = get_4bit_type("nf4", device=device)
    return _CODES[key]


def _levels_to_absmax(scale: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    return top * torch.exp2((scale.float() - 255.0) / _STEPS)


def _tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(search table [2 * bins, 12]: the code value under each candidate, by sign and u bin; for each of
    _QBINS bins over [-1, 1] the number of code midpoints below it; the midpoints, then +inf)."""
    key = str(device)
    if key not in _TABLES:
        code = _nf4_code(device)
        mids = (code[1:] + code[:-1]) / 2
        bins = -_UMIN * _UBINS
        u = _UMIN + (torch.arange(bins, device=device, dtype=torch.float32) + 0.5) / _UBINS
        j = torch.arange(_SEARCH, device=device, dtype=torch.float32)
        mag = torch.exp2((u[:, None] + j[None, :]) / _STEPS)
        table = torch.cat([code[torch.bucketize(mag.clamp(max=1), mids)],
                           code[torch.bucketize((-mag).clamp(min=-1), mids)]])
        edges = torch.linspace(-1, 1, _QBINS + 1, device=device)[:-1]
        below = torch.bucketize(edges, mids, out_int32=True)
        _TABLES[key] = (table.contiguous(), below, torch.cat([mids, mids.new_tensor([float("inf")])]))
    return _TABLES[key]


def _encode_blocks(blocks: torch.Tensor, top: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes [N, 16] and scale levels [N] of N blocks whose matrices' top scales are `top` [N]."""
    table, below, mids = _tables(blocks.device)
    amax = blocks.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
    k0 = (255 + torch.ceil(_STEPS * torch.log2(amax / top) - 1e-6)).clamp(0, 255)
    steps = torch.arange(_SEARCH, device=blocks.device, dtype=k0.dtype)
    ks = k0[:, None] - steps
    s = _levels_to_absmax(ks.clamp(min=0), top[:, None])  # [N, 12]
    x0 = blocks / s[:, :1]
    u = torch.log2(x0.abs()).mul_(_STEPS).clamp_(_UMIN, 0).sub_(_UMIN).mul_(_UBINS)
    idx = u.to(torch.int32).clamp_(max=-_UMIN * _UBINS - 1).add_((x0 < 0).int() * (-_UMIN * _UBINS))
    values = table.index_select(0, idx.view(-1)).view(*blocks.shape, _SEARCH)  # [N, 16, 12]
    a = values.square().sum(dim=1)
    b = values.mul_(blocks[:, :, None]).sum(dim=1)
    err = s * (s * a - 2 * b)  # the block's squared error, less its constant sum of w**2
    err.masked_fill_(ks < 0, float("inf"))  # below level 0 a candidate repeats level 0
    k = ks.gather(1, err.argmin(dim=1, keepdim=True)).squeeze(1)
    x = (blocks / _levels_to_absmax(k, top)[:, None]).clamp_(-1, 1).view(-1)
    # nearest code = number of midpoints below x: those below x's bin, plus the one inside it if below x
    q = below.index_select(0, x.add(1).mul_(_QBINS / 2).to(torch.int32).clamp_(max=_QBINS - 1))
    q += x > mids.index_select(0, q)
    return q.view(blocks.shape).to(torch.uint8), k.to(torch.uint8)


@torch.no_grad()
def encode_nf4_many(w: torch.Tensor, device: torch.device | str | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`encode_nf4` of each matrix of a stack [E, rows, cols] at once: packed [E, n/2], scales [E, n/16],
    tops [E]. Works through the blocks a cache-sized chunk at a time, on `device` (default: a CUDA GPU
    when there is one, else where `w` is); the results land where `w` is."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else w.device
    device = torch.device(device)
    e = w.shape[0]
    n = w[0].numel()
    if n % BLOCKSIZE:
        raise ValueError(f"a matrix of {n} weights is not a whole number of {BLOCKSIZE}-element blocks")
    nb = n // BLOCKSIZE
    flat = w.reshape(e * nb, BLOCKSIZE)
    tops = torch.stack([m.abs().amax() for m in w]).float().clamp_min(torch.finfo(torch.float32).tiny)
    tops_dev = tops.to(device)
    packed = torch.empty(e * nb, BLOCKSIZE // 2, dtype=torch.uint8, device=w.device)
    scales = torch.empty(e * nb, dtype=torch.uint8, device=w.device)
    chunk = _CHUNK if device.type == "cpu" else 64 * _CHUNK
    for i in range(0, e * nb, chunk):
        blocks = flat[i:i + chunk].to(device, torch.float32)
        owner = torch.arange(i, i + blocks.shape[0], device=device) // nb
        q, k = _encode_blocks(blocks, tops_dev[owner])
        packed[i:i + chunk] = ((q[:, 0::2] << 4) | q[:, 1::2]).to(w.device)
        scales[i:i + chunk] = k.to(w.device)
    return packed.view(e, n // 2), scales.view(e, nb), tops.to(w.device)


@torch.no_grad()
def encode_nf4(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """NF4 codes (packed two a byte, high nibble first, as bitsandbytes packs), one scale byte a
    16-weight block, and the matrix's top scale. Each block's scale is the candidate on the log
    grid (at or just above its absmax, and 11 steps below) that minimises the block's squared error."""
    packed, scale, top = encode_nf4_many(w[None])
    return packed[0], scale[0], top[0]


_UNIT: dict[tuple[str, int], torch.Tensor] = {}


def decode_nf4(
    packed: torch.Tensor, scale: torch.Tensor, top: torch.Tensor, shape: tuple[int, int], dtype: torch.dtype
) -> torch.Tensor:
    """Inverse of `encode_nf4`: bitsandbytes decodes the codes (unit absmax), we apply the block scales."""
    import bitsandbytes.functional as bnbf
    from bitsandbytes.functional import QuantState

    n = shape[0] * shape[1]
    key = (str(packed.device), n)
    if key not in _UNIT:
        _UNIT[key] = torch.ones(n // _CODE_BLOCK, dtype=torch.float32, device=packed.device)
    state = QuantState(
        absmax=_UNIT[key], shape=torch.Size(shape), code=_nf4_code(packed.device),
        blocksize=_CODE_BLOCK, quant_type="nf4", dtype=dtype,
    )
    codes = bnbf.dequantize_4bit(packed, state)
    absmax = _levels_to_absmax(scale, top).to(dtype)
    return (codes.reshape(-1, BLOCKSIZE) * absmax[:, None]).reshape(shape)


def _cpu_layout(rowmajor: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Packed codes [rows, cols/2] (row-major, high nibble first) in the layout bitsandbytes' CPU GEMV reads
    (`bitsandbytes.functional._convert_weight_packed_for_cpu`): per group of 32 rows and column pair p,
    byte 2r+j holds row r's code at column 2p+j in its low nibble and row 16+r's in its high nibble."""
    grouped = rowmajor.view(rows // _GEMV_N, 2, 16, cols // 2)
    lo, hi = grouped[:, 0], grouped[:, 1]  # rows 32g + r and 32g + 16 + r
    out = torch.empty(rows // _GEMV_N, cols // 2, 16, 2, dtype=torch.uint8, device=rowmajor.device)
    out[..., 0] = ((hi & 0xF0) | (lo >> 4)).transpose(1, 2)
    out[..., 1] = ((hi << 4) | (lo & 0x0F)).transpose(1, 2)
    return out.view(rows, cols // 2)


def _stored_layout(layout: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Inverse of `_cpu_layout`: the row-major packed codes [rows, cols/2] back from the kernel's layout."""
    b = layout.view(rows // _GEMV_N, cols // 2, 16, 2)
    b0, b1 = b[..., 0], b[..., 1]
    out = torch.empty(rows // _GEMV_N, 2, 16, cols // 2, dtype=torch.uint8, device=layout.device)
    out[:, 0] = (((b0 & 0x0F) << 4) | (b1 & 0x0F)).transpose(1, 2)  # rows 32g + r
    out[:, 1] = ((b0 & 0xF0) | (b1 >> 4)).transpose(1, 2)  # rows 32g + 16 + r
    return out.view(rows, cols // 2)


def _check_gemv_shape(shape: tuple[int, int]) -> None:
    rows, cols = shape
    if rows % _GEMV_N or cols % GEMV_BLOCK:
        raise ValueError(f"a {rows}x{cols} matrix does not fit bitsandbytes' CPU GEMV "
                         f"({_GEMV_N} rows a group, {GEMV_BLOCK} columns a block)")


def gemv_codes(packed: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Stored packed codes (row-major, n/2 bytes) permuted into the kernel's byte layout (that of
    `bitsandbytes.functional._convert_weight_packed_for_cpu`): the same nibbles, 4 bits a weight."""
    _check_gemv_shape(shape)
    rows, cols = shape
    return _cpu_layout(packed.reshape(rows, cols // 2), rows, cols).view(packed.shape)


def stored_codes(layout: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Inverse of `gemv_codes` (exact)."""
    rows, cols = shape
    return _stored_layout(layout.reshape(rows, cols // 2), rows, cols).view(layout.shape)


def gemv_absmax(scale: torch.Tensor, top: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """The block scales as the two kernel calls read them: bf16 [2, cols / 32, rows], the even 16-blocks'
    scales then the odd ones'."""
    rows, cols = shape
    absmax = _levels_to_absmax(scale, top).to(torch.bfloat16).view(rows, cols // GEMV_BLOCK, 2)
    return absmax.permute(2, 1, 0).contiguous()


_HALVES: dict[tuple[str, int], torch.Tensor] = {}


def gemv_inputs(x: torch.Tensor) -> torch.Tensor:
    """x [tokens, cols] as the two kernel calls take it: bf16 [2, tokens, cols], the first with each odd
    16-block zeroed, the second with each even one (so each call sees only the blocks its scales are for)."""
    key = (str(x.device), x.shape[1])
    if key not in _HALVES:
        even = (torch.arange(x.shape[1], device=x.device) // BLOCKSIZE) % 2 == 0
        _HALVES[key] = torch.stack([even, ~even]).to(torch.bfloat16)[:, None, :]
    return x.to(torch.bfloat16)[None] * _HALVES[key]


def gemv_matmul(x: torch.Tensor, codes: torch.Tensor, absmax: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """x [tokens, cols] times the [rows, cols] matrix (`gemv_codes`, `gemv_absmax`) transposed, fp32
    [tokens, rows]: two calls of the kernel, summed."""
    xs, code = gemv_inputs(x), _nf4_code(x.device)
    gemv = torch.ops.bitsandbytes.gemv_4bit
    even = gemv(xs[0], codes, shape, absmax[0], code, GEMV_BLOCK).float()
    return even.add_(gemv(xs[1], codes, shape, absmax[1], code, GEMV_BLOCK))


def gemv_unpack(codes: torch.Tensor, absmax: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """The fp32 [rows, cols] matrix `gemv_matmul` multiplies by (what the two kernel calls stand for)."""
    rows, cols = shape
    b = stored_codes(codes, shape).view(rows, cols // 2)
    q = torch.stack([b >> 4, b & 0xF], dim=2).view(rows, cols)
    scale = absmax.float().permute(2, 1, 0).reshape(rows, cols // BLOCKSIZE).repeat_interleave(BLOCKSIZE, dim=1)
    return _nf4_code(codes.device)[q.long()] * scale


_GEMV_SUPPORT: list[tuple[bool, str]] = []


def gemv_support() -> tuple[bool, str]:
    """(usable, why) for bitsandbytes' native CPU NF4 GEMV, checked once: the kernel must be registered
    for CPU (AVX512-BF16) and multiply a small packed matrix as `gemv_unpack` + matmul does (to bf16
    rounding: a kernel that read another layout would be off by ~100%)."""
    if not _GEMV_SUPPORT:
        _GEMV_SUPPORT.append(_probe_gemv())
    return _GEMV_SUPPORT[0]


def _probe_gemv() -> tuple[bool, str]:
    try:
        import bitsandbytes.functional as bnbf

        if not bnbf.has_avx512bf16():
            return False, "this CPU has no AVX512-BF16, which bitsandbytes' CPU NF4 GEMV needs"
        gen = torch.Generator().manual_seed(0)
        w = torch.randn(2 * _GEMV_N, 4 * BLOCKSIZE, generator=gen) * 0.02
        x = torch.randn(3, w.shape[1], generator=gen).to(torch.bfloat16)
        packed, scale, top = encode_nf4(w)
        shape = (w.shape[0], w.shape[1])
        codes, absmax = gemv_codes(packed, shape), gemv_absmax(scale, top, shape)
        got = gemv_matmul(x, codes, absmax, shape)
        ref = x.float() @ gemv_unpack(codes, absmax, shape).t()
        err = float((got.float() - ref).norm() / ref.norm())
    except Exception as exc:  # a missing op, library or symbol: keep dequantizing
        return False, f"bitsandbytes' CPU NF4 GEMV is unavailable ({type(exc).__name__}: {exc})"
    if not err < 0.02:
        return False, f"bitsandbytes' CPU NF4 GEMV computes wrong on this CPU (relative error {err:.3f})"
    return True, "bitsandbytes gemv_4bit"


def decode_path(model: nn.Module) -> str | None:
    """How the model's 4-bit experts run a few-token (decode) forward pass; None without such experts."""
    blocks = [m for m in model.modules() if isinstance(m, QuantizedExperts)]
    if not blocks:
        return None
    if any(b.nf4_gate_up.device.type != "cpu" for b in blocks if not b._receiving):
        return "dequantize (on the GPU)"
    ok, why = gemv_support()
    if not ok:
        return f"dequantize ({why})"
    if not all(b.uses_gemv for b in blocks):
        return "dequantize (turned off or a matrix shape the GEMV cannot take)"
    return f"bitsandbytes gemv_4bit (our NF4 blocks of 16, two to its {GEMV_BLOCK}, one call each)"


def build_decode_packing(model: nn.Module) -> int:
    """Convert every 4-bit expert of `model` to the CPU GEMV's layout now instead of at its first use; returns
    the matrices converted (0 where the GEMV does not run). Costs no codes memory, 1 bit a weight of bf16
    scales, and about 1-2 ms a 30B-A3B expert matrix."""
    return sum(b.build_decode_packing() for b in model.modules() if isinstance(b, QuantizedExperts))


def _is_experts(module: nn.Module) -> bool:
    return (
        not isinstance(module, QuantizedExperts)
        and isinstance(getattr(module, "gate_up_proj", None), torch.Tensor)
        and module.gate_up_proj.dim() == 3
        and isinstance(getattr(module, "down_proj", None), torch.Tensor)
    )


def _text_config(config: Any) -> Any:
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def mark_config(config: Any) -> None:
    """Record in the config that the experts are stored quantized, so a reload builds `QuantizedExperts`."""
    setattr(config, CONFIG_KEY, {"quant_type": "nf4", "blocksize": BLOCKSIZE, "scale": f"uint8 log2/{_STEPS}"})


def is_marked(config: Any) -> bool:
    return bool(getattr(config, CONFIG_KEY, None))


@torch.no_grad()
def quantize_experts(model: nn.Module) -> int:
    """Replace every fused experts block in `model` with a `QuantizedExperts`; returns how many."""
    config = _text_config(getattr(model, "config", None))
    if config is None:
        raise ValueError("quantize_experts needs a transformers model (with .config)")
    names = [n for n, m in model.named_modules() if _is_experts(m)]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, child)
        setattr(parent, child, QuantizedExperts.from_experts(old, config))
        del old
    if names:
        mark_config(model.config)
    return len(names)


def _replace_all(model: nn.Module, *, receive: bool, cache: ExpertsCache | None = None) -> None:
    config = _text_config(model.config)
    for name, module in list(model.named_modules()):
        if _is_experts(module):
            parent_name, _, child = name.rpartition(".")
            dtype = module.gate_up_proj.dtype
            q = QuantizedExperts(config, receive=receive, dtype=dtype)
            if cache is not None:
                q.__dict__.update(_cache=cache, _cache_name=name)
            setattr(model.get_submodule(parent_name), child, q)


def quantized_moe_class(base: type, *, receive: bool, cache: ExpertsCache | None = None) -> type:
    """A subclass of a transformers MoE model class whose experts are `QuantizedExperts`.

    receive=True: loads an unquantized checkpoint and quantizes each experts tensor as it arrives
    (reading it from `cache` instead when the cache holds it, and adding it to the cache otherwise).
    receive=False: loads a checkpoint that already holds the packed NF4 buffers.
    """

    class QuantizedMoe(base):
        def __init__(self, config, *args, **kwargs):
            super().__init__(config, *args, **kwargs)
            _replace_all(self, receive=receive, cache=cache)
            mark_config(self.config)

    QuantizedMoe.__name__ = base.__name__
    QuantizedMoe.__qualname__ = base.__qualname__
    return QuantizedMoe


class ExpertsCache:
    """Packed experts of one model folder, in a safetensors file beside it (or under the user cache
    when the folder is read-only), named by a fingerprint of the folder's weight files and of the
    dtype they were loaded in: a changed checkpoint or format misses instead of serving stale codes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.read = 0
        self._new: dict[str, torch.Tensor] = {}
        self._file = None
        if path.is_file():
            from safetensors import safe_open

            try:
                self._file = safe_open(str(path), framework="pt")
            except Exception:  # a truncated or foreign file: quantize again and overwrite it
                self._file = None

    @classmethod
    def for_model(cls, folder: str | Path, dtype: torch.dtype) -> ExpertsCache | None:
        """The cache of a local model folder (None when it has no safetensors weights)."""
        folder = Path(folder)
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            return None
        stats = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
        key = json.dumps([CACHE_FORMAT, BLOCKSIZE, _STEPS, str(dtype), stats])
        name = f"experts-{hashlib.sha256(key.encode()).hexdigest()[:16]}.safetensors"
        if os.access(folder, os.W_OK):
            return cls(folder / ".r1v4-nf4" / name)
        from ..paths import cache_root

        where = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
        return cls(cache_root() / "nf4" / f"{where}-{name}")

    def get(self, key: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(packed, scale, top) of one fused tensor, or None when the cache does not hold it."""
        if self._file is None or f"{key}.nf4" not in self._file.keys():
            return None
        self.read += 1
        return tuple(self._file.get_tensor(f"{key}.{part}") for part in ("nf4", "scale", "top"))

    def put(self, key: str, value: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        for part, t in zip(("nf4", "scale", "top"), value, strict=True):
            self._new[f"{key}.{part}"] = t

    @property
    def written(self) -> int:
        """Fused tensors quantized in this load (to be saved)."""
        return len(self._new) // 3

    def save(self) -> None:
        """Write what was quantized in this load (with what was read), atomically."""
        if not self._new:
            return
        from safetensors.torch import save_file

        tensors = dict(self._new)
        if self._file is not None:
            for k in self._file.keys():
                tensors.setdefault(k, self._file.get_tensor(k))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, self.path)
        self._new.clear()


def _category(name: str) -> str:
    if ".visual." in f".{name}" or "vision" in name:
        return "vision"
    if ".experts." in name or name.endswith(".mlp.gate.weight"):
        return "experts"
    if "self_attn" in name:
        return "attention"
    if "embed_tokens" in name or name.startswith("lm_head"):
        return "embeddings"
    if ".mlp." in name:
        return "mlp"
    return "other"


def _tensor_bytes(t: torch.Tensor) -> int:
    n = t.numel() * t.element_size()
    state = getattr(t, "quant_state", None)
    if state is not None:
        absmax = getattr(state, "absmax", None)
        if isinstance(absmax, torch.Tensor):
            n += absmax.numel() * absmax.element_size()
    return n


def memory_report(model: nn.Module) -> dict[str, int]:
    """Bytes of parameters and buffers per component (vision, attention, experts, embeddings, ...).
    `experts_decode` is what the CPU fast path holds beside the stored experts: the bf16 scales of the
    experts converted so far (their codes are the stored ones, permuted in place), not the lazily
    allocated buffer's full size."""
    report: dict[str, int] = {}
    seen: set[int] = set()
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    for name, t in tensors:
        if id(t) in seen or t.is_meta:
            continue
        seen.add(id(t))
        if name.endswith("inv_freq") or ".gemv_absmax_" in f".{name}":
            continue
        cat = _category(name)
        report[cat] = report.get(cat, 0) + _tensor_bytes(t)
    decode = sum(b.decode_bytes() for b in model.modules() if isinstance(b, QuantizedExperts))
    if decode:
        report["experts_decode"] = decode
    report["total"] = sum(report.values())
    return report


def format_report(report: dict[str, int]) -> str:
    """One line: component sizes in MiB."""
    return ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in report.items())
