"""SFT on the tiny models (CPU): the loss falls for LoRA, LoRA on experts and QLoRA; resume; adapters; config."""

from __future__ import annotations

import shutil
import threading

import pytest
import torch

from r1v4_nb.errors import UsageError
from r1v4_nb.train import TrainConfig
from r1v4_nb.train.data import collate, render_examples
from r1v4_nb.train.sft import Trainer, train
from tests.support.train import load_tiny, written


@pytest.fixture(scope="module")
def trajs(tmp_path_factory):
    return written(tmp_path_factory.mktemp("sft"), ("clean", "search", "clean"))


@pytest.fixture(scope="module")
def examples(trajs, tiny_moe_path):
    _, processor = load_tiny(tiny_moe_path)
    return render_examples(trajs, processor).examples


def mean_loss(model, processor, examples) -> float:
    tok = processor.tokenizer
    batch = collate(examples, tok.pad_token_id, processor.image_token_id)
    labels = batch.pop("labels")
    with torch.no_grad():
        logits = model(**batch).logits
    return float(torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                   labels[:, 1:].reshape(-1), ignore_index=-100))


def run(path, examples, tmp_path, quantization=None, **over):
    model, processor = load_tiny(path, quantization)
    settings = dict(learning_rate=1.5e-2, lr_scheduler="constant", max_steps=20, lora_r=8, lora_alpha=16)
    settings.update(over)
    cfg = TrainConfig(model=str(path), output_dir=str(tmp_path / "out"), quantization=quantization, **settings)
    trainer = Trainer(cfg, examples, model, processor)
    trainer.setup()
    before = mean_loss(trainer.model, processor, examples)
    result = trainer.run()
    trainer.model.eval()
    after = mean_loss(trainer.model, processor, examples)
    return before, after, result, trainer


@pytest.mark.slow
@pytest.mark.parametrize("which,quant,targets,lr", [
    ("dense", None, ["attention", "mlp"], 1.5e-2),
    ("moe", None, ["experts"], 1.5e-2),
    ("moe", "4bit", ["attention", "experts"], 1e-2),
])
def test_loss_falls(which, quant, targets, lr, examples, tiny_moe_path, tiny_dense_path, tmp_path):
    from r1v4_nb.models.lora import QuantizedExpertsLora

    path = tiny_dense_path if which == "dense" else tiny_moe_path
    before, after, result, trainer = run(path, examples, tmp_path, quant, targets=targets, learning_rate=lr)
    assert before - after > 0.5, (before, after, result.losses)
    assert len(result.losses) == 20 and (result.adapter / "adapter_config.json").is_file()
    if quant:
        assert any(isinstance(m, QuantizedExpertsLora) for m in trainer.model.modules())
    trained = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trained and all("lora" in n for n in trained)
    if targets == ["experts"]:
        assert all(".experts." in n for n in trained)


def greedy(model, processor, trajs) -> list[int]:
    from r1v4_nb.messages import chat_prompt

    t = trajs[0]
    from r1v4_nb.dialects import get_dialect

    msgs = get_dialect("r1v4").build_messages(t.header.system_prompt, t.header.question, [], [])
    ids = processor.tokenizer(chat_prompt(processor, msgs), return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids=ids, max_new_tokens=12, do_sample=False)
    return out[0, ids.shape[1]:].tolist()


@pytest.mark.slow
@pytest.mark.parametrize("quant", [None, "4bit"])
def test_adapter_saves_loads_and_changes_greedy_output(quant, trajs, examples, tiny_moe_path, tmp_path):
    _, after, result, trainer = run(tiny_moe_path, examples, tmp_path, quant, targets=["attention", "experts"],
                                    max_steps=12, learning_rate=1e-2)
    base, processor = load_tiny(tiny_moe_path, quant)
    tuned, _ = load_tiny(tiny_moe_path, quant, adapter=result.adapter)
    assert mean_loss(tuned, processor, examples) == pytest.approx(after, rel=1e-4)
    assert greedy(tuned, processor, trajs) != greedy(base, processor, trajs)
    loaded = _load_through_the_magic(f"{tiny_moe_path} {'--4bit ' if quant else ''}--adapter {result.adapter}")
    assert loaded.describe()["adapter"] == str(result.adapter)
    assert mean_loss(loaded.model, processor, examples) == pytest.approx(after, rel=1e-4)
    if quant:  # a QLoRA adapter is an ordinary peft adapter: it loads onto the full-precision model too
        full, _ = load_tiny(tiny_moe_path, None, adapter=result.adapter)
        base_full = mean_loss(load_tiny(tiny_moe_path)[0], processor, examples)
        assert mean_loss(full, processor, examples) < base_full - 0.2


def _load_through_the_magic(args: str):
    """What `%r1v4 load ARGS` leaves in a fresh notebook session."""
    from r1v4_nb.ui import api
    from r1v4_nb.ui.magics import run_magic

    old = api.SESSION
    api.SESSION = api.Session()
    try:
        run_magic(f"load {args}")
        assert api.SESSION.model is not None, "the load magic failed"
        return api.SESSION.model
    finally:
        api.SESSION = old


@pytest.mark.slow
def test_resume_continues_the_same_loss_curve(examples, tiny_moe_path, tmp_path):
    over = dict(targets=["attention", "experts"], max_steps=6, save_every=3, batch_size=2, grad_accum=2,
                lr_scheduler="cosine", warmup_steps=2)
    _, _, straight, _ = run(tiny_moe_path, examples, tmp_path / "a", **over)
    resumed_dir = tmp_path / "b" / "out"
    resumed_dir.mkdir(parents=True)
    shutil.copytree(tmp_path / "a" / "out" / "checkpoint-3", resumed_dir / "checkpoint-3")
    model, processor = load_tiny(tiny_moe_path)
    cfg = TrainConfig(model=str(tiny_moe_path), output_dir=str(resumed_dir), learning_rate=1e-2, lora_r=8,
                      lora_alpha=16, resume=True, **over)
    resumed = Trainer(cfg, examples, model, processor).run()
    assert resumed.losses[:3] == straight.losses[:3]
    assert resumed.losses[3:] == pytest.approx(straight.losses[3:], rel=1e-5)
    assert straight.losses[3:] != straight.losses[:3]


@pytest.mark.slow
def test_stop_saves_a_checkpoint_and_returns(trajs, tiny_dense_path, tmp_path):
    stop = threading.Event()
    stop.set()
    model, processor = load_tiny(tiny_dense_path)
    cfg = {"model": str(tiny_dense_path), "output_dir": str(tmp_path), "max_steps": 50, "targets": ["attention"]}
    result = train(cfg, trajs, model=(model, processor), stop_event=stop)
    assert result.stopped and result.steps == 1 and result.checkpoint == tmp_path / "checkpoint-1"
    assert (result.adapter / "adapter_model.safetensors").is_file()


def test_config_text_forms_and_errors():
    a = TrainConfig.from_text("model = m\nmax_steps = 5\ntargets = attention, mlp\nresume = true\n")
    b = TrainConfig.from_text("model: m\nmax_steps: 5\ntargets: [attention, mlp]\nresume: yes\n")
    c = TrainConfig.from_text('{"model": "m", "max_steps": 5, "targets": ["attention", "mlp"], "resume": true}')
    assert a == b == c and a.targets == ["attention", "mlp"] and a.resume is True
    assert a.with_overrides(["learning_rate=0.001"]).learning_rate == 0.001
    with pytest.raises(UsageError, match="unknown training option.*max_step"):
        TrainConfig.from_text("max_step = 5")
    with pytest.raises(UsageError, match="max_steps must be an integer"):
        TrainConfig.from_text("max_steps = many")
    with pytest.raises(UsageError, match="lora_dropout must be 0"):
        TrainConfig(lora_dropout=0.1)
    with pytest.raises(UsageError, match="targets"):
        TrainConfig(targets=["everything"])


def test_full_finetune_trains_every_parameter_and_saves_a_loadable_folder(examples, tiny_moe_path, tmp_path):
    from r1v4_nb.models.hf import load

    model, processor = load_tiny(tiny_moe_path)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    start = mean_loss(model, processor, examples)
    cfg = TrainConfig(model=str(tiny_moe_path), output_dir=str(tmp_path / "full"), finetune="full", max_steps=12,
                      learning_rate=3e-3, batch_size=2)
    result = Trainer(cfg, examples, model, processor).run()
    assert result.adapter is None and result.model_dir == tmp_path / "full" / "model"
    assert mean_loss(model, processor, examples) < start
    changed = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert any("visual" in n for n in changed) and any("experts" in n for n in changed)
    assert any("embed_tokens" in n for n in changed)
    reloaded = load(result.model_dir, progress=None)
    assert abs(mean_loss(reloaded.model, reloaded.processor, examples) - mean_loss(model.eval(), processor, examples)) < 1e-4


def test_full_finetune_refuses_quantization():
    with pytest.raises(UsageError, match="finetune=full"):
        TrainConfig(model="m", finetune="full", quantization="4bit")
    with pytest.raises(UsageError, match="finetune="):
        TrainConfig(model="m", finetune="half")
