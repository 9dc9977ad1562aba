"""LoRA on a loaded Qwen3-VL(-MoE): attention and MLP projections, and the fused expert tensors.

Unquantized experts are fused 3-D `nn.Parameter`s, which peft adapts through
`target_parameters`. The 4-bit experts of `r1v4_nb.models.moe_quant` keep packed
NF4 buffers instead, which peft cannot wrap, so `QuantizedExpertsLora` adds the
low-rank update next to the dequantize-on-the-fly forward: for expert e,
`y = x W_e^T + s (x A_e^T) B_e^T`. Its A and B use peft's own layout and key
names, so an adapter trained with QLoRA is an ordinary peft adapter: it loads
onto the unquantized model with `PeftModel.from_pretrained` (and merges there),
and onto the quantized one with `load_adapter`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UsageError

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
EXPERT_PARAMS = ("gate_up_proj", "down_proj")
_KEYS = {"gate_up_proj": "gate_up", "down_proj": "down"}


def _quantized_experts_type() -> type:
    from .moe_quant import QuantizedExperts

    return QuantizedExperts


def has_experts(model: nn.Module) -> bool:
    q = _quantized_experts_type()
    return any(isinstance(m, q) or (isinstance(getattr(m, "gate_up_proj", None), torch.Tensor)
                                     and m.gate_up_proj.dim() == 3) for m in model.modules())


def has_quantized_experts(model: nn.Module) -> bool:
    q = _quantized_experts_type()
    return any(isinstance(m, q) for m in model.modules())


def lora_config(targets: list[str], r: int, alpha: int, dropout: float, model: nn.Module) -> Any:
    """The peft LoraConfig for `targets` (attention, mlp, experts) on the language model only."""
    from peft import LoraConfig

    names = [*(ATTENTION if "attention" in targets else ()), *(MLP if "mlp" in targets else ())]
    target_modules = rf".*language_model.*\.({'|'.join(names)})" if names else None
    target_parameters = None
    if "experts" in targets and has_experts(model):
        target_parameters = [f"mlp.experts.{p}" for p in EXPERT_PARAMS]
    if target_modules is None and target_parameters is None:
        raise UsageError(f"targets {targets} match nothing in this model; add attention or mlp")
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules or [],
                      target_parameters=target_parameters, bias="none")


class QuantizedExpertsLora(nn.Module):
    """LoRA on a `QuantizedExperts` block, with peft's tensor layout (see the module docstring)."""

    def __init__(self, base: nn.Module, r: int, alpha: int) -> None:
        super().__init__()
        self.base = base
        self.r = r
        self.scaling = alpha / r
        e, h, i = base.num_experts, base.hidden_dim, base.intermediate_dim
        dims = {"gate_up_proj": (h, 2 * i), "down_proj": (i, h)}  # (in, out)
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        for name, (fan_in, fan_out) in dims.items():
            a = torch.empty(r * e, fan_in)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            self.lora_A[name] = nn.Parameter(a)
            self.lora_B[name] = nn.Parameter(torch.zeros(fan_out, r * e))

    def _factors(self, name: str, e: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.base.num_experts
        a = self.lora_A[name].view(n, self.r, -1)[e]  # [r, in]
        b = self.lora_B[name].view(self.lora_B[name].shape[0], self.r, n)[:, :, e]  # [out, r]
        return a, b

    def _linear(self, x: torch.Tensor, name: str, e: int) -> torch.Tensor:
        w = self.base.weight(_KEYS[name], e, x.dtype)
        a, b = self._factors(name, e)
        return nn.functional.linear(x, w) + nn.functional.linear(nn.functional.linear(x, a.to(x.dtype)),
                                                                 b.to(x.dtype)) * self.scaling

    def forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                top_k_weights: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(hidden_states)
        with torch.no_grad():
            hit = torch.unique(top_k_index).tolist()
        for e in hit:
            if e >= self.base.num_experts:
                continue
            token_idx, k_pos = torch.where(top_k_index == e)
            x = hidden_states[token_idx]
            gate, up = self._linear(x, "gate_up_proj", e).chunk(2, dim=-1)
            y = self._linear(self.base.act_fn(gate) * up, "down_proj", e)
            out.index_add_(0, token_idx, y * top_k_weights[token_idx, k_pos, None].to(y.dtype))
        return out


def _expert_key_suffixes() -> dict[str, str]:
    """The path peft gives the LoRA of each expert parameter under the experts module (nesting order)."""
    from peft import LoraConfig, get_peft_model

    class Experts(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gate_up_proj = nn.Parameter(torch.zeros(1, 4, 2))
            self.down_proj = nn.Parameter(torch.zeros(1, 2, 2))

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.experts = Experts()

    probe = get_peft_model(Holder(), LoraConfig(r=1, target_parameters=[f"experts.{p}" for p in EXPERT_PARAMS]))
    out = {}
    for name, module in probe.named_modules():
        pname = getattr(module, "parameter_name", None)
        if pname in EXPERT_PARAMS:
            out[pname] = name.split("experts", 1)[1].lstrip(".")
    return out


def _wrap_quantized_experts(model: nn.Module, r: int, alpha: int) -> list[tuple[str, QuantizedExpertsLora]]:
    q = _quantized_experts_type()
    wrapped = []
    for name, module in list(model.named_modules()):
        if isinstance(module, q) and ".language_model." in f".{name}":
            parent_name, _, child = name.rpartition(".")
            lora = QuantizedExpertsLora(module, r, alpha).to(module.nf4_gate_up.device)
            setattr(model.get_submodule(parent_name), child, lora)
            wrapped.append((name, lora))
    return wrapped


def apply_lora(model: nn.Module, targets: list[str], r: int, alpha: int, dropout: float) -> nn.Module:
    """A peft model with LoRA on `targets`; only the LoRA weights are trainable."""
    from peft import get_peft_model

    quantized = has_quantized_experts(model)
    config = lora_config(targets, r, alpha, dropout, model)
    want_experts = config.target_parameters is not None
    if quantized:
        config.target_parameters = None
    for p in model.parameters():
        p.requires_grad_(False)
    peft_model = get_peft_model(model, config)
    if quantized and want_experts:
        wrapped = _wrap_quantized_experts(peft_model, r, alpha)
        peft_model.r1v4_expert_lora = wrapped  # type: ignore[attr-defined]
        # the config that is saved says what the adapter holds: LoRA on the expert parameters too
        peft_model.peft_config["default"].target_parameters = [f"mlp.experts.{p}" for p in EXPERT_PARAMS]
    return peft_model


def expert_state_dict(peft_model: nn.Module) -> dict[str, torch.Tensor]:
    """The quantized experts' LoRA weights under the keys peft would save them with."""
    wrapped = getattr(peft_model, "r1v4_expert_lora", [])
    if not wrapped:
        return {}
    suffix = _expert_key_suffixes()
    out = {}
    for name, lora in wrapped:
        for pname in EXPERT_PARAMS:
            out[_expert_key(name, pname, "lora_A", suffix)] = lora.lora_A[pname].detach().cpu().contiguous()
            out[_expert_key(name, pname, "lora_B", suffix)] = lora.lora_B[pname].detach().cpu().contiguous()
    return out


def _expert_key(module_name: str, pname: str, ab: str, suffix: dict[str, str]) -> str:
    base = module_name.removeprefix("base_model.model.")
    mid = f".{suffix[pname]}" if suffix[pname] else ""
    return f"base_model.model.{base}{mid}.{ab}.weight"


def save_adapter(peft_model: nn.Module, path: str | Path) -> Path:
    """Save the adapter as a peft folder (expert LoRA of a quantized model included)."""
    from safetensors.torch import load_file, save_file

    out = Path(path)
    peft_model.save_pretrained(str(out))
    extra = expert_state_dict(peft_model)
    if extra:
        f = out / "adapter_model.safetensors"
        state = load_file(str(f))
        state.update(extra)
        save_file(state, str(f), metadata={"format": "pt"})
    return out


def trainable_state(peft_model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}


def load_trainable_state(peft_model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(peft_model.named_parameters())
    missing = [n for n in state if n not in params]
    if missing:
        raise UsageError(f"checkpoint does not fit this model ({missing[0]} ...); resume with the same model and "
                         "targets")
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t)


def load_adapter(model: nn.Module, path: str | Path) -> nn.Module:
    """Attach a saved adapter for inference; handles LoRA on 4-bit experts, which peft alone cannot load."""
    from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = Path(path)
    if not (folder / "adapter_config.json").is_file():
        raise UsageError(f"no adapter at {folder} (expected adapter_config.json); give the folder train() saved")
    cfg = json.loads((folder / "adapter_config.json").read_text())
    if not (cfg.get("target_parameters") and has_quantized_experts(model)):
        return PeftModel.from_pretrained(model, str(folder)).eval()
    config = LoraConfig.from_pretrained(str(folder))
    config.target_parameters = None
    config.inference_mode = False
    state = load_file(str(folder / "adapter_model.safetensors"))
    peft_model = get_peft_model(model, config)
    wrapped = _wrap_quantized_experts(peft_model, config.r, config.lora_alpha)
    peft_model.r1v4_expert_lora = wrapped  # type: ignore[attr-defined]
    suffix = _expert_key_suffixes()
    with torch.no_grad():
        for name, lora in wrapped:
            for pname in EXPERT_PARAMS:
                for ab, store in (("lora_A", lora.lora_A), ("lora_B", lora.lora_B)):
                    key = _expert_key(name, pname, ab, suffix)
                    if key not in state:
                        raise UsageError(f"adapter {folder} has no {key}; it was trained on another model")
                    store[pname].copy_(state.pop(key))
    set_peft_model_state_dict(peft_model, state)
    for p in peft_model.parameters():
        p.requires_grad_(False)
    return peft_model.eval()

