"""Time to first token per turn of an agent-like run, with and without KV prefix reuse.

The question carries a 672x672 image; each turn the model writes a few tokens,
then an observation (a code result, and every second turn a 224x224 crop) is
appended to the assistant message, which the model continues. Without reuse every turn re-encodes the whole conversation and
all its images; with reuse only the new tokens are prefilled. Both runs see the
same conversation (greedy decoding gives the same tokens, which is asserted).
Each figure is the best of --repeats tries (the reusing model's cache is restored
before each try), so other load on the machine inflates it less.
Run: .venv/bin/python benchmarks/prefix_reuse.py [--turns 6]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

from r1v4_nb.models.base import GenerationSettings
from r1v4_nb.models.hf import load
from r1v4_nb.models.tiny import make_tiny_model

SETTINGS = GenerationSettings(temperature=0, max_tokens=8)


def _images(folder: Path, n: int, size: int) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.new("RGB", (size, size), ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256)).save(p)
        paths.append(str(p))
    return paths


def _ttft(model, messages) -> tuple[float, str]:
    """Seconds from the call to the first sampled token (the first text may come later), and the text."""
    text = "".join(d.text for d in model.stream(messages, stop=[], settings=SETTINGS))
    return model.last_stats["ttft_s"], text


def _best(model, messages, repeats: int) -> tuple[float, str, dict]:
    """Best TTFT over `repeats` tries from the same cache state; the model keeps the last try's cache."""
    before = copy.deepcopy(model._cached)
    best, text, stats = float("inf"), "", {}
    for _ in range(repeats):
        model._cached = copy.deepcopy(before)
        t, text = _ttft(model, messages)
        if t < best:
            best, stats = t, dict(model.last_stats)
    return best, text, stats


def run(label: str, path: Path, image: str, crops: list[str], turns: int, repeats: int) -> None:
    on = load(path, progress=None, max_pixels=672 * 672)
    off = load(path, progress=None, max_pixels=672 * 672, prefix_reuse=False)
    question = [{"role": "user", "content": [{"type": "image", "image": image},
                                             {"type": "text", "text": "What is written on the sign? Crop and zoom."}]}]
    messages = question
    parts: list[dict] = []
    print(f"\n{label}: {on.memory['total'] / 2**20:.1f} MiB of weights")
    print(f"{'turn':>4} {'prompt tok':>10} {'prefilled':>9} {'TTFT reuse ms':>14} {'TTFT full ms':>13} {'ratio':>6}")
    _ttft(on, messages), _ttft(off, messages)  # warm-up
    on.reset_cache()
    for turn in range(1, turns + 1):
        t_on, a, stats = _best(on, messages, repeats)
        t_off, b, _ = _best(off, messages, repeats)
        assert a == b, "prefix reuse changed the tokens"
        print(f"{turn:>4} {stats['prompt_tokens']:>10} {stats['prefilled_tokens']:>9} {t_on * 1e3:>14.1f} "
              f"{t_off * 1e3:>13.1f} {t_off / t_on:>6.1f}x")
        result = f'{{"result": "turn {turn}: the sign reads OPEN 9-17, width 312 px, mean colour (118, 64, 33)", "type": "code"}}'
        parts.append({"type": "text", "text": a + "<observation>" + result})
        if turn % 2 == 0:
            parts.append({"type": "image", "image": crops[turn - 1]})
        parts.append({"type": "text", "text": "</observation><think>"})
        messages = question + [{"role": "assistant", "content": list(parts)}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        question = _images(root, 1, 672)[0]
        crops = _images(root / "crops", args.turns, 224)
        tiny = make_tiny_model(root / "tiny", moe=True)
        run("tiny MoE (hidden 64, 2 layers)", tiny, question, crops, args.turns, args.repeats)
        larger = make_tiny_model(root / "larger", moe=True, hidden=512, layers=8)
        run("larger random MoE (hidden 512, 8 layers, 8 experts)", larger, question, crops, args.turns,
            args.repeats)


if __name__ == "__main__":
    main()
