"""Throughput of the incremental dialect parser, and proof that it is linear.

Feeds a long, realistic R1V4 transcript (think, tool calls with code in JSON
strings, observations, CJK and emoji) to the r1v4 parser whole, in random 1-8
character chunks and in random 1-8 byte chunks, and prints MB/s side by side.
Then it times the chunked feed on inputs of size n and 8n: the ratio must be
close to 8 (linear), not 64 (re-scanning the buffer per chunk). A second input,
a tool call whose code string is full of '<', quotes and escapes, checks the
same for the JSON-tracking path.
Run: .venv/bin/python benchmarks/parser.py [--size-kb 400]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time

from r1v4_nb.dialects import get_dialect

DIALECT = get_dialect("r1v4")


def block(k: int) -> str:
    code = (f"w, h = image_1.size\nbox = (w // {k % 7 + 2}, h // 3, w, h)\n"
            f"crop = image_1.crop(box).resize((w * 2, h * 2))\ncrop.save('crop_{k}.png')\nprint('crop_{k}.png')\n"
            "if '<tag>' in html or \"</tool_call>\" in s:\n    print('escaped \\\\ backslash')\n")
    call = json.dumps({"name": "code", "arguments": {"code": code}})
    search = json.dumps({"name": "text_search", "arguments": {"queries": [f"bridge {k} architect", "洛尔萨克 新桥"]}},
                        ensure_ascii=False)
    obs = json.dumps({"result": f"Result {k}: the bridge 🙂 opened in {1800 + k % 200}; a < b > c. " * 8,
                      "type": "text_search"}, ensure_ascii=False)
    return (f"<think>Step {k}: the label is small, so I crop and enlarge the lower right corner, then search "
            f"for the name I read. 看看这个标志。</think>\n<tool_call>{call}</tool_call>"
            f'<observation>{{"result": "crop_{k}.png", "type": "code"}}</observation>\n'
            f"<think>Now search.</think>\n<tool_call>{search}</tool_call><observation>{obs}</observation>\n")


def transcript(chars: int) -> str:
    parts, n, k = [], 0, 0
    while n < chars:
        b = block(k)
        parts.append(b)
        n += len(b)
        k += 1
    return "".join(parts) + "<think>Done.</think><answer>Émile Garnier</answer>"


def hostile(chars: int) -> str:
    body = 'x = "<\\"</tool_call>\\\\" < >" + \'<code>\' ' * (chars // 40)
    return "<tool_call>" + json.dumps({"name": "code", "arguments": {"code": body}}) + "</tool_call>"


def chunks(data: str | bytes, seed: int = 0) -> list:
    rng, out, i = random.Random(seed), [], 0
    while i < len(data):
        k = rng.randint(1, 8)
        out.append(data[i:i + k])
        i += k
    return out


def timed(pieces: list, repeat: int = 3) -> float:
    """Best of `repeat`, with the garbage collector paused: the benchmark's own list of a million
    chunks would otherwise make each collection slower as n grows and blur the ratio."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            p = DIALECT.parser()
            for c in pieces:
                p.feed(c)
            p.finish()
            best = min(best, time.perf_counter() - t0)
        finally:
            gc.enable()
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-kb", type=int, default=400, help="size of the base transcript (default 400 KB)")
    args = ap.parse_args()
    text = transcript(args.size_kb * 1000)
    mb = len(text.encode()) / 1e6
    segs = DIALECT.parse(text)
    print(f"transcript: {mb:.2f} MB, {len(text):,} characters, {len(segs):,} segments, "
          f"{sum(1 for s in segs if s.call):,} tool calls")
    rows = [("whole string", [text]), ("1-8 char chunks", chunks(text)),
            ("1-8 byte chunks", chunks(text.encode()))]
    print(f"{'feed':<18}{'seconds':>10}{'MB/s':>10}")
    for name, pieces in rows:
        t = timed(pieces)
        print(f"{name:<18}{t:>10.3f}{mb / t:>10.1f}")
    print(f"\n{'input (1-8 char chunks)':<28}{'t(n) s':>9}{'t(8n) s':>9}{'t(8n)/t(n)':>12}")
    for name, make in (("realistic transcript", transcript), ("'<' and quotes in a string", hostile)):
        small, large = make(args.size_kb * 125), make(args.size_kb * 1000)
        t1, t8 = timed(chunks(small)), timed(chunks(large))
        print(f"{name:<28}{t1:>9.3f}{t8:>9.3f}{t8 / t1:>12.2f}   (linear: ~8, quadratic: ~64)")


if __name__ == "__main__":
    main()
