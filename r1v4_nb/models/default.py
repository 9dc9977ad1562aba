"""The embedded default agent: a tiny Qwen3-VL-MoE trained by `r1v4-nb build-demo-model`.

Its folder (shipped in the package at `r1v4_nb/demo/model/`) is a normal Hugging Face model
folder (safetensors, config, tokenizer, image processor, chat template), plus `r1v4_agent.json`:
the short system prompts the model was trained with, one per mode, which the agent uses when no
other prompt is given. Views are 128 px (16 visual tokens an image). The chat template renders a
run the same way whether the observations sit inline in one assistant message or come as `tool`
messages between assistant messages, so the model reads the same tokens on either mapping.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .base import ModelError

__all__ = [
    "AGENT_FILE", "CHAT_TEMPLATE", "DEFAULT_MODEL_DIR", "MIN_VIEW_PIXELS", "PROMPTS", "VIEW_PIXELS", "agent_info",
    "build_tokenizer", "default_model_path", "make_model",
]

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "demo" / "model"
AGENT_FILE = "r1v4_agent.json"
VIEW_PIXELS = 128 * 128  # a large image is seen at 128x128: 8x8 patches of 16 px, merged 2x2 into 16 tokens
MIN_VIEW_PIXELS = 32 * 32  # a small one (a crop) at its own size, rounded to 32 px: a 64x32 crop is 2 tokens

PROMPTS = {
    "general": ("Answer about the image. Small details: crop and zoom with <code>python</code> "
                "(image_1, helpers, show). Think, then code or <answer>."),
    "deepresearch": ("Answer about the image. Tools: <code>python</code> (image_1, helpers, show), image_search, "
                     "web_visit. Think, then call or <answer>."),
    "direct": "Answer about the image. No tools. Think, then <answer>.",
}

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]
TAG_TOKENS = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<answer>", "</answer>",
              "<observation>", "</observation>", "<code>", "</code>"]

# Assistant turns and tool results form one assistant stream (observations inside <observation>),
# whichever way the messages split it; system and user messages are ordinary chat turns. A stream is
# closed only after an assistant message: after a tool result the model writes on in the same stream,
# so the generation prompt there adds nothing and a closed rendering is a prefix of the opened one.
CHAT_TEMPLATE = (
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{ content }}"
    "{%- else -%}{%- for item in content -%}"
    "{%- if item['type'] == 'image' or 'image' in item or 'image_url' in item -%}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- set ns = namespace(stream=false) -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] in ('assistant', 'tool') -%}"
    "{%- if not ns.stream -%}{{ '<|im_start|>assistant\\n' }}{%- set ns.stream = true -%}{%- endif -%}"
    "{%- if message['role'] == 'tool' -%}{{ '<observation>' + render(message['content']) + '</observation>' }}"
    "{%- else -%}{{ render(message['content']) }}{%- endif -%}"
    "{%- else -%}"
    "{%- if ns.stream -%}{{ '<|im_end|>\\n' }}{%- set ns.stream = false -%}{%- endif -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + render(message['content']) + '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if ns.stream and messages[-1]['role'] == 'assistant' and not add_generation_prompt -%}"
    "{{ '<|im_end|>\\n' }}{%- endif -%}"
    "{%- if add_generation_prompt and not ns.stream -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def default_model_path() -> Path:
    """The shipped default model's folder; a one-line error when it is missing."""
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        raise ModelError(f"the default model is missing at {DEFAULT_MODEL_DIR}; rebuild it with "
                         "`r1v4-nb build-demo-model --out r1v4_nb/demo/model` or reinstall r1v4-nb")
    return DEFAULT_MODEL_DIR


def agent_info(folder: str | Path) -> dict[str, Any]:
    """What the model folder says about how to run it (system prompts per mode); {} when nothing."""
    path = Path(folder) / AGENT_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 1024):
    """A byte-level BPE tokenizer trained on `corpus` (the build's own trajectories and prompts).

    Letters and digits are split apart by the pre-tokenizer and every digit is a token of its own,
    so grid cells ("C2") and plaque codes ("K7") are one token a character, and a year reads the
    same four tokens in a page (" 1722") as in an answer ("1722"): copying it is token for token.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(corpus), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIAL_TOKENS[1:], chat_template=CHAT_TEMPLATE,
                                   model_max_length=4096)


def make_model(out: str | Path, tokenizer: Any, seed: int = 0, *, hidden: int = 128, layers: int = 2,
               experts: int = 4, vision_depth: int = 2) -> Path:
    """A freshly initialised Qwen3-VL-MoE folder (text hidden 128, 2 layers, 4 experts top-2; vision
    depth 2, patch 16, merge 2), with `tokenizer`, a 128 px image processor and the agent prompts."""
    from transformers import Qwen2VLImageProcessorPil, Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

    from .processor import build_processor
    from .tiny import save_random_model

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = {
        "vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": hidden // 4,
        "max_position_embeddings": 4096, "tie_word_embeddings": False,
        "moe_intermediate_size": hidden, "num_experts": experts, "num_experts_per_tok": 2,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                            "mrope_section": _mrope_section(hidden // 4), "mrope_interleaved": True},
        "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"], "bos_token_id": None,
    }
    vision = {"depth": vision_depth, "hidden_size": hidden, "intermediate_size": 2 * hidden, "num_heads": 4,
              "out_hidden_size": hidden, "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
              "num_position_embeddings": 64, "deepstack_visual_indexes": [0]}
    config = Qwen3VLMoeConfig(
        text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
    save_random_model(Qwen3VLMoeForConditionalGeneration, config, ids, seed, out)
    image_processor = Qwen2VLImageProcessorPil(patch_size=16, temporal_patch_size=2, merge_size=2,
                                               size={"shortest_edge": MIN_VIEW_PIXELS, "longest_edge": VIEW_PIXELS})
    build_processor(image_processor, tokenizer, CHAT_TEMPLATE).save_pretrained(out)
    write_agent_info(out)
    return out


def write_agent_info(out: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write the prompts (and anything in `extra`) the agent reads from the folder."""
    info = {"prompts": PROMPTS, "view_pixels": VIEW_PIXELS, **(extra or {})}
    (Path(out) / AGENT_FILE).write_text(json.dumps(info, indent=1), encoding="utf-8")


def _mrope_section(head_dim: int) -> list[int]:
    half = head_dim // 2
    t = half - 2 * (half * 5 // 16)
    return [t, half * 5 // 16, half * 5 // 16]
