import os

import pytest

torch = pytest.importorskip("torch")

from r1v4_nb.models.moe_quant import (  # noqa: E402
    QuantizedExperts,
    decode_nf4,
    encode_nf4,
    memory_report,
    quantize_experts,
    quantized_moe_class,
)


@pytest.fixture(scope="module")
def moe_model(tiny_moe_path):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_moe_path).eval()


def _experts(model):
    return [m for n, m in model.named_modules() if n.endswith("mlp.experts")]


def test_encode_decode_round_trip_is_closer_than_plain_nf4():
    import bitsandbytes.functional as bnbf

    torch.manual_seed(0)
    w = torch.randn(128, 64) * 0.02
    packed, scale, top = encode_nf4(w)
    assert packed.dtype == torch.uint8 and packed.numel() == w.numel() // 2
    assert scale.numel() == w.numel() // 16
    back = decode_nf4(packed, scale, top, (128, 64), torch.float32)
    assert torch.nn.functional.cosine_similarity(back.flatten(), w.flatten(), dim=0) > 0.996
    q, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4")
    plain = bnbf.dequantize_4bit(q, state)
    assert ((back - w) ** 2).sum() < 0.8 * ((plain - w) ** 2).sum()


def test_expert_bytes_drop_at_least_3_5x_against_fp16(moe_model):
    config = moe_model.config.text_config
    for experts in _experts(moe_model):
        fp16 = sum(p.numel() * 2 for p in experts.parameters())
        q = QuantizedExperts.from_experts(experts, config)
        qbytes = sum(b.numel() * b.element_size() for b in q.buffers())
        assert not list(q.parameters())
        assert fp16 / qbytes >= 3.5, fp16 / qbytes


def test_quantized_expert_outputs_stay_close(moe_model):
    config = moe_model.config.text_config
    torch.manual_seed(1)
    for experts in _experts(moe_model):
        q = QuantizedExperts.from_experts(experts, config)
        x = torch.randn(64, config.hidden_size)
        top_k = torch.stack([torch.randperm(config.num_experts)[:2] for _ in range(64)])
        weights = torch.softmax(torch.randn(64, 2), dim=-1)
        ref = experts(x, top_k, weights)
        out = q(x, top_k, weights)
        cos = torch.nn.functional.cosine_similarity(ref.flatten(), out.flatten(), dim=0)
        assert cos > 0.99, float(cos)


def test_save_and_reload_the_quantized_model(tiny_moe_path, tmp_path):
    from transformers import AutoModelForImageTextToText, Qwen3VLMoeForConditionalGeneration

    model = AutoModelForImageTextToText.from_pretrained(tiny_moe_path).eval()
    before = memory_report(model)
    assert quantize_experts(model) == len(_experts(model)) == 2
    after = memory_report(model)
    assert after["experts"] * 3 < before["experts"]
    assert after["vision"] == before["vision"] and after["embeddings"] == before["embeddings"]
    ids = torch.tensor([[1, 20, 30, 40, 50]])
    expected = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False)
    model.save_pretrained(tmp_path / "q")
    reloaded_cls = quantized_moe_class(Qwen3VLMoeForConditionalGeneration, receive=False)
    reloaded = reloaded_cls.from_pretrained(tmp_path / "q").eval()
    assert all(isinstance(m, QuantizedExperts) for m in _experts(reloaded))
    a, b = _experts(model)[1], _experts(reloaded)[1]
    assert torch.equal(a.nf4_down, b.nf4_down) and torch.equal(a.scale_gate_up, b.scale_gate_up)
    assert torch.equal(reloaded.generate(input_ids=ids, max_new_tokens=6, do_sample=False), expected)


def test_quantize_while_loading_matches_quantize_after_loading(tiny_moe_path, moe_model):
    from transformers import Qwen3VLMoeForConditionalGeneration

    receiving = quantized_moe_class(Qwen3VLMoeForConditionalGeneration, receive=True)
    loaded = receiving.from_pretrained(tiny_moe_path).eval()
    reference = QuantizedExperts.from_experts(_experts(moe_model)[0], moe_model.config.text_config)
    got = _experts(loaded)[0]
    assert not got._receiving and not list(got.parameters())
    assert torch.equal(got.nf4_gate_up, reference.nf4_gate_up)
    assert torch.equal(got.top_down, reference.top_down)


def test_unloaded_block_refuses_to_run(moe_model):
    q = QuantizedExperts(moe_model.config.text_config, receive=True)
    with pytest.raises(RuntimeError, match="before its weights were loaded"):
        q(torch.zeros(1, 64), torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2))


def _exhaustive_scales(w):
    """Reference: each block's squared error under all 12 candidate levels, by plain division and search."""
    from r1v4_nb.models.moe_quant import _levels_to_absmax, _nf4_code

    code = _nf4_code(w.device)
    mids = (code[1:] + code[:-1]) / 2
    blocks = w.reshape(-1, 16).float()
    amax = blocks.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
    top = amax.max()
    k0 = (255 + torch.ceil(32 * torch.log2(amax / top) - 1e-6)).clamp(0, 255)
    errs, levels = [], []
    for step in range(12):
        k = (k0 - step).clamp(0, 255)
        s = _levels_to_absmax(k, top)[:, None]
        q = torch.bucketize((blocks / s).clamp(-1, 1), mids)
        errs.append(((code[q] * s - blocks) ** 2).sum(dim=1))
        levels.append(k)
    return torch.stack(errs, 1), torch.stack(levels, 1), blocks, top


def test_scale_search_finds_the_best_candidate_of_an_exhaustive_search():
    from r1v4_nb.models.moe_quant import _levels_to_absmax, _nf4_code

    torch.manual_seed(3)
    w = torch.randn(96, 256) * 0.02
    w[0, :16] = 0  # an all-zero block
    w[1, :16] *= 1e-6  # a block far below the matrix's top scale (its level clamps at 0)
    w[2, 5] = 0.5  # one outlier sets the top scale
    errs, levels, blocks, top = _exhaustive_scales(w)
    packed, scale, got_top = encode_nf4(w)
    assert got_top == top
    chosen = (levels == scale.float()[:, None]).float().argmax(dim=1)
    assert (levels == scale.float()[:, None]).any(dim=1).all()
    chosen_err = errs.gather(1, chosen[:, None]).squeeze(1)
    best = errs.min(dim=1).values
    assert torch.all(chosen_err <= best * (1 + 1e-4) + 1e-12)
    assert (chosen_err > best * (1 + 1e-6)).float().mean() < 0.01  # near-ties only
    # the codes are each weight's nearest under the chosen scale
    code = _nf4_code(w.device)
    s = _levels_to_absmax(scale, top)[:, None]
    nearest = torch.bucketize((blocks / s).clamp(-1, 1), (code[1:] + code[:-1]) / 2).reshape(-1).to(torch.uint8)
    assert torch.equal(packed, (nearest[0::2] << 4) | nearest[1::2])


def test_encoding_a_stack_equals_encoding_each_matrix():
    from r1v4_nb.models.moe_quant import encode_nf4_many

    torch.manual_seed(4)
    w = (torch.randn(5, 48, 32) * torch.tensor([0.01, 0.02, 0.05, 0.1, 1.0])[:, None, None]).bfloat16()
    packed, scale, top = encode_nf4_many(w)
    for e in range(5):
        p, s, t = encode_nf4(w[e])
        assert torch.equal(packed[e], p) and torch.equal(scale[e], s) and top[e] == t


def test_a_second_4bit_load_reads_the_quantized_experts_kept_beside_the_model(tiny_moe_path, tmp_path, monkeypatch):
    import shutil

    import r1v4_nb.models.moe_quant as mq
    from r1v4_nb.models.hf import load

    folder = tmp_path / "model"
    # other tests load the shared folder in 4-bit too, which keeps its own .r1v4-nf4 there: start without it
    shutil.copytree(tiny_moe_path, folder, ignore=shutil.ignore_patterns(".r1v4-nf4"))
    said: list[str] = []
    first = load(folder, quantization="4bit", progress=said.append)
    kept = list((folder / ".r1v4-nf4").glob("experts-*.safetensors"))
    assert len(kept) == 1 and any("kept 4 quantized experts tensors" in m for m in said)

    def no_search(*_a, **_k):
        raise AssertionError("the scale search ran although the cache holds the experts")

    monkeypatch.setattr(mq, "encode_nf4_many", no_search)
    said.clear()
    second = load(folder, quantization="4bit", progress=said.append)
    assert any("read 4 quantized experts tensors" in m for m in said)
    a, b = _experts(first.model), _experts(second.model)
    for x, y in zip(a, b, strict=True):
        for name in ("nf4_gate_up", "scale_down", "top_gate_up"):
            assert torch.equal(getattr(x, name), getattr(y, name))
    ids = torch.tensor([[1, 20, 30, 40]])
    assert torch.equal(first.model.generate(input_ids=ids, max_new_tokens=4, do_sample=False),
                       second.model.generate(input_ids=ids, max_new_tokens=4, do_sample=False))
    # a changed checkpoint misses the old cache entry: the search runs again
    weights = next(folder.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="scale search ran"):
        load(folder, quantization="4bit", progress=None)


def test_a_read_only_model_folder_keeps_its_cache_under_the_user_cache(tiny_moe_path, tmp_path, monkeypatch):
    from r1v4_nb.models.moe_quant import ExpertsCache

    monkeypatch.setenv("R1V4_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    cache = ExpertsCache.for_model(tiny_moe_path, torch.bfloat16)
    assert cache.path.parent == tmp_path / "cache" / "nf4"
    cache.put("layer.gate_up", (torch.zeros(2, 4, dtype=torch.uint8), torch.ones(2, 1, dtype=torch.uint8),
                                torch.ones(2)))
    cache.save()
    again = ExpertsCache.for_model(tiny_moe_path, torch.bfloat16)
    packed, scale, top = again.get("layer.gate_up")
    assert packed.shape == (2, 4) and again.get("layer.down") is None
    assert ExpertsCache.for_model(tiny_moe_path, torch.float32).get("layer.gate_up") is None


def _needs_gemv():
    from r1v4_nb.models.moe_quant import gemv_support

    ok, why = gemv_support()
    if not ok:
        pytest.skip(why)


def test_decode_packing_holds_the_stored_values_in_bitsandbytes_cpu_layout():
    """The decode packing holds the stored values, to bf16's rounding of each block's scale: the stored codes
    in the byte layout bitsandbytes' own CPU conversion makes, and the kernel's two calls multiply by them."""
    import bitsandbytes.functional as bnbf

    from r1v4_nb.models.moe_quant import gemv_absmax, gemv_codes, gemv_matmul, gemv_unpack

    torch.manual_seed(3)
    w = torch.randn(96, 128) * 0.02
    packed, scale, top = encode_nf4(w)
    codes, absmax = gemv_codes(packed, (96, 128)), gemv_absmax(scale, top, (96, 128))
    assert codes.shape == packed.shape and absmax.shape == (2, 4, 96) and absmax.dtype == torch.bfloat16
    fast = gemv_unpack(codes, absmax, (96, 128))
    stored = decode_nf4(packed, scale, top, (96, 128), torch.float32)
    assert ((fast - stored).abs() <= 2**-8 * stored.abs()).all()
    state = bnbf.QuantState(absmax=torch.ones(96 * 4), shape=torch.Size((96, 128)), blocksize=32,
                            quant_type="nf4", dtype=torch.float32)
    want, _ = bnbf._convert_weight_packed_for_cpu(packed.clone(), state)
    assert torch.equal(codes.view(96, 64), want)
    if gemv_support_ok():
        x = torch.randn(3, 128)
        ref = x.bfloat16().float() @ fast.t()
        got = gemv_matmul(x, codes, absmax, (96, 128))
        assert float((got - ref).norm() / ref.norm()) < 0.01


def gemv_support_ok() -> bool:
    from r1v4_nb.models.moe_quant import gemv_support

    return gemv_support()[0]


def _block_pair(moe_model):
    config = moe_model.config.text_config
    experts = _experts(moe_model)[0]
    fast = QuantizedExperts.from_experts(experts, config)
    slow = QuantizedExperts.from_experts(experts, config)
    slow.fast_decode = False
    return config, experts, fast, slow


def _fast_weight(block, key, e):
    """The fp32 matrix the GEMV multiplies for expert `e`."""
    from r1v4_nb.models.moe_quant import gemv_unpack

    return gemv_unpack(*block._gemv_packing(key, e), block.shapes[key])


def test_gemv_decode_matches_the_dequantize_path_within_quantization_error(moe_model):
    """On CPU the experts run on bitsandbytes' GEMV: the same weights as the dequantize path (scales rounded to
    bf16), with bf16 inputs and outputs: relative error < 2% against the block in fp32 on those weights, and
    cosine > 0.999 against the dequantize path."""
    from r1v4_nb.models.moe_quant import decode_path

    _needs_gemv()
    config, experts, fast, slow = _block_pair(moe_model)
    assert fast.uses_gemv and not slow.uses_gemv
    assert decode_path(fast).startswith("bitsandbytes gemv_4bit") and decode_path(slow).startswith("dequantize")
    torch.manual_seed(4)
    for tokens in (1, 3, 40):
        x = torch.randn(tokens, config.hidden_size)
        top_k = torch.stack([torch.randperm(config.num_experts)[:2] for _ in range(tokens)])
        weights = torch.softmax(torch.randn(tokens, 2), dim=-1)
        got, old, ref = fast(x, top_k, weights), slow(x, top_k, weights), experts(x, top_k, weights)
        exact = torch.zeros_like(x)  # the same block in fp32 on the GEMV packing's weights
        for t in range(tokens):
            for k in range(2):
                e = int(top_k[t, k])
                gate, up = (x[t] @ _fast_weight(fast, "gate_up", e).t()).chunk(2)
                y = (fast.act_fn(gate) * up) @ _fast_weight(fast, "down", e).t()
                exact[t] += weights[t, k] * y
        assert float((got - exact).norm() / exact.norm()) < 0.02
        assert torch.nn.functional.cosine_similarity(got.flatten(), old.flatten(), dim=0) > 0.999
        assert torch.nn.functional.cosine_similarity(got.flatten(), ref.flatten(), dim=0) > 0.99
    assert {"gemv_absmax_gate_up", "gemv_absmax_down"} <= dict(fast.named_buffers()).keys()


def test_without_the_kernel_the_block_falls_back_to_dequantizing(moe_model, monkeypatch):
    import bitsandbytes.functional as bnbf

    import r1v4_nb.models.moe_quant as mq

    monkeypatch.setattr(mq, "_GEMV_SUPPORT", [])
    monkeypatch.setattr(bnbf, "has_avx512bf16", lambda: False)
    ok, why = mq.gemv_support()
    assert not ok and "AVX512-BF16" in why
    config, _, fast, slow = _block_pair(moe_model)
    assert not fast.uses_gemv
    assert mq.decode_path(fast) == f"dequantize ({why})"
    x = torch.randn(2, config.hidden_size)
    top_k, weights = torch.tensor([[0, 3], [5, 3]]), torch.full((2, 2), 0.5)
    assert torch.equal(fast(x, top_k, weights), slow(x, top_k, weights))
    assert not [n for n, _ in fast.named_buffers() if n.startswith("gemv_")]


def test_a_pass_that_needs_gradients_dequantizes(moe_model):
    """The GEMV has no backward, so a forward that trains through the experts takes the dequantize path."""
    _needs_gemv()
    config, _, fast, slow = _block_pair(moe_model)
    x = torch.randn(2, config.hidden_size, requires_grad=True)
    top_k, weights = torch.tensor([[0, 3], [5, 3]]), torch.full((2, 2), 0.5)
    out = fast(x, top_k, weights)
    out.sum().backward()
    assert x.grad is not None and torch.equal(out, slow(x, top_k, weights))
    assert not [n for n, _ in fast.named_buffers() if n.startswith("gemv_")]


def test_the_decode_packing_is_not_saved(moe_model):
    _needs_gemv()
    config, _, fast, _ = _block_pair(moe_model)
    fast(torch.randn(1, config.hidden_size), torch.tensor([[0, 1]]), torch.full((1, 2), 0.5))
    assert "gemv_absmax_down" in dict(fast.named_buffers())
    assert not [k for k in fast.state_dict() if k.startswith("gemv_")]


def test_codes_permute_into_the_kernel_layout_and_back_exactly():
    """The fast path keeps one copy of the codes: the stored bytes permuted into the kernel's layout, exactly
    both ways."""
    from r1v4_nb.models.moe_quant import gemv_codes, stored_codes

    gen = torch.Generator().manual_seed(5)
    packed = torch.randint(0, 256, (96 * 64 // 2,), dtype=torch.uint8, generator=gen)
    layout = gemv_codes(packed, (96, 64))
    assert layout.shape == packed.shape and not torch.equal(layout, packed)
    assert torch.equal(stored_codes(layout, (96, 64)), packed)


def test_fast_decode_holds_no_second_copy_and_memory_report_counts_it(moe_model):
    """After fast decode the experts' bytes are the stored ones; `experts_decode` is only the bf16 scales of
    the experts built so far (1 bit a weight), and nothing once the block is back in the stored layout."""
    from r1v4_nb.models.moe_quant import build_decode_packing

    _needs_gemv()
    config, _, fast, _ = _block_pair(moe_model)
    holder = torch.nn.Module()
    holder.mlp = torch.nn.Module()
    holder.mlp.experts = fast  # memory_report files `.experts.` tensors under experts
    before = memory_report(holder)
    assert "experts_decode" not in before
    fast(torch.randn(1, config.hidden_size), torch.tensor([[0, 3]]), torch.full((1, 2), 0.5))
    after = memory_report(holder)
    weights = sum(r * c for r, c in fast.shapes.values())  # one expert's weights, both matrices
    assert after["experts"] == before["experts"]
    assert after["experts_decode"] == 2 * weights // 16 * 2  # two experts, one bf16 scale a 16-block
    assert build_decode_packing(fast) == 2 * (config.num_experts - 2)
    assert memory_report(holder)["experts_decode"] == config.num_experts * weights // 8
    fast.stored_layout()
    assert memory_report(holder) == before


def test_save_after_fast_decode_is_byte_identical_and_reloads(tiny_moe_path, tmp_path):
    """Saving after fast decode writes the stored packing exactly (permuted back in place), the reloaded
    model generates the same tokens, and the fast path after the save gives the same outputs as before it."""
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText, Qwen3VLMoeForConditionalGeneration

    _needs_gemv()
    model = AutoModelForImageTextToText.from_pretrained(tiny_moe_path).eval()
    quantize_experts(model)
    model.save_pretrained(tmp_path / "before")
    ids = torch.tensor([[1, 20, 30, 40, 50]])
    expected = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False)
    blocks = _experts(model)
    assert all(b._built() for b in blocks)  # decoded on the GEMV: codes in the kernel's layout
    block, x = blocks[0], torch.randn(3, model.config.text_config.hidden_size)
    top_k, weights = torch.tensor([[0, 3], [5, 3], [1, 2]]), torch.full((3, 2), 0.5)
    out = block(x, top_k, weights)
    model.save_pretrained(tmp_path / "after")
    assert not any(b._built() for b in blocks)
    first, second = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("before", "after"))
    assert first.keys() == second.keys() and [k for k in first if ".experts.nf4_" in k]
    for k in first:
        assert torch.equal(first[k], second[k]), k
    assert torch.equal(block(x, top_k, weights), out)  # rebuilt after the save: the same outputs
    reloaded = quantized_moe_class(Qwen3VLMoeForConditionalGeneration, receive=False).from_pretrained(tmp_path / "after")
    assert torch.equal(reloaded.eval().generate(input_ids=ids, max_new_tokens=6, do_sample=False), expected)


def test_gradient_pass_lora_and_moves_after_fast_decode(moe_model):
    """After fast decode: a pass that needs gradients, LoRA on the experts and a move (`.to`) each see the
    stored layout, and give what a block that never ran the GEMV gives."""
    from r1v4_nb.models.lora import QuantizedExpertsLora

    _needs_gemv()
    config, _, fast, slow = _block_pair(moe_model)
    x = torch.randn(2, config.hidden_size)
    top_k, weights = torch.tensor([[0, 3], [5, 3]]), torch.full((2, 2), 0.5)
    fast(x, top_k, weights)
    assert {("gate_up", 0), ("down", 5)} <= fast._built()
    xg = x.clone().requires_grad_(True)
    out = fast(xg, top_k, weights)
    out.sum().backward()
    assert xg.grad is not None and torch.equal(out, slow(x, top_k, weights))
    assert ("gate_up", 0) not in fast._built()  # the dequantize path put the experts it read back
    fast(x, top_k, weights)
    lora_fast = QuantizedExpertsLora(fast, 2, 4).to("cpu")  # the move puts the stored layout back
    assert not fast._built()
    lora_slow = QuantizedExpertsLora(slow, 2, 4)
    torch.nn.init.normal_(lora_fast.lora_B["down_proj"], std=0.1)
    with torch.no_grad():
        for name in ("gate_up_proj", "down_proj"):
            lora_slow.lora_A[name].copy_(lora_fast.lora_A[name])
            lora_slow.lora_B[name].copy_(lora_fast.lora_B[name])
    xg = x.clone().requires_grad_(True)
    got = lora_fast(xg, top_k, weights)
    got.sum().backward()
    assert lora_fast.lora_B["down_proj"].grad is not None
    assert torch.equal(got, lora_slow(x, top_k, weights))
    assert torch.equal(fast.state_dict()["nf4_gate_up"], slow.state_dict()["nf4_gate_up"])


def test_threads_converting_the_same_experts_at_once_convert_each_once(moe_model):
    """Converting permutes the codes in place: two threads racing on one expert must not permute it twice."""
    import threading

    _needs_gemv()
    _, _, fast, slow = _block_pair(moe_model)
    want = {(k, e): _fast_weight(slow, k, e) for k in slow.shapes for e in range(slow.num_experts)}
    start = threading.Barrier(4)

    def convert() -> None:
        start.wait()
        for key in fast.shapes:
            for e in range(fast.num_experts):
                fast._gemv_packing(key, e)

    threads = [threading.Thread(target=convert) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (key, e), w in want.items():
        assert torch.equal(_fast_weight(fast, key, e), w), (key, e)
    fast.stored_layout()
    slow.stored_layout()
    for key in fast.shapes:  # and back, exactly
        assert torch.equal(getattr(fast, f"nf4_{key}"), getattr(slow, f"nf4_{key}"))
