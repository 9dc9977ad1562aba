"""Trajectories to training examples, rendered exactly as the agent saw them.

A trajectory is rendered through its dialect's `build_messages` (the function
the agent calls at run time) and the model's own chat template. The loss mask
comes from rendering the conversation incrementally: for every model turn k,
the prompt the backend sent (`P_k`: the context before the turn, continued or
with a generation prompt) and the context right after the turn (`R_k`) are
both prefixes of the full rendering, so the turn's text is exactly
`full[len(P_k):len(R_k)]`. Anything else (system, question, observations,
notes, image tokens) is masked. The text is then tokenized in chunks cut at
those boundaries, so no token straddles a masked and an unmasked span, and
each image placeholder is expanded to the number of tokens the image processor
gives that image: the same count the processor itself would insert.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..dialects import Dialect, get_dialect
from ..errors import R1V4Error, UsageError
from ..records import ModelStep
from ..trajectory import Trajectory, read

IGNORE_INDEX = -100
OVERLONG = ("cut", "drop")


class RenderError(R1V4Error):
    """A trajectory whose rendering through the chat template does not match what the model saw."""


@dataclass
class Example:
    """One training sequence: token ids, labels (-100 where masked) and the pixels of its images in order."""

    input_ids: list[int]
    labels: list[int]
    pixel_values: Any = None  # torch tensor [patches, dim], all images in order, or None
    image_grid_thw: Any = None  # torch tensor [n_images, 3] or None
    image_tokens: list[int] = field(default_factory=list)  # placeholder tokens per image, in order
    spans: list[tuple[int, int]] = field(default_factory=list)  # token spans of model turns [start, end)
    turns: list[str] = field(default_factory=list)  # the model-written text of each span
    trained: list[bool] = field(default_factory=list)  # whether each span is in the loss
    source: str = ""
    cut: bool = False  # over-long and cut after a model turn

    @property
    def length(self) -> int:
        return len(self.input_ids)

    @property
    def loss_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)

    @property
    def n_images(self) -> int:
        return len(self.image_tokens)


def chat_text(processor: Any, messages: list[dict[str, Any]], *, prompt: bool) -> str:
    """The chat template's text for `messages`.

    `prompt=True` gives what a backend sends to generate the next turn: the last message continued
    when it is the assistant's, else a new assistant turn opened. `prompt=False` renders the whole
    conversation closed, as stored.
    """
    if not prompt:
        return processor.apply_chat_template(messages, tokenize=False)
    if messages and messages[-1]["role"] == "assistant":
        return processor.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _image_paths(messages: list[dict[str, Any]]) -> list[str]:
    paths = []
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            continue
        for part in content:
            if part.get("type") == "image":
                paths.append(str(part["image"]))
    return paths


def _turn_spans(traj: Trajectory, dialect: Dialect, processor: Any, full: str, label_eos: bool) -> list[tuple[int, int]]:
    """Character spans of the model-written text of each model step in `full`."""
    h = traj.header
    spans = []
    steps = traj.steps
    for i, step in enumerate(steps):
        if not isinstance(step, ModelStep):
            continue
        where = f"{traj.path or traj.header.id}: model step {step.index}"
        try:
            before = chat_text(processor, dialect.build_messages(h.system_prompt, h.question, h.images, steps[:i]),
                               prompt=True)
            after = chat_text(processor, dialect.build_messages(h.system_prompt, h.question, h.images,
                                                                steps[:i + 1]), prompt=True)
        except ValueError as exc:  # transformers: the template cut or changed the message to continue
            raise RenderError(f"{where}: the chat template rewrites the text the model wrote "
                              f"({str(exc).splitlines()[0]})") from None
        if not after.startswith(before):
            raise RenderError(f"{where}: the chat template renders the context before this turn differently "
                              "once the turn is added; use a template that keeps assistant text verbatim")
        if not full.startswith(after):
            raise RenderError(f"{where}: the full conversation does not start with the context after this turn; "
                              "the chat template rewrites earlier turns (e.g. drops old <think> blocks)")
        if step.text.strip() not in after[len(before):]:
            raise RenderError(f"{where}: the chat template rewrites the text the model wrote; "
                              "use a template that renders assistant text verbatim")
        spans.append((len(before), len(after)))
    if label_eos and spans and isinstance(steps[-1], ModelStep) and not steps[-1].calls:
        eos = processor.tokenizer.eos_token
        start, end = spans[-1]
        if eos and full.startswith(eos, end):
            spans[-1] = (start, end + len(eos))
    return spans


def _load_images(paths: Sequence[str], processor: Any) -> tuple[Any, Any, list[int]]:
    from PIL import Image as PILImage

    if not paths:
        return None, None, []
    pils = []
    for p in paths:
        with PILImage.open(p) as im:
            pils.append(im.convert("RGB"))
    out = processor.image_processor(images=pils, return_tensors="pt")
    grid = out["image_grid_thw"]
    merge = int(getattr(processor.image_processor, "merge_size", 2))
    counts = [int(g.prod().item()) // (merge * merge) for g in grid]
    return out["pixel_values"], grid, counts


def render_example(
    traj: Trajectory,
    processor: Any,
    *,
    dialect: str | Dialect | None = None,
    last_turn_only: bool = False,
    max_length: int | None = None,
    overlong: str = "cut",
    label_eos: bool = True,
) -> Example | None:
    """The training example of one trajectory, or None when it is over-long and `overlong="drop"`.

    `overlong="cut"` keeps the longest prefix that ends right after a model turn, so a cut never
    falls inside a tool call, an observation or an image; None if not even the first turn fits.
    """
    if overlong not in OVERLONG:
        raise UsageError(f"overlong={overlong!r}: choose one of {', '.join(OVERLONG)}")
    d = get_dialect(dialect or traj.header.dialect)
    h = traj.header
    messages = d.build_messages(h.system_prompt, h.question, h.images, traj.steps)
    full = chat_text(processor, messages, prompt=False)
    char_spans = _turn_spans(traj, d, processor, full, label_eos)
    if not char_spans:
        return None
    tok = processor.tokenizer
    image_token = processor.image_token
    image_id = tok.convert_tokens_to_ids(image_token)
    paths = _image_paths(messages)
    if full.count(image_token) != len(paths):
        raise RenderError(f"{traj.path or h.id}: the template wrote {full.count(image_token)} image placeholders "
                          f"for {len(paths)} images")
    pixel_values, grid, counts = _load_images(paths, processor)

    ids: list[int] = []
    labels: list[int] = []
    spans: list[tuple[int, int]] = []
    turns: list[str] = []
    images_before: list[int] = []  # images in the sequence when each span ends
    n_img = 0
    pos = 0
    bounds = [(s, e, True) for s, e in char_spans]
    pieces: list[tuple[str, bool]] = []
    for s, e, _ in bounds:
        pieces.append((full[pos:s], False))
        pieces.append((full[s:e], True))
        pos = e
    pieces.append((full[pos:], False))
    for text, is_turn in pieces:
        if not text:
            continue
        if is_turn:
            if image_token in text:
                raise RenderError(f"{traj.path or h.id}: an image placeholder inside model-written text")
            chunk = tok(text, add_special_tokens=False)["input_ids"]
            spans.append((len(ids), len(ids) + len(chunk)))
            turns.append(text)
            images_before.append(n_img)
            ids.extend(chunk)
            labels.extend(chunk)
            continue
        parts = text.split(image_token)
        expanded = parts[0]
        for part in parts[1:]:
            expanded += image_token * counts[n_img] + part
            n_img += 1
        chunk = tok(expanded, add_special_tokens=False)["input_ids"]
        ids.extend(chunk)
        labels.extend([IGNORE_INDEX] * len(chunk))
    if ids.count(image_id) != sum(counts):
        raise RenderError(f"{traj.path or h.id}: {ids.count(image_id)} image tokens after tokenizing, "
                          f"the processor gives {sum(counts)}")

    cut = False
    if max_length is not None and len(ids) > max_length:
        if overlong == "drop":
            return None
        fitting = [k for k, (_, e) in enumerate(spans) if e <= max_length]
        if not fitting:
            return None
        k = fitting[-1]
        end = spans[k][1]
        ids, labels = ids[:end], labels[:end]
        spans, turns = spans[:k + 1], turns[:k + 1]
        n_keep = images_before[k]
        if grid is not None:
            patches = int(grid[:n_keep].prod(dim=1).sum().item())
            pixel_values, grid = (pixel_values[:patches], grid[:n_keep]) if n_keep else (None, None)
        counts = counts[:n_keep]
        cut = True

    trained = [True] * len(spans)
    if last_turn_only:
        trained = [k == len(spans) - 1 for k in range(len(spans))]
        for (s, e), keep in zip(spans, trained, strict=True):
            if not keep:
                labels[s:e] = [IGNORE_INDEX] * (e - s)
    return Example(ids, labels, pixel_values, grid, counts, spans, turns, trained,
                   source=str(traj.path or h.id), cut=cut)


@dataclass
class RenderReport:
    """What happened to each trajectory on the way to examples."""

    examples: list[Example]
    dropped_overlong: list[str] = field(default_factory=list)
    cut: list[str] = field(default_factory=list)


def render_examples(
    trajectories: Iterable[Trajectory],
    processor: Any,
    *,
    dialect: str | Dialect | None = None,
    last_turn_only: bool = False,
    max_length: int | None = None,
    overlong: str = "cut",
    label_eos: bool = True,
) -> RenderReport:
    """Examples for many trajectories, with the over-long ones counted."""
    report = RenderReport([])
    for t in trajectories:
        ex = render_example(t, processor, dialect=dialect, last_turn_only=last_turn_only, max_length=max_length,
                            overlong=overlong, label_eos=label_eos)
        name = str(t.path or t.header.id)
        if ex is None:
            report.dropped_overlong.append(name)
            continue
        if ex.cut:
            report.cut.append(name)
        report.examples.append(ex)
    return report


def mask_segments(example: Example, tokenizer: Any) -> list[tuple[str, bool]]:
    """The example's text in runs of (text, in_loss): a readable view of the mask."""
    runs: list[tuple[list[int], bool]] = []
    for tid, lab in zip(example.input_ids, example.labels, strict=True):
        flag = lab != IGNORE_INDEX
        if runs and runs[-1][1] == flag:
            runs[-1][0].append(tid)
        else:
            runs.append(([tid], flag))
    return [(_decode_run(ids, tokenizer), flag) for ids, flag in runs]


def _decode_run(ids: list[int], tokenizer: Any) -> str:
    image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    out, n = [], 0
    for tid in ids + [None]:
        if tid == image_id:
            n += 1
            continue
        if n:
            out.append(f"<|image_pad|>×{n}")
            n = 0
        if tid is not None:
            out.append(tokenizer.decode([tid]))
    return "".join(out)


def format_mask(example: Example, tokenizer: Any, width: int = 0) -> str:
    """Plain text with the trained spans in ⟦ ⟧ (image placeholders shown as a count)."""
    text = "".join(f"⟦{t}⟧" if flag else t for t, flag in mask_segments(example, tokenizer))
    return text if not width or len(text) <= width else text[:width] + "…"


def collate(examples: Sequence[Example], pad_id: int, image_token_id: int) -> dict[str, Any]:
    """A right-padded batch with the images of all its examples concatenated in order."""
    import torch

    n = max(e.length for e in examples)
    input_ids = torch.full((len(examples), n), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), n), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(examples), n), dtype=torch.long)
    for i, e in enumerate(examples):
        input_ids[i, :e.length] = torch.tensor(e.input_ids)
        labels[i, :e.length] = torch.tensor(e.labels)
        attention[i, :e.length] = 1
    batch: dict[str, Any] = {"input_ids": input_ids, "labels": labels, "attention_mask": attention,
                             "mm_token_type_ids": (input_ids == image_token_id).long()}
    with_images = [e for e in examples if e.pixel_values is not None]
    if with_images:
        batch["pixel_values"] = torch.cat([e.pixel_values for e in with_images])
        batch["image_grid_thw"] = torch.cat([e.image_grid_thw for e in with_images])
    return batch


def load_trajectories(sources: str | Path | Sequence[str | Path]) -> list[Trajectory]:
    """Trajectories from files, folders (every *.jsonl inside, sorted) and glob patterns."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    files: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            files.extend(sorted(p.rglob("*.jsonl")))
        elif p.is_file():
            files.append(p)
        else:
            matched = sorted(Path(m) for m in glob.glob(str(src), recursive=True))
            if not matched:
                raise UsageError(f"no trajectories at {src}: give a .jsonl file, a folder of them or a glob")
            files.extend(m for m in matched if m.is_file())
    return [read(f) for f in files]
