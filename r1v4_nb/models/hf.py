"""Hugging Face backend: Qwen3-VL (dense and MoE) in the kernel's process.

`load()` reads a local folder or a hub id (never downloading at test time),
optionally in 4-bit NF4 or 8-bit through bitsandbytes; the fused MoE experts,
which bitsandbytes skips, are quantized by `moe_quant`. `HFModel.stream` runs a
generation loop of our own so it can stop at stop strings, be cancelled between
tokens, and reuse the KV cache of the conversation so far: each turn only the
tokens after the longest common prefix (text and image identity) are prefilled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..messages import MessageError, chat_prompt, expand_images, image_paths, rewritten_turns, turn_opening
from .base import Delta, GenerationSettings, ModelError, Usage

log = logging.getLogger(__name__)

QUANTIZATIONS = (None, "4bit", "8bit")
_MROPE_TYPES = {"qwen3_vl", "qwen3_vl_moe"}


def _say(msg: str) -> None:
    print(f"[r1v4_nb] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- loading


def _looks_local(spec: str) -> bool:
    return spec.startswith(("/", ".", "~")) or os.sep in spec.rstrip(os.sep).split(os.sep, 1)[-1] or Path(spec).exists()


def _resolve(path_or_id: str | Path) -> str:
    spec = str(path_or_id)
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelError(f"{spec} has no config.json; pass a model folder (saved with save_pretrained) or a hub id")
        return str(path)
    if _looks_local(spec) or spec.count("/") != 1:
        raise ModelError(f"no model at {spec}; pass an existing model folder or a hub id like Qwen/Qwen3-VL-2B-Instruct")
    return spec


def _config(spec: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(spec)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot read the config of {spec} ({first}); check the path or hub id, or download it first") from None


def _model_class(config: Any):
    from transformers import AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    if config.model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        raise ModelError(
            f"unknown architecture {config.model_type!r}; load a Qwen3-VL model (qwen3_vl, qwen3_vl_moe) "
            "or another image-text-to-text model"
        )
    return AutoModelForImageTextToText._model_mapping[type(config)]


def _is_moe(config: Any) -> bool:
    text = config.get_text_config()
    return getattr(text, "num_experts", None) is not None and config.model_type.endswith("moe")


def _safetensor_shapes(spec: str) -> list[tuple[str, list[int], str]]:
    """(name, shape, dtype) of every tensor in a local folder's safetensors files, from their headers only."""
    out = []
    folder = Path(spec)
    for f in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        for name, meta in header.items():
            if name != "__metadata__":
                out.append((name, meta["shape"], meta["dtype"]))
    return out


_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1, "I8": 1, "BOOL": 1}


def estimate_bytes(spec: str, quantization: str | None, dtype_bytes: int) -> int | None:
    """Weights' size after loading, from the safetensors headers; None for a hub id not on disk."""
    total = 0
    tensors = _safetensor_shapes(spec)
    if not tensors:
        return None
    for name, shape, dt in tensors:
        n = 1
        for d in shape:
            n *= d
        if dt in ("U8", "I8"):
            total += n
            continue
        quantizable = len(shape) >= 2 and "embed" not in name and "lm_head" not in name
        if quantizable and ("experts" in name and quantization):
            total += n * 9 // 16  # NF4 + one scale byte per 16 weights
        elif quantizable and quantization == "4bit" and len(shape) == 2:
            total += n * 9 // 16
        elif quantizable and quantization == "8bit" and len(shape) == 2:
            total += n + n // 32
        else:
            total += n * dtype_bytes
    return total


def _available_bytes(device: str) -> int | None:
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info()[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def load(
    path_or_id: str | Path,
    quantization: str | None = None,
    *,
    dtype: str | Any = "auto",
    device_map: str | dict | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    adapter: str | Path | None = None,
    prefix_reuse: bool = True,
    build_decode: bool = False,
    progress: Callable[[str], None] | None = _say,
) -> HFModel:
    """Load a Qwen3-VL(-MoE) folder or hub id as a `Model`; `.model` is the transformers model.
    build_decode: convert 4-bit experts to the CPU GEMV's layout now rather than at each expert's first use
    (no extra codes memory; the first tokens are then not slower)."""
    import torch

    say = progress or (lambda _m: None)
    if quantization not in QUANTIZATIONS:
        raise ModelError(f"unknown quantization {quantization!r}; use None, '4bit' or '8bit'")
    spec = _resolve(path_or_id)
    config = _config(spec)
    cls = _model_class(config)
    has_gpu = torch.cuda.is_available()
    if isinstance(device_map, str) and device_map.startswith("cuda") and not has_gpu:
        raise ModelError(f"device_map={device_map!r} needs a CUDA GPU and none is visible; use device_map='cpu'")
    device = "cuda" if has_gpu and device_map != "cpu" else "cpu"
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device == "cuda" else torch.float32
    elif isinstance(dtype, str):
        torch_dtype = getattr(torch, dtype, None)
        if not isinstance(torch_dtype, torch.dtype):
            raise ModelError(f"unknown dtype {dtype!r}; use 'auto', 'bfloat16', 'float16' or 'float32'")
    else:
        torch_dtype = dtype
    estimate = estimate_bytes(spec, quantization, torch.tensor([], dtype=torch_dtype).element_size())
    available = _available_bytes(device)
    if estimate is not None:
        say(f"loading {spec} ({config.model_type}, {quantization or str(torch_dtype).removeprefix('torch.')}) "
            f"on {device}: ~{estimate / 2**30:.2f} GiB of weights")
        if available is not None and estimate > 0.95 * available:
            raise ModelError(
                f"{spec} needs ~{estimate / 2**30:.1f} GiB on {device} but only {available / 2**30:.1f} GiB is free; "
                "try quantization='4bit', a smaller model, or free memory"
            )
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "device_map": device_map or device}
    if quantization:
        from transformers import BitsAndBytesConfig

        if quantization == "4bit":
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype,
                llm_int8_skip_modules=["lm_head"],
            )
        else:
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["lm_head"])
            _quiet_int8_cast()
            if torch_dtype != torch.float16:
                say(f"8-bit layers cast their {str(torch_dtype).removeprefix('torch.')} inputs to float16")
    from .moe_quant import (
        ExpertsCache,
        build_decode_packing,
        format_report,
        is_marked,
        memory_report,
        quantized_moe_class,
    )

    cache = None
    if _is_moe(config) and (quantization or is_marked(config)):
        receive = not is_marked(config)
        if receive and Path(spec).is_dir():
            cache = ExpertsCache.for_model(spec, torch_dtype)
        cls = quantized_moe_class(cls, receive=receive, cache=cache)
    t0 = time.time()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls.from_pretrained(spec, **kwargs)
    except torch.OutOfMemoryError:
        raise ModelError(f"out of memory loading {spec}; try quantization='4bit' or a smaller model") from None
    except OSError as exc:
        raise ModelError(f"cannot load weights of {spec}: {str(exc).strip().splitlines()[0]}") from None
    model.eval()
    if cache is not None:
        if cache.read:
            say(f"read {cache.read} quantized experts tensors from {cache.path}")
        if written := cache.written:
            try:
                cache.save()
                say(f"kept {written} quantized experts tensors in {cache.path} for the next load")
            except OSError as exc:
                say(f"could not keep the quantized experts in {cache.path} ({exc}); the next load quantizes again")
    if adapter is not None:
        model = _attach_adapter(model, adapter)
    if build_decode and (built := build_decode_packing(model)):
        say(f"converted {built} expert matrices to the CPU GEMV's layout")
    from .processor import load_processor

    try:
        processor = load_processor(spec, min_pixels=min_pixels, max_pixels=max_pixels)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load the tokenizer / image processor of {spec} ({first}); "
                         "the folder needs tokenizer and preprocessor_config.json files") from None
    report = memory_report(model)
    say(f"loaded in {time.time() - t0:.1f}s: {format_report(report)}")
    from .default import agent_info

    info = agent_info(spec) if Path(spec).is_dir() else {}
    return HFModel(
        model=model, processor=processor, name=Path(spec).name if Path(spec).exists() else spec,
        path=spec, quantization=quantization, device=device, memory=report, prefix_reuse=prefix_reuse,
        adapter=str(adapter) if adapter else None, prompts=dict(info.get("prompts") or {}),
    )


class _DropInt8CastWarning(logging.Filter):
    """bitsandbytes logs a warning on every int8 matmul whose input is not float16: once per token."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("MatMul8bitLt: inputs will be cast")


def _quiet_int8_cast() -> None:
    logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropInt8CastWarning) for f in logger.filters):
        logger.addFilter(_DropInt8CastWarning())


def _attach_adapter(model: Any, adapter: str | Path) -> Any:
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").exists():
        raise ModelError(f"no LoRA adapter at {adapter} (adapter_config.json missing); pass the folder a training run saved")
    from .lora import load_adapter  # also loads LoRA on 4-bit fused experts, which peft alone cannot

    return load_adapter(model, path)


# ----------------------------------------------------------------------------- generation


def _file_hash(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class _Cached:
    """What the KV cache holds: token keys (image pads carry their image's hash) and the cache itself."""

    keys: list[Any]
    cache: Any


@dataclass
class HFModel:
    model: Any
    processor: Any
    name: str
    path: str
    quantization: str | None = None
    device: str = "cpu"
    memory: dict[str, int] = field(default_factory=dict)
    prefix_reuse: bool = True
    adapter: str | None = None
    # System prompts the model was trained with, by mode ("general", "deepresearch", "direct"), from the
    # folder's r1v4_agent.json; the agent uses them when it is given no prompt of its own.
    prompts: dict[str, str] = field(default_factory=dict)
    last_stats: dict[str, Any] = field(default_factory=dict)
    _cached: _Cached | None = field(default=None, repr=False)
    _pixel_cache: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _warned_rewrite: bool = field(default=False, repr=False)

    @property
    def reuse_supported(self) -> tuple[bool, str]:
        mt = getattr(self.model.config, "model_type", "")
        if mt not in _MROPE_TYPES:
            return False, f"prefix reuse is off for {mt} (only Qwen3-VL position ids are handled)"
        return True, ""

    def describe(self) -> dict[str, Any]:
        from .moe_quant import decode_path  # which path the 4-bit experts decode on (None: no such experts)

        ok, why = self.reuse_supported
        return {
            "name": self.name, "backend": "hf", "path": self.path, "quantization": self.quantization,
            "device": self.device, "adapter": self.adapter,
            "prefix_reuse": "on" if (self.prefix_reuse and ok) else ("off" if not self.prefix_reuse else why),
            "memory_bytes": self.memory,
            **({"experts_decode": path} if (path := decode_path(self.model)) is not None else {}),
        }

    def reset_cache(self) -> None:
        self._cached = None

    def _pixels(self, path: str) -> tuple[str, Any, Any]:
        """(content hash, pixel_values, grid_thw) of an image, preprocessed once per content."""
        from PIL import Image

        digest = _file_hash(path)
        hit = self._pixel_cache.pop(digest, None)
        if hit is None:
            out = self.processor.image_processor(images=[Image.open(path).convert("RGB")], return_tensors="pt")
            hit = (out["pixel_values"], out["image_grid_thw"])
        self._pixel_cache[digest] = hit
        while len(self._pixel_cache) > 256:
            self._pixel_cache.pop(next(iter(self._pixel_cache)))
        return digest, hit[0], hit[1]

    def _encode(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None):
        """Token ids, image inputs and per-token keys (image pads carry their image's hash) of a conversation.

        Does what the processor's __call__ does (expand each image placeholder to its token count),
        with each image preprocessed once per content rather than once per turn."""
        import torch

        try:
            text = chat_prompt(self.processor, messages, tools)
        except MessageError as exc:
            raise ModelError(str(exc)) from None
        self._check_history(text, messages)
        paths = image_paths(messages)
        for p in paths:
            if not Path(p).exists():
                raise ModelError(f"image {p} not found; messages must reference local image files")
        merge = self.processor.image_processor.merge_size ** 2
        encoded = [self._pixels(p) for p in paths]
        try:
            expanded = expand_images(text, self.processor.image_token,
                                     [int(grid.prod()) // merge for _h, _pv, grid in encoded])
        except MessageError as exc:
            raise ModelError(str(exc)) from None
        ids_t = self.processor.tokenizer(expanded, return_tensors="pt")["input_ids"]
        image_id = self.model.config.image_token_id
        inputs: dict[str, Any] = {"input_ids": ids_t, "attention_mask": torch.ones_like(ids_t)}
        inputs["mm_token_type_ids"] = (ids_t == image_id).to(torch.int32)
        if encoded:
            inputs["pixel_values"] = torch.cat([pv for _h, pv, _g in encoded])
            inputs["image_grid_thw"] = torch.cat([g for _h, _pv, g in encoded])
        hashes = iter([h for h, _pv, _g in encoded])
        ids = ids_t[0].tolist()
        keys: list[Any] = []
        current = None
        for i, t in enumerate(ids):
            if t == image_id:
                if i == 0 or ids[i - 1] != image_id:
                    current = next(hashes)
                keys.append((t, current))
            else:
                keys.append(t)
        return inputs, keys

    def _check_history(self, text: str, messages: list[dict[str, Any]]) -> None:
        """Warn (once per model) when the chat template drops or rewrites text the model wrote earlier."""
        bad = rewritten_turns(text, messages[:-1] if messages and messages[-1].get("role") == "assistant"
                              else messages)
        if bad and not self._warned_rewrite:
            self._warned_rewrite = True
            warnings.warn(f"the chat template of {self.name} rewrites earlier model turns (messages {bad}): the "
                          "model sees a history that differs from the recording; a Qwen3-VL Thinking template "
                          "keeps a turn verbatim only as '<think>\\n...\\n</think>\\n\\n...'", stacklevel=3)

    def turn_opening(self, messages: list[dict[str, Any]]) -> str:
        """The text the generation prompt opens the next turn with ('' when `messages` end in a turn being
        continued); the turn is recorded starting with it."""
        if messages and messages[-1].get("role") == "assistant":
            return ""
        try:
            return turn_opening(self.processor, messages)
        except MessageError as exc:
            raise ModelError(str(exc)) from None

    def _positions(self, inputs: Any):
        import torch

        ids = inputs["input_ids"]
        inner = getattr(self.model, "model", None)
        get_rope_index = getattr(inner, "get_rope_index", None) if inner is not None else None
        if get_rope_index is None:
            return torch.arange(ids.shape[1]).view(1, 1, -1).expand(3, 1, -1)
        pos, _ = get_rope_index(
            ids, mm_token_type_ids=inputs.get("mm_token_type_ids"),
            image_grid_thw=inputs.get("image_grid_thw"), attention_mask=inputs.get("attention_mask"),
        )
        return pos

    def _reuse_point(self, keys: list[Any], image_spans: list[tuple[int, int]]) -> int:
        """Length of the prefix whose KV entries can be kept (never cutting through an image)."""
        if self._cached is None:
            return 0
        old = self._cached.keys
        n = 0
        limit = min(len(old), len(keys) - 1)
        while n < limit and old[n] == keys[n]:
            n += 1
        for start, end in image_spans:
            if start < n < end:
                n = start
        return n

    def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        stop: list[str],
        settings: GenerationSettings,
        cancel: threading.Event | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Iterator[Delta]:
        """The model protocol; `tools` (OpenAI function specs, for `r1v4-nb serve`) go to the chat template."""
        with self._lock:
            yield from self._stream(messages, stop, settings, cancel, tools)

    def _stream(self, messages, stop, settings, cancel, tools=None) -> Iterator[Delta]:
        t0 = time.perf_counter()
        opening = self.turn_opening(messages)
        inputs, keys = self._encode(messages, tools)
        ids = inputs["input_ids"]
        image_id = self.model.config.image_token_id
        flat = ids[0].tolist()
        spans = []
        i = 0
        while i < len(flat):
            if flat[i] == image_id:
                j = i
                while j < len(flat) and flat[j] == image_id:
                    j += 1
                spans.append((i, j))
                i = j
            else:
                i += 1
        ok, why = self.reuse_supported
        reuse = self.prefix_reuse and ok
        start = self._reuse_point(keys, spans) if reuse else 0
        cache = None
        if start > 0:
            cache = self._cached.cache
            try:
                extra = cache.get_seq_length() - start
                if extra > 0:
                    cache.crop(-extra)  # transformers 5: a negative count removes that many tokens
                if cache.get_seq_length() != start:
                    raise ValueError(f"cache holds {cache.get_seq_length()} tokens after cropping to {start}")
            except (AttributeError, RuntimeError, ValueError) as exc:
                log.info("prefix reuse fell back to full encoding: %s", exc)
                why, start, cache, reuse = f"off this turn: cache cannot be cropped ({exc})", 0, None, False
        self._cached = None
        positions = self._positions(inputs)
        first_image = sum(1 for s, _e in spans if s < start)
        fwd: dict[str, Any] = {"input_ids": ids[:, start:], "position_ids": positions[..., start:]}
        if "mm_token_type_ids" in inputs:
            fwd["mm_token_type_ids"] = inputs["mm_token_type_ids"][:, start:]
        if "pixel_values" in inputs and first_image < len(spans):
            grid = inputs["image_grid_thw"]
            patches = grid.prod(dim=1).tolist()
            offset = int(sum(patches[:first_image]))
            fwd["pixel_values"] = inputs["pixel_values"][offset:]
            fwd["image_grid_thw"] = grid[first_image:]
        self.last_stats = {
            "prompt_tokens": len(flat), "reused_tokens": start, "prefilled_tokens": len(flat) - start,
            "prefix_reuse": "on" if reuse else (why or "off"), "started": t0,
        }
        if opening:  # a thinking template's opened '<think>': the turn starts inside it
            yield Delta(text=opening, prompted=True)
        yield from self._generate(fwd, flat, keys, cache, positions, stop, settings, cancel)

    def _generate(self, fwd, flat, keys, cache, positions, stop, settings, cancel) -> Iterator[Delta]:
        import torch
        from transformers import DynamicCache

        tok = self.processor.tokenizer
        device = next(self.model.parameters()).device
        fwd = {k: v.to(device) for k, v in fwd.items()}
        if "pixel_values" in fwd:
            fwd["pixel_values"] = fwd["pixel_values"].to(self.model.dtype)
        cache = cache if cache is not None else DynamicCache(config=self.model.config)
        eos = {tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
        eos |= {i for i in [tok.eos_token_id] if i is not None}
        eos.discard(None)
        gen = torch.Generator(device="cpu")
        if settings.seed is not None:
            gen.manual_seed(settings.seed)
        next_pos = int(positions.max()) + 1
        fed = list(keys)
        out_ids: list[int] = []
        detok = _Detokenizer(tok)
        sent = 0
        finish = "length"
        holdback = max((len(s) for s in stop if s), default=1) - 1
        at_stop_string = False
        done = False
        try:
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for _ in range(max(settings.max_tokens, 0)):
                    if cancel is not None and cancel.is_set():
                        finish = "cancelled"
                        break
                    logits = self.model(**fwd, cache=cache, use_cache=True, logits_to_keep=1).logits[0, -1]
                    token = _sample(logits.float().cpu(), settings, gen)
                    if not out_ids and "ttft_s" not in self.last_stats:
                        self.last_stats["ttft_s"] = time.perf_counter() - self.last_stats.get("started", 0.0)
                    if token in eos:
                        finish = "stop"
                        break
                    out_ids.append(token)
                    text = detok.add(token)
                    # Text up to `sent - holdback` was already searched for stop strings: look only after it.
                    start = max(0, sent - holdback)
                    tail, found = _cut(text[start:], stop)
                    cut = text[:start] + tail if found else text
                    if found:
                        if len(cut) > sent:
                            yield Delta(text=cut[sent:])
                        sent = len(cut)
                        finish = "stop"
                        at_stop_string = True
                        break
                    safe = len(text) - holdback if stop else len(text)
                    while safe > sent and text[safe - 1] == "\ufffd":
                        safe -= 1
                    if safe > sent:
                        yield Delta(text=text[sent:safe])
                        sent = safe
                    fed.append(token)
                    fwd = {
                        "input_ids": torch.tensor([[token]], device=device),
                        "position_ids": torch.full((3, 1, 1), next_pos, dtype=torch.long, device=device),
                    }
                    next_pos += 1
            done = True
        finally:
            # A forward pass interrupted by an exception may leave layers of the cache uneven: drop it.
            ok = done or cache.get_seq_length() == len(fed) or cache.get_seq_length() == len(fed) - 1
            self._cached = _Cached(keys=fed[: cache.get_seq_length()], cache=cache) if ok else None
        if not at_stop_string:  # the end of the stream (EOS, length, cancel): the held-back tail goes out too
            text = tok.decode(out_ids, skip_special_tokens=True)
            cut, _ = _cut(text, stop)
            if len(cut) > sent:
                yield Delta(text=cut[sent:])
        yield Delta(finish_reason=finish, usage=Usage(prompt_tokens=len(flat), completion_tokens=len(out_ids)))


class _Detokenizer:
    """The text of the generated tokens, decoded incrementally.

    Only the tokens since the last clean split are decoded at each step, so a 20k-token answer does not
    cost a full decode per token. A split is taken only where decoding the whole equals the two halves
    joined (no multi-byte character or tokenizer clean-up straddles it).
    """

    WINDOW = 64

    def __init__(self, tok: Any):
        self.tok = tok
        self.ids: list[int] = []
        self.base = 0
        self.committed = ""
        self.next_try = self.WINDOW

    def add(self, token: int) -> str:
        self.ids.append(token)
        tail = self.tok.decode(self.ids[self.base:], skip_special_tokens=True)
        text = self.committed + tail
        if len(self.ids) >= self.next_try:
            self.next_try = len(self.ids) + self.WINDOW
            if not tail.endswith("\ufffd") and self.tok.decode(self.ids, skip_special_tokens=True) == text:
                self.committed, self.base = text, len(self.ids)
        return text


def _cut(text: str, stop: list[str]) -> tuple[str, bool]:
    from .base import cut_at_stop

    return cut_at_stop(text, stop)


def _sample(logits: Any, settings: GenerationSettings, gen: Any) -> int:
    import torch

    if not settings.temperature or settings.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / settings.temperature, dim=-1)
    if settings.top_p is not None and 0 < settings.top_p < 1:
        sorted_p, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_p, dim=0) - sorted_p < settings.top_p
        sorted_p = sorted_p * keep
        return int(order[torch.multinomial(sorted_p / sorted_p.sum(), 1, generator=gen)])
    return int(torch.multinomial(probs, 1, generator=gen))
