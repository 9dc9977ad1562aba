"""Tiny random Qwen3-VL(-MoE) models for tests and tutorials.

Nothing is downloaded: the weights are random, the tokenizer is a byte-level
BPE trained on the spot with the Qwen chat special tokens, and the chat template
is our own. The result is a normal model folder that `AutoModelForImageTextToText`
and `AutoProcessor` (through `r1v4_nb.models.hf.load`) read. Every Linear's input
width is a multiple of 64 so bitsandbytes' CPU 4-bit path can quantize it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Protocol tags are added tokens but not special ones (as in Qwen3's tokenizer), so decoding with
# skip_special_tokens=True keeps them while dropping chat and vision control tokens.
TAG_TOKENS = [
    "<think>", "</think>", "<tool_call>", "</tool_call>", "<answer>", "</answer>",
    "<observation>", "</observation>", "<code>", "</code>", "<tool_response>", "</tool_response>",
]

# Shaped like Qwen3-VL's templates (tool results become `<tool_response>` blocks in a user turn, the
# system prompt first, `reasoning_content` rendered as a think block) but with assistant text kept
# verbatim, so the tiny models test the message mapping without a template's rewriting.
CHAT_TEMPLATE = (
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{ content }}{%- else -%}"
    "{%- for item in content -%}"
    "{%- if item['type'] == 'image' or 'image' in item or 'image_url' in item -%}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'tool' -%}"
    "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' -%}{{ '<|im_start|>user' }}{%- endif -%}"
    "{{ '\\n<tool_response>\\n' }}{{ render(message['content']) }}{{ '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' -%}{{ '<|im_end|>\\n' }}{%- endif -%}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' and message['reasoning_content'] is string -%}"
    "{{ '<think>\\n' + message['reasoning_content'] + '\\n</think>\\n\\n' }}"
    "{%- endif -%}"
    "{{ render(message['content']) }}{{ '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

_CORPUS = [
    "<think> The image shows a red square on a white background. </think>",
    "<tool_call>{\"name\": \"code\", \"arguments\": {\"code\": \"print(1 + 1)\"}}</tool_call>",
    "<tool_call>{\"name\": \"text_search\", \"arguments\": {\"queries\": [\"tallest tower\"]}}</tool_call>",
    "<observation>{\"result\": \"2\", \"type\": \"code\"}</observation>",
    "<answer> The answer is 42. </answer>",
    "from PIL import Image\nimg = Image.open(path)\nimg.crop((0, 0, 64, 64)).save('crop.png')\nprint('crop.png')",
    "What is in this picture? Describe the colours, shapes and any text you can read.",
    "You are a helpful assistant that thinks step by step and uses tools when needed.",
    "The quick brown fox jumps over the lazy dog. 0123456789 !?.,;:'\"()[]{}<>/\\|@#$%^&*-+=_~`",
]


def _text_config(moe: bool, vocab_size: int, hidden: int, layers: int) -> dict:
    cfg = {
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": False,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [2, 3, 3],
            "mrope_interleaved": True,
        },
    }
    if moe:
        cfg.update({"moe_intermediate_size": hidden, "num_experts": 8, "num_experts_per_tok": 2})
    return cfg


def _vision_config(hidden: int, out_hidden: int) -> dict:
    return {
        "depth": 2,
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_heads": 4,
        "out_hidden_size": out_hidden,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": 256,
        "deepstack_visual_indexes": [0],
    }


def build_tokenizer(vocab_size: int = 512):
    """A byte-level BPE tokenizer with the Qwen special tokens at fixed low ids."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        chat_template=CHAT_TEMPLATE,
        model_max_length=8192,
    )


def make_tiny_model(
    out_dir: str | Path,
    moe: bool = True,
    seed: int = 0,
    *,
    hidden: int = 64,
    layers: int = 2,
    vocab_size: int = 512,
    chat_template: str | None = None,
) -> Path:
    """Write a random Qwen3-VL(-MoE) model folder (weights, config, tokenizer, processor) and return its path.

    `chat_template` replaces our template (e.g. with the one a Qwen3-VL release ships), so the same tiny
    model tests how a real template renders our contexts."""
    from ..errors import UsageError

    if hidden % 64:
        raise UsageError(f"tiny model hidden width {hidden} is not a multiple of 64; bitsandbytes on CPU needs that")
    from transformers import (
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLMoeConfig,
        Qwen3VLMoeForConditionalGeneration,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(vocab_size)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config_cls, model_cls = (
        (Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration) if moe else (Qwen3VLConfig, Qwen3VLForConditionalGeneration)
    )
    text = _text_config(moe, len(tokenizer), hidden, layers)
    text.update(eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], bos_token_id=None)
    config = config_cls(
        text_config=text,
        vision_config=_vision_config(hidden, hidden),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    save_random_model(model_cls, config, ids, seed, out)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    processor = make_processor(tokenizer, chat_template=chat_template)
    processor.save_pretrained(out)
    (out / "r1v4_tiny.json").write_text(json.dumps({"moe": moe, "seed": seed, "hidden": hidden, "layers": layers}))
    return out


def save_random_model(model_cls: type[PreTrainedModel], config: PretrainedConfig, ids: dict[str, int], seed: int, out: Path) -> None:
    """Random weights from `seed`, generation ending at <|im_end|>, saved as a normal model folder."""
    import torch

    torch.manual_seed(seed)
    model = model_cls(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.bos_token_id = None
    model.save_pretrained(out)


def make_processor(tokenizer, min_pixels: int = 32 * 32, max_pixels: int = 256 * 256, chat_template: str | None = None):
    """A Qwen3-VL processor over the PIL image processor (no torchvision, no video processor)."""
    from transformers import Qwen2VLImageProcessorPil

    from .processor import build_processor

    image_processor = Qwen2VLImageProcessorPil(
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
    )
    return build_processor(image_processor, tokenizer, chat_template or CHAT_TEMPLATE)
