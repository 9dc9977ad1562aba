"""Trajectories to training examples, rendered exactly as the agent saw them.

A trajectory is rendered through its dialect's `build_messages` (the function
the agent calls at run time), the model's own chat template and
`r1v4_nb.messages.chat_prompt` (the function the backends feed the model
with). The loss mask comes from rendering the conversation incrementally: for
every model turn k, the prompt the backend sent (`P_k`) and the context right
after the turn (`R_k`) are both prefixes of the full rendering, so the turn's
text is exactly `full[len(P_k):len(R_k)]`. Anything else (system, question, observations,
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
from ..messages import Message, MessageError, chat_prompt, chat_text, expand_images, image_paths
from ..records import ModelStep, Step
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


def _context(traj: Trajectory, dialect: Dialect, steps: Sequence[Step]) -> list[Message]:
    h = traj.header
    return dialect.build_messages(h.system_prompt, h.question, h.images, steps)


def turn_spans(traj: Trajectory, dialect: Dialect, processor: Any, full: str,
               label_eos: bool = True) -> list[tuple[int, int]]:
    """Character spans in `full` of the text the model generated in each model step.

    For turn k, `chat_prompt` of the context before it (P_k) and after it (R_k, the turn continued)
    are what the backend fed the model; R_k is P_k followed by what the model wrote. The full
    rendering must start with R_k, or the template drops or rewrites model text (Qwen3-VL's
    templates drop reasoning before the last user query and normalise whitespace around
    `</think>`): that is an error naming the step, never a silently wrong mask.
    """
    spans = []
    steps = traj.steps
    for i, step in enumerate(steps):
        if not isinstance(step, ModelStep):
            continue
        where = f"{traj.path or traj.header.id}: model step {step.index}"
        try:
            before = chat_prompt(processor, _context(traj, dialect, steps[:i]))
            after = chat_prompt(processor, _context(traj, dialect, steps[:i + 1]))
        except (ValueError, MessageError) as exc:
            raise RenderError(f"{where}: the chat template cannot render this context ({str(exc).splitlines()[0]})"
                              ) from None
        if not after.startswith(before):
            raise RenderError(f"{where}: the chat template renders the context before this turn differently "
                              "once the turn is added; use a template that keeps assistant text verbatim")
        if not full.startswith(after):
            k = next((j for j, (x, y) in enumerate(zip(after, full, strict=False)) if x != y), len(full))
            raise RenderError(f"{where}: the chat template rewrites the text the model wrote (it renders "
                              f"{full[k:k + 40]!r} where the model wrote {after[k:k + 40]!r}); train with a template "
                              "that keeps assistant text verbatim, or on turns written in this template's shape")
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


@dataclass
class _Tokens:
    """A tokenised conversation: ids, labels, model-turn token spans and the images before each span's end."""

    ids: list[int]
    labels: list[int]
    spans: list[tuple[int, int]]
    turns: list[str]
    images_before: list[int]


def tokenize(full: str, char_spans: Sequence[tuple[int, int]], processor: Any, counts: Sequence[int],
             where: str) -> _Tokens:
    """`full` tokenised in chunks cut at the span boundaries (no token straddles a mask edge), each image
    placeholder expanded to its image's token count (`expand_images`, as the backends do)."""
    tok = processor.tokenizer
    image_token = processor.image_token
    out = _Tokens([], [], [], [], [])
    n_img, pos = 0, 0
    pieces: list[tuple[str, bool]] = []
    for s, e in char_spans:
        pieces += [(full[pos:s], False), (full[s:e], True)]
        pos = e
    pieces.append((full[pos:], False))
    for text, is_turn in pieces:
        if not text:
            continue
        if is_turn:
            if image_token in text:
                raise RenderError(f"{where}: an image placeholder inside model-written text")
            chunk = tok(text, add_special_tokens=False)["input_ids"]
            out.spans.append((len(out.ids), len(out.ids) + len(chunk)))
            out.turns.append(text)
            out.images_before.append(n_img)
            out.ids.extend(chunk)
            out.labels.extend(chunk)
            continue
        k = text.count(image_token)
        chunk = tok(expand_images(text, image_token, counts[n_img:n_img + k]), add_special_tokens=False)["input_ids"]
        n_img += k
        out.ids.extend(chunk)
        out.labels.extend([IGNORE_INDEX] * len(chunk))
    image_id = tok.convert_tokens_to_ids(image_token)
    if out.ids.count(image_id) != sum(counts):
        raise RenderError(f"{where}: {out.ids.count(image_id)} image tokens after tokenizing, "
                          f"the processor gives {sum(counts)}")
    return out


def _cut(t: _Tokens, max_length: int) -> int | None:
    """How many model turns fit in `max_length` tokens (the cut falls right after a turn); None if none."""
    fitting = [k for k, (_, e) in enumerate(t.spans) if e <= max_length]
    return fitting[-1] + 1 if fitting else None


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
    where = str(traj.path or traj.header.id)
    messages = _context(traj, d, traj.steps)
    full = chat_text(processor, messages)
    char_spans = turn_spans(traj, d, processor, full, label_eos)
    if not char_spans:
        return None
    paths = image_paths(messages)
    if full.count(processor.image_token) != len(paths):
        raise RenderError(f"{where}: the template wrote {full.count(processor.image_token)} image placeholders "
                          f"for {len(paths)} images")
    pixel_values, grid, counts = _load_images(paths, processor)
    t = tokenize(full, char_spans, processor, counts, where)
    cut = False
    if max_length is not None and len(t.ids) > max_length:
        keep = None if overlong == "drop" else _cut(t, max_length)
        if keep is None:
            return None
        end, n_img = t.spans[keep - 1][1], t.images_before[keep - 1]
        t = _Tokens(t.ids[:end], t.labels[:end], t.spans[:keep], t.turns[:keep], t.images_before[:keep])
        if grid is not None:
            patches = int(grid[:n_img].prod(dim=1).sum().item())
            pixel_values, grid = (pixel_values[:patches], grid[:n_img]) if n_img else (None, None)
        counts = counts[:n_img]
        cut = True
    trained = [not last_turn_only or k == len(t.spans) - 1 for k in range(len(t.spans))]
    for (s, e), keep_turn in zip(t.spans, trained, strict=True):
        if not keep_turn:
            t.labels[s:e] = [IGNORE_INDEX] * (e - s)
    return Example(t.ids, t.labels, pixel_values, grid, list(counts), t.spans, t.turns, trained, source=where, cut=cut)


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
