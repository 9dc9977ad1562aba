"""Masks of rendered trajectories: model-written text only, turn by turn; image tokens as the processor counts them."""

from __future__ import annotations

import pytest

from r1v4_nb.dialects import get_dialect
from r1v4_nb.dialects.context import completed_text
from r1v4_nb.messages import chat_text
from r1v4_nb.records import ModelStep
from r1v4_nb.train.data import (
    IGNORE_INDEX,
    RenderError,
    collate,
    format_mask,
    render_example,
    render_examples,
)
from tests.support.train import written


@pytest.fixture(scope="module")
def processor(tiny_moe_path):
    from r1v4_nb.models.processor import load_processor

    return load_processor(tiny_moe_path)


@pytest.fixture(scope="module")
def trajs(tmp_path_factory):
    return written(tmp_path_factory.mktemp("train-data"), ("clean", "search", "recrop", "tool_error"))


def _expected_turns(traj, eos):
    d = get_dialect("r1v4")
    texts = [completed_text(s, d.closers) for s in traj.steps if isinstance(s, ModelStep)]
    texts[-1] += eos
    return texts


def test_unmasked_tokens_are_exactly_the_model_text_turn_by_turn(trajs, processor):
    tok = processor.tokenizer
    for traj in trajs:
        ex = render_example(traj, processor)
        expected = _expected_turns(traj, tok.eos_token)
        assert len(ex.spans) == len(expected) >= 2
        for (s, e), text in zip(ex.spans, expected, strict=True):
            assert tok.decode(ex.input_ids[s:e]) == text
            assert ex.labels[s:e] == ex.input_ids[s:e]
        in_loss = {i for s, e in ex.spans for i in range(s, e)}
        assert all((lab != IGNORE_INDEX) == (i in in_loss) for i, lab in enumerate(ex.labels))
        # the observation tokens (text and images) sit between the spans and are all masked
        gap = ex.labels[ex.spans[0][1]:ex.spans[1][0]]
        assert gap and set(gap) == {IGNORE_INDEX}


def test_tokens_match_the_processor_and_every_image_gets_its_count(trajs, processor):
    from PIL import Image as PILImage

    image_id = processor.image_token_id
    for traj in trajs:
        ex = render_example(traj, processor)
        d = get_dialect("r1v4")
        h = traj.header
        messages = d.build_messages(h.system_prompt, h.question, h.images, traj.steps)
        text = chat_text(processor, messages)
        paths = [p["image"] for m in messages if not isinstance(m["content"], str)
                 for p in m["content"] if p.get("type") == "image"]
        produced = [im for s in traj.tool_steps for im in s.observation.images]
        assert len(paths) == len(h.images) + len(produced)
        assert ex.n_images == len(paths)
        ref = processor(text=[text], images=[PILImage.open(p).convert("RGB") for p in paths], return_tensors="pt")
        assert ex.input_ids == ref["input_ids"][0].tolist()
        merge = processor.image_processor.merge_size
        assert ex.image_tokens == [int(g.prod()) // merge**2 for g in ref["image_grid_thw"]]
        runs, n = [], 0
        for t in ex.input_ids + [None]:
            if t == image_id:
                n += 1
            elif n:
                runs.append(n)
                n = 0
        assert runs == ex.image_tokens
        assert all(ex.labels[i] == IGNORE_INDEX for i, t in enumerate(ex.input_ids) if t == image_id)
        assert ex.pixel_values.shape[0] == int(ref["pixel_values"].shape[0])


def test_last_turn_only_masks_earlier_turns(trajs, processor):
    ex = render_example(trajs[1], processor, last_turn_only=True)
    assert ex.trained == [False] * (len(ex.spans) - 1) + [True]
    s, e = ex.spans[-1]
    assert [i for i, lab in enumerate(ex.labels) if lab != IGNORE_INDEX] == list(range(s, e))


def test_overlong_cut_ends_after_a_model_turn_and_keeps_only_its_images(trajs, processor):
    full = render_example(trajs[2], processor)  # recrop: three turns, three images
    limit = full.spans[1][1] + 3
    cut = render_example(trajs[2], processor, max_length=limit)
    assert cut.cut and cut.length == full.spans[1][1] and cut.spans == full.spans[:2]
    assert cut.n_images == 2 and cut.image_tokens == full.image_tokens[:2]
    assert cut.pixel_values.shape[0] == int(cut.image_grid_thw.prod(dim=1).sum())
    assert cut.input_ids.count(processor.image_token_id) == sum(cut.image_tokens)
    assert render_example(trajs[2], processor, max_length=limit, overlong="drop") is None
    assert render_example(trajs[2], processor, max_length=full.spans[0][1] - 1) is None
    report = render_examples(trajs, processor, max_length=limit, overlong="drop")
    assert len(report.examples) + len(report.dropped_overlong) == len(trajs) and report.dropped_overlong


def test_a_template_that_rewrites_model_text_is_refused(trajs, processor):
    import copy

    bad = copy.copy(processor)
    bad.chat_template = processor.chat_template.replace(
        "{{ render(message['content']) }}", "{{ render(message['content']) | replace('<think>', '<think> ') }}")
    assert bad.chat_template != processor.chat_template
    with pytest.raises(RenderError, match="model step 0: the chat template rewrites"):
        render_example(trajs[0], bad)


def test_collate_pads_and_concatenates_images(trajs, processor):
    exs = [render_example(t, processor) for t in trajs[:2]]
    batch = collate(exs, 0, processor.image_token_id)
    n = max(e.length for e in exs)
    assert batch["input_ids"].shape == (2, n)
    assert int(batch["attention_mask"].sum()) == sum(e.length for e in exs)
    assert batch["image_grid_thw"].shape[0] == sum(e.n_images for e in exs)
    assert int((batch["labels"] != IGNORE_INDEX).sum()) == sum(e.loss_tokens for e in exs)
    assert "⟦<think>" in format_mask(exs[0], processor.tokenizer)


def test_sharegpt_round_trip_gives_the_same_example(trajs, processor, tmp_path):
    import json

    from r1v4_nb.formats.sharegpt import to_sharegpt
    from r1v4_nb.train.sft import _read_sources

    src = tmp_path / "sg.json"
    src.write_text(json.dumps([to_sharegpt(t, root=tmp_path) for t in trajs[:2]]))
    back = _read_sources([src])
    for orig, imported in zip(trajs[:2], back, strict=True):
        a, b = render_example(orig, processor), render_example(imported, processor)
        assert (a.input_ids, a.labels, a.image_tokens) == (b.input_ids, b.labels, b.image_tokens)
