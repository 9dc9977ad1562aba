"""A Qwen3-VL processor for images only, without torchvision.

The stock `Qwen3VLProcessor` insists on a video processor, and Qwen3-VL's video
processor needs torchvision, which is not always installable. For image-only use
we keep the stock processor's behaviour (image token expansion, mm token types)
over the PIL image processor and simply drop the video slot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _image_only_class():
    from transformers import Qwen3VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyQwen3VLProcessor(Qwen3VLProcessor):
        """Qwen3VLProcessor whose attributes are just (image_processor, tokenizer)."""

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
            self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)
            self.vision_start_token = "<|vision_start|>"
            self.vision_end_token = "<|vision_end|>"
            self.vision_start_token_id = tokenizer.convert_tokens_to_ids(self.vision_start_token)
            self.vision_end_token_id = tokenizer.convert_tokens_to_ids(self.vision_end_token)

        def save_pretrained(self, save_directory, **kwargs):
            """Save the parts a stock loader reads: tokenizer (with the chat template) and image processor."""
            Path(save_directory).mkdir(parents=True, exist_ok=True)
            if self.chat_template:
                self.tokenizer.chat_template = self.chat_template
            self.tokenizer.save_pretrained(save_directory)
            self.image_processor.save_pretrained(save_directory)
            return [str(save_directory)]

    return ImageOnlyQwen3VLProcessor


def build_processor(image_processor: Any, tokenizer: Any, chat_template: str | None = None) -> Any:
    """An image-only Qwen3-VL processor from its parts."""
    return _image_only_class()(image_processor, tokenizer, chat_template=chat_template or tokenizer.chat_template)


def load_processor(path: str | Path, *, min_pixels: int | None = None, max_pixels: int | None = None) -> Any:
    """Load a Qwen3-VL processor from a model folder or hub id with the PIL image processor."""
    from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(str(path))
    size = dict(image_processor.size or {})
    if min_pixels is not None:
        size["shortest_edge"] = int(min_pixels)
    if max_pixels is not None:
        size["longest_edge"] = int(max_pixels)
    if size:
        image_processor.size = size
    template = tokenizer.chat_template
    if template is None:
        template = _read_chat_template(Path(path)) if Path(path).is_dir() else None
    return build_processor(image_processor, tokenizer, template)


def _read_chat_template(folder: Path) -> str | None:
    """Stock Qwen3-VL folders keep the template beside the tokenizer, in one of two files."""
    import json

    jinja = folder / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text()
    js = folder / "chat_template.json"
    if js.exists():
        return json.loads(js.read_text()).get("chat_template")
    return None
