import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from r1v4_nb.models.processor import load_processor  # noqa: E402
from r1v4_nb.models.tiny import SPECIAL_TOKENS, TAG_TOKENS  # noqa: E402


@pytest.fixture(scope="module")
def red_png(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "red.png"
    Image.new("RGB", (100, 80), (255, 0, 0)).save(path)
    return str(path)


@pytest.mark.parametrize("kind", ["moe", "dense"])
def test_folder_loads_through_the_normal_path(kind, tiny_moe_path, tiny_dense_path, red_png):
    from PIL import Image
    from transformers import AutoConfig, AutoModelForImageTextToText

    path = tiny_moe_path if kind == "moe" else tiny_dense_path
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == ("qwen3_vl_moe" if kind == "moe" else "qwen3_vl")
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    processor = load_processor(path)
    tok = processor.tokenizer
    assert config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    for t in SPECIAL_TOKENS + TAG_TOKENS:
        assert tok.tokenize(t) == [t]
    decoded = tok.decode(tok("<|im_start|>a<think>b</think><|image_pad|>")["input_ids"], skip_special_tokens=True)
    assert decoded == "a<think>b</think>"
    messages = [{"role": "user", "content": [{"type": "image", "image": red_png}, {"type": "text", "text": "Hi?"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=[Image.open(red_png)], return_tensors="pt")
    n_image_tokens = int((inputs["input_ids"] == config.image_token_id).sum())
    assert n_image_tokens == int(inputs["image_grid_thw"].prod()) // 4
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4 or int(out[0, -1]) == tok.eos_token_id


def test_linear_input_widths_suit_bitsandbytes_cpu(tiny_moe_path):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_moe_path)
    widths = {m.in_features for m in model.modules() if isinstance(m, torch.nn.Linear)}
    assert widths and all(w % 64 == 0 for w in widths), widths
    experts = [m for n, m in model.named_modules() if n.endswith("mlp.experts")]
    assert experts and experts[0].gate_up_proj.dim() == 3


def test_chat_template_images_in_any_role_and_continue_final_message(tiny_moe_path, red_png):
    processor = load_processor(tiny_moe_path)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Look."}, {"type": "image", "image": red_png}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "<think>crop</think><observation>"},
            {"type": "image", "image": red_png},
            {"type": "text", "text": "</observation><think>so"},
        ]},
    ]
    text = processor.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nLook.<|vision_start|>")
    assert text.endswith("<|vision_end|></observation><think>so")
    assert text.count("<|image_pad|>") == 2
    fresh = processor.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert fresh.endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_min_max_pixels_change_the_image_token_count(tiny_moe_path, red_png):
    from PIL import Image

    small = load_processor(tiny_moe_path, max_pixels=32 * 32)
    big = load_processor(tiny_moe_path, min_pixels=128 * 128)
    n_small = int(small.image_processor(images=[Image.open(red_png)])["image_grid_thw"].prod())
    n_big = int(big.image_processor(images=[Image.open(red_png)])["image_grid_thw"].prod())
    assert n_small < n_big


@pytest.mark.slow
def test_cli_writes_a_dense_model(tmp_path):
    out = tmp_path / "dense"
    proc = subprocess.run(
        [sys.executable, "-m", "r1v4_nb.cli", "tiny-model", str(out), "--dense", "--seed", "3"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"path": str(out), "moe": False}
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen3_vl"


def test_cli_rejects_a_width_bitsandbytes_cannot_quantize(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "r1v4_nb.cli", "tiny-model", str(tmp_path / "x"), "--hidden", "96"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "multiple of 64" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
