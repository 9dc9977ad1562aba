import json
import threading

import pytest

torch = pytest.importorskip("torch")

from r1v4_nb.models.base import GenerationSettings, ModelError  # noqa: E402
from r1v4_nb.models.hf import load  # noqa: E402
from r1v4_nb.models.moe_quant import QuantizedExperts  # noqa: E402

GREEDY = GenerationSettings(temperature=0, max_tokens=16)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "blue.png"
    Image.new("RGB", (96, 64), (0, 0, 255)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def moe(tiny_moe_path):
    return load(tiny_moe_path, progress=None)


def _ask(image, text="What is this?"):
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]


def _run(model, messages, stop=(), settings=GREEDY, cancel=None):
    deltas = list(model.stream(messages, stop=list(stop), settings=settings, cancel=cancel))
    return "".join(d.text for d in deltas), deltas[-1]


def test_stream_matches_transformers_generate(moe, image):
    from PIL import Image

    inputs, _ = moe._encode(_ask(image))
    prompt = moe.processor.apply_chat_template(_ask(image), tokenize=False, add_generation_prompt=True)
    stock = moe.processor(text=[prompt], images=[Image.open(image).convert("RGB")], return_tensors="pt")
    for key in ("input_ids", "mm_token_type_ids", "pixel_values", "image_grid_thw"):
        assert torch.equal(inputs[key], stock[key]), key
    text, last = _run(moe, _ask(image))
    assert last.finish_reason in ("length", "stop") and last.usage.completion_tokens > 0
    ref = moe.model.generate(**inputs, max_new_tokens=16, do_sample=False)
    tok = moe.processor.tokenizer
    expected = tok.decode(ref[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert expected.startswith(text) and text.rstrip("\ufffd")
    assert last.usage.prompt_tokens == inputs["input_ids"].shape[1]


def test_stream_stops_before_the_stop_string(moe, image):
    moe.reset_cache()
    full, _ = _run(moe, _ask(image), settings=GenerationSettings(temperature=0, max_tokens=24))
    stop = full[6:9]
    assert stop and stop in full
    cut, last = _run(moe, _ask(image), stop=[stop], settings=GenerationSettings(temperature=0, max_tokens=24))
    assert cut == full[: full.index(stop)]
    assert last.finish_reason == "stop"


def test_cancel_mid_generation(moe, image):
    cancel = threading.Event()
    got = []
    for d in moe.stream(_ask(image), stop=[], settings=GenerationSettings(temperature=0, max_tokens=200), cancel=cancel):
        got.append(d)
        if d.text:
            cancel.set()
    assert got[-1].finish_reason == "cancelled"
    assert got[-1].usage.completion_tokens < 200


def test_prefix_reuse_gives_the_same_tokens_as_full_encoding(tiny_moe_path, image):
    reusing = load(tiny_moe_path, progress=None)
    fresh = load(tiny_moe_path, progress=None, prefix_reuse=False)
    messages = _ask(image)
    parts = []  # the assistant turn grows: model text, then an observation with an image
    for turn in range(3):
        a, _ = _run(reusing, messages)
        b, _ = _run(fresh, messages)
        assert a == b
        if turn:
            assert reusing.last_stats["reused_tokens"] > 0
            assert reusing.last_stats["prefilled_tokens"] < fresh.last_stats["prefilled_tokens"]
        assert fresh.last_stats["reused_tokens"] == 0
        parts += [
            {"type": "text", "text": a + "<observation>"},
            {"type": "image", "image": image},
            {"type": "text", "text": "</observation>"},
        ]
        messages = _ask(image) + [{"role": "assistant", "content": list(parts)}]
    assert reusing.describe()["prefix_reuse"] == "on" and fresh.describe()["prefix_reuse"] == "off"


def test_a_changed_image_is_re_encoded(tiny_moe_path, image, tmp_path):
    from PIL import Image

    other = tmp_path / "red.png"
    Image.new("RGB", (96, 64), (255, 0, 0)).save(other)
    model = load(tiny_moe_path, progress=None)
    _run(model, _ask(image))
    _run(model, _ask(str(other)))
    assert model.last_stats["reused_tokens"] < model.last_stats["prompt_tokens"] // 2
    fresh = load(tiny_moe_path, progress=None, prefix_reuse=False)
    assert _run(model, _ask(str(other)))[0] == _run(fresh, _ask(str(other)))[0]


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
@pytest.mark.parametrize("kind", ["moe", "dense"])
def test_quantized_loads_generate(quantization, kind, tiny_moe_path, tiny_dense_path, image):
    import bitsandbytes as bnb

    path = tiny_moe_path if kind == "moe" else tiny_dense_path
    model = load(path, quantization=quantization, progress=None)
    linear = bnb.nn.Linear4bit if quantization == "4bit" else bnb.nn.Linear8bitLt
    assert any(isinstance(m, linear) for m in model.model.modules())
    experts = [m for m in model.model.modules() if isinstance(m, QuantizedExperts)]
    assert len(experts) == (2 if kind == "moe" else 0)
    text, last = _run(model, _ask(image), settings=GenerationSettings(temperature=0, max_tokens=4))
    assert last.usage.completion_tokens > 0
    assert model.describe()["quantization"] == quantization
    if kind == "moe":
        assert model.memory["experts"] < 0.35 * load(path, progress=None).memory["experts"]


def test_quantized_moe_folder_reloads(tiny_moe_path, tmp_path, image):
    model = load(tiny_moe_path, quantization="4bit", progress=None)
    model.model.save_pretrained(tmp_path / "q")
    model.processor.save_pretrained(tmp_path / "q")
    again = load(tmp_path / "q", progress=None)
    assert sum(isinstance(m, QuantizedExperts) for m in again.model.modules()) == 2
    settings = GenerationSettings(temperature=0, max_tokens=6)
    assert _run(again, _ask(image), settings=settings)[0] == _run(model, _ask(image), settings=settings)[0]


def test_errors_are_one_line(tmp_path, tiny_moe_path, monkeypatch):
    import r1v4_nb.models.hf as hf

    with pytest.raises(ModelError, match="no model at"):
        load(tmp_path / "missing", progress=None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load(tmp_path / "empty", progress=None)
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelError, match="unknown architecture 'bert'"):
        load(bert, progress=None)
    weights_only = tmp_path / "weights-only"
    weights_only.mkdir()
    for f in ("config.json", "model.safetensors"):
        (weights_only / f).write_bytes((tiny_moe_path / f).read_bytes())
    with pytest.raises(ModelError, match="tokenizer / image processor"):
        load(weights_only, progress=None)
    with pytest.raises(ModelError, match="unknown quantization"):
        load(tiny_moe_path, quantization="3bit", progress=None)
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="needs a CUDA GPU"):
            load(tiny_moe_path, device_map="cuda:0", progress=None)
    monkeypatch.setattr(hf, "_available_bytes", lambda device: 1000)
    with pytest.raises(ModelError, match=r"needs ~0\.0 GiB .* only 0\.0 GiB is free") as err:
        load(tiny_moe_path, progress=None)
    assert "\n" not in str(err.value)


def test_missing_adapter_and_image(tiny_moe_path, tmp_path, moe):
    with pytest.raises(ModelError, match="no LoRA adapter"):
        load(tiny_moe_path, adapter=tmp_path, progress=None)
    with pytest.raises(ModelError, match="not found"):
        _run(moe, _ask(str(tmp_path / "nope.png")))


def test_progress_reports_estimate_and_components(tiny_dense_path):
    lines = []
    load(tiny_dense_path, progress=lines.append)
    assert "GiB of weights" in lines[0]
    assert all(k in lines[-1] for k in ("vision", "attention", "embeddings"))


@pytest.mark.slow
def test_quantized_moe_streams_stops_cancels_and_reuses_prefix(tiny_moe_path, image):
    """The 4-bit MoE (NF4 experts) through the whole generation path, not just a few tokens."""
    reusing = load(tiny_moe_path, quantization="4bit", progress=None)
    fresh = load(tiny_moe_path, quantization="4bit", progress=None, prefix_reuse=False)
    assert sum(isinstance(m, QuantizedExperts) for m in reusing.model.modules()) == 2
    assert not [n for n, _p in reusing.model.named_parameters() if ".experts." in n]
    messages, parts = _ask(image), []
    for turn in range(3):
        a, _ = _run(reusing, messages)
        assert a == _run(fresh, messages)[0]
        if turn:
            assert 0 < reusing.last_stats["reused_tokens"] and reusing.last_stats["prefilled_tokens"] < (
                fresh.last_stats["prefilled_tokens"])
        parts += [{"type": "text", "text": a + "<observation>"}, {"type": "image", "image": image},
                  {"type": "text", "text": "</observation>"}]
        messages = _ask(image) + [{"role": "assistant", "content": list(parts)}]
    longer = GenerationSettings(temperature=0, max_tokens=24)
    full, _ = _run(reusing, _ask(image), settings=longer)
    stop = full[6:9]
    cut, last = _run(reusing, _ask(image), stop=[stop], settings=longer)
    assert cut == full[: full.index(stop)] and last.finish_reason == "stop"
    cancel, got = threading.Event(), []
    for d in reusing.stream(_ask(image), stop=[], settings=GenerationSettings(temperature=0, max_tokens=200),
                            cancel=cancel):
        got.append(d)
        if d.text:
            cancel.set()
    assert got[-1].finish_reason == "cancelled" and got[-1].usage.completion_tokens < 200


@pytest.mark.slow
def test_8bit_does_not_log_a_warning_per_token(tiny_dense_path, image, caplog):
    import logging

    model = load(tiny_dense_path, quantization="8bit", progress=None)
    with caplog.at_level(logging.WARNING):
        _run(model, _ask(image), settings=GenerationSettings(temperature=0, max_tokens=4))
    assert not [r for r in caplog.records if "MatMul8bitLt" in r.getMessage()]


@pytest.mark.slow
def test_an_agent_run_on_the_random_4bit_tiny_model_ends_cleanly(tiny_moe_path, image, tmp_path):
    """The tiny model writes random text: the run must end on its budget or without an answer, never crash."""
    from r1v4_nb.agent import Agent, Budgets
    from r1v4_nb.events import RunFinished
    from r1v4_nb.tools.registry import build_tool
    from r1v4_nb.trajectory import read

    model = load(tiny_moe_path, quantization="4bit", progress=None)
    agent = Agent(model, tools=[build_tool("code", timeout_s=10)], runs_dir=tmp_path,
                  budgets=Budgets(max_steps=3, max_tokens_per_turn=48, max_total_tokens=2000))
    events = list(agent.run("What colour is the picture?", [image]))
    assert isinstance(events[-1], RunFinished)
    traj = read(next(tmp_path.glob("*.jsonl")))
    assert traj.end is not None and traj.end.error is None
    assert traj.end.reason in ("budget", "no_answer", "answered"), traj.end
    assert traj.header.model["backend"] == "hf" and traj.header.model["quantization"] == "4bit"
    assert sum(s.tokens_out for s in traj.model_steps) > 0


def test_incremental_detokenizer_equals_a_full_decode_at_every_token(moe):
    from r1v4_nb.models.hf import _Detokenizer

    tok = moe.processor.tokenizer
    ids = tok.encode("héllo wörld 你好 🎉 " * 40 + "</tool_call> done")
    rng = __import__("random").Random(0)
    ids += [rng.randrange(len(tok)) for _ in range(300)]  # random tokens: broken bytes, special tokens
    detok = _Detokenizer(tok)
    for n, token in enumerate(ids, start=1):
        assert detok.add(token) == tok.decode(ids[:n], skip_special_tokens=True), n
    assert detok.base > 0  # it did split, so later steps decode only the tail


def test_a_reply_that_ends_on_eos_keeps_its_last_characters(moe, image, monkeypatch):
    """The tail held back while watching for stop strings is sent when the model ends the turn itself."""
    import r1v4_nb.models.hf as hf

    tok = moe.processor.tokenizer
    script = tok("<answer>X7</answer>", add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]
    tokens = iter(script)
    monkeypatch.setattr(hf, "_sample", lambda logits, settings, gen: next(tokens))
    deltas = list(moe.stream(_ask(image), stop=["</tool_call>", "</code>", "<observation>"], settings=GREEDY))
    assert "".join(d.text for d in deltas) == "<answer>X7</answer>"
    assert deltas[-1].finish_reason == "stop"


def test_4bit_experts_decode_on_the_gemv_and_give_the_dequantize_paths_tokens(tiny_moe_path, image):
    """Greedy tokens through the HF backend with the experts on bitsandbytes' CPU GEMV and dequantizing: the
    two paths hold the same weights (scales rounded to bf16) and differ by bf16 rounding only."""
    from r1v4_nb.models.moe_quant import gemv_support, memory_report

    if not gemv_support()[0]:
        pytest.skip(gemv_support()[1])
    model = load(tiny_moe_path, quantization="4bit", progress=None, prefix_reuse=False)
    settings = GenerationSettings(temperature=0, max_tokens=12)
    fast = _run(model, _ask(image), settings=settings)[0]
    assert model.describe()["experts_decode"].startswith("bitsandbytes gemv_4bit")
    assert memory_report(model.model)["experts_decode"] > 0
    for block in model.model.modules():
        if isinstance(block, QuantizedExperts):
            block.fast_decode = False
    assert model.describe()["experts_decode"].startswith("dequantize")
    assert _run(model, _ask(image), settings=settings)[0] == fast


def test_4bit_experts_can_take_the_gemv_layout_at_load_time(tiny_moe_path, image):
    """build_decode=True converts every expert at load (so the first tokens pay nothing) and holds only the
    bf16 scales beside the stored experts; the tokens are the lazily converted model's."""
    from r1v4_nb.models.moe_quant import gemv_support, memory_report

    if not gemv_support()[0]:
        pytest.skip(gemv_support()[1])
    eager = load(tiny_moe_path, quantization="4bit", progress=None, prefix_reuse=False, build_decode=True)
    blocks = [b for b in eager.model.modules() if isinstance(b, QuantizedExperts)]
    assert blocks and all(len(b._built()) == 2 * b.num_experts for b in blocks)
    report = memory_report(eager.model)
    weights = sum(b.num_experts * sum(r * c for r, c in b.shapes.values()) for b in blocks)
    assert report["experts_decode"] == weights // 8  # one bf16 scale a 16-weight block
    lazy = load(tiny_moe_path, quantization="4bit", progress=None, prefix_reuse=False)
    assert report["experts"] == memory_report(lazy.model)["experts"]
    settings = GenerationSettings(temperature=0, max_tokens=12)
    assert _run(eager, _ask(image), settings=settings)[0] == _run(lazy, _ask(image), settings=settings)[0]
