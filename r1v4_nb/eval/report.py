"""A run folder's figures: accuracy with 95% intervals, efficiency per mode, modes side by side, McNemar.

`build_report(records, manifest)` turns results.jsonl records into the report dict (saved as
report.json; accuracy under `modes.<mode>.accuracy`); `to_markdown` is its table view; `plot` draws
it with matplotlib; `compare` pairs two runs item by item and tests the difference (exact McNemar).
Intervals are Wilson score intervals, which stay inside [0, 1] and behave at small n and at 0 or 100%.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _acc(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    k = sum(1 for r in rows if r.get("correct"))
    lo, hi = wilson(k, n)
    return {"n": n, "correct": k, "accuracy": k / n if n else None, "ci95": [round(lo, 4), round(hi, 4)]}


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(x, nd)


def mode_figures(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy and the efficiency figures of one mode's records."""
    fig = _acc(rows)
    n = len(rows)
    answered = sum(1 for r in rows if r.get("answered"))
    model_s = sum(float(r.get("model_s") or 0) for r in rows)
    tokens_out = sum(int(r.get("tokens_out") or 0) for r in rows)
    calls: Counter[str] = Counter()
    for r in rows:
        calls.update(r.get("tool_calls") or {})
    fig.update(
        mean_score=_r(_mean([float(r.get("value") or 0) for r in rows])),
        answer_rate=_r(answered / n if n else None),
        no_answer=n - answered,
        errors=sum(1 for r in rows if r.get("error")),
        wall_s=_r(_mean([float(r.get("wall_s") or 0) for r in rows])),
        model_s=_r(model_s / n if n else None),
        tool_s=_r(_mean([float(r.get("tool_s") or 0) for r in rows])),
        tokens_out=_r(tokens_out / n if n else None, 1),
        tokens_in=_r(_mean([float(r.get("tokens_in") or 0) for r in rows]), 1),
        tokens_per_s=_r(tokens_out / model_s if model_s > 0 else None, 1),
        turns=_r(_mean([float(r.get("turns") or 0) for r in rows]), 2),
        tool_calls=_r(sum(calls.values()) / n if n else None, 2),
        tool_calls_per_tool={k: round(v / n, 3) for k, v in sorted(calls.items())},
        tool_errors=sum(int(r.get("tool_errors") or 0) for r in rows),
        ends=dict(Counter(r.get("end") or "-" for r in rows).most_common()),
    )
    return fig


def build_report(records: Sequence[dict[str, Any]], manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report of a run's records (the last record of an (id, mode) pair wins)."""
    manifest = manifest or {}
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        latest[(r["id"], r["mode"])] = r
    by_mode: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (_, mode), r in sorted(latest.items()):
        by_mode[mode].append(r)
    order = [m for m in manifest.get("modes", []) if m in by_mode] + sorted(m for m in by_mode
                                                                            if m not in manifest.get("modes", []))
    modes: dict[str, Any] = {}
    for m in order:
        rows = by_mode[m]
        fig = mode_figures(rows)
        cats: dict[str, list] = defaultdict(list)
        splits: dict[str, list] = defaultdict(list)
        for r in rows:
            cats[r.get("category") or "-"].append(r)
            splits[r.get("split") or "-"].append(r)
        fig["by_category"] = {c: _acc(v) for c, v in sorted(cats.items())}
        fig["by_split"] = {s: _acc(v) for s, v in sorted(splits.items())}
        modes[m] = fig
    tasks = manifest.get("tasks") or {}
    return {
        "format": "r1v4-eval-report", "version": 1,
        "run": {"model": (manifest.get("model") or {}).get("name") or manifest.get("model"),
                "tasks": tasks.get("file"), "tasks_count": tasks.get("count"),
                "skipped_rows": len(tasks.get("skipped") or []), "scorer": manifest.get("scorer"),
                "seed": manifest.get("seed")},
        "modes": modes,
    }


def write_report(out: str | Path, report: dict[str, Any], plots: bool = True) -> dict[str, Path]:
    """report.json, report.md and (with matplotlib) plots/*.png in the run folder."""
    from ..trajectory import atomic_write_text

    out = Path(out)
    paths = {"json": out / "report.json", "markdown": out / "report.md"}
    atomic_write_text(paths["json"], json.dumps(report, ensure_ascii=False, indent=1) + "\n")
    atomic_write_text(paths["markdown"], to_markdown(report))
    if plots:
        try:
            paths.update(plot(report, out / "plots"))
        except ImportError:  # matplotlib is in the [eval] extra; the JSON and Markdown are the record
            pass
    return paths


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _num(x: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables: modes side by side, then accuracy per category and split."""
    modes = report.get("modes", {})
    run = report.get("run", {})
    lines = [f"# Evaluation: {run.get('model') or 'model'} on {run.get('tasks') or 'tasks'}", ""]
    if run.get("skipped_rows"):
        lines += [f"{run['skipped_rows']} bad task rows were skipped.", ""]
    lines += ["| mode | n | accuracy % (95% CI) | answered % | wall s | model s | tool s | tokens out | tok/s "
              "| turns | tool calls |", "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for m, f in modes.items():
        lo, hi = f["ci95"]
        per_tool = ", ".join(f"{k} {v:g}" for k, v in f["tool_calls_per_tool"].items()) or "0"
        lines.append(f"| {m} | {f['n']} | {_pct(f['accuracy'])} ({_pct(lo)}-{_pct(hi)}) | {_pct(f['answer_rate'])} "
                     f"| {_num(f['wall_s'])} | {_num(f['model_s'])} | {_num(f['tool_s'])} "
                     f"| {_num(f['tokens_out'], '{:.0f}')} | {_num(f['tokens_per_s'], '{:.1f}')} "
                     f"| {_num(f['turns'])} | {per_tool} |")
    for key, title in (("by_category", "category"), ("by_split", "split")):
        groups = sorted({g for f in modes.values() for g in f.get(key, {})})
        if len(groups) <= 1 and key == "by_split":
            continue
        lines += ["", f"| {title} | " + " | ".join(f"{m} % (95% CI)" for m in modes) + " |",
                  "| --- |" + " --- |" * len(modes)]
        for g in groups:
            cells = []
            for f in modes.values():
                a = f.get(key, {}).get(g)
                cells.append("-" if a is None else
                             f"{_pct(a['accuracy'])} ({_pct(a['ci95'][0])}-{_pct(a['ci95'][1])}), n={a['n']}")
            lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], folder: str | Path) -> dict[str, Path]:
    """Accuracy with its interval, time split into model and tools, and accuracy per category (PNG files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    modes = report.get("modes", {})
    names = list(modes)
    out: dict[str, Path] = {}
    if not names:
        return out
    acc = [100 * (modes[m]["accuracy"] or 0) for m in names]
    err = [[a - 100 * modes[m]["ci95"][0] for a, m in zip(acc, names, strict=True)],
           [100 * modes[m]["ci95"][1] - a for a, m in zip(acc, names, strict=True)]]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].bar(names, acc, yerr=err, capsize=4, color="#4c72b0")
    axes[0].set_ylabel("accuracy % (95% CI)")
    axes[0].set_ylim(0, 100)
    axes[0].set_title("accuracy")
    model_s = [modes[m]["model_s"] or 0 for m in names]
    tool_s = [modes[m]["tool_s"] or 0 for m in names]
    axes[1].bar(names, model_s, label="model", color="#55a868")
    axes[1].bar(names, tool_s, bottom=model_s, label="tools", color="#c44e52")
    axes[1].set_ylabel("seconds per question")
    axes[1].set_title("time")
    axes[1].legend()
    axes[2].bar(names, [modes[m]["tokens_out"] or 0 for m in names], color="#8172b2")
    axes[2].set_ylabel("generated tokens per question")
    axes[2].set_title("tokens")
    fig.tight_layout()
    out["summary"] = folder / "summary.png"
    fig.savefig(out["summary"], dpi=90)
    plt.close(fig)
    cats = sorted({c for m in names for c in modes[m].get("by_category", {})})
    if len(cats) > 1:
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(cats) * len(names) / 2), 3.6))
        width = 0.8 / len(names)
        for i, m in enumerate(names):
            vals = [100 * ((modes[m]["by_category"].get(c) or {}).get("accuracy") or 0) for c in cats]
            ax.bar([j + i * width for j in range(len(cats))], vals, width, label=m)
        ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(cats))], cats)
        ax.set_ylabel("accuracy %")
        ax.set_ylim(0, 100)
        ax.legend()
        ax.set_title("accuracy per category")
        fig.tight_layout()
        out["categories"] = folder / "categories.png"
        fig.savefig(out["categories"], dpi=90)
        plt.close(fig)
    return out


# -- comparing two runs -----------------------------------------------------------------------------


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: b and c are the discordant pairs (binomial with p = 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def compare(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], mode: str | None = None,
            mode_b: str | None = None) -> dict[str, Any]:
    """Pair two runs' records by task id (per mode, or `mode` of A against `mode_b` of B) and test them."""
    def index(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r["id"], r["mode"]): r for r in records}

    ia, ib = index(a), index(b)
    if mode is not None:
        pairs = {mode: (mode, mode_b or mode)}
    else:
        common = sorted({m for _, m in ia} & {m for _, m in ib})
        if not common:
            raise UsageError("the two runs share no mode; pass --mode A_MODE --mode-b B_MODE to pair two modes")
        pairs = {m: (m, m) for m in common}
    out: dict[str, Any] = {}
    for label, (ma, mb) in pairs.items():
        ids = sorted({i for i, m in ia if m == ma} & {i for i, m in ib if m == mb})
        if not ids:
            raise UsageError(f"no task was run in both (mode {ma} of A, {mb} of B)")
        gained = [i for i in ids if not ia[(i, ma)]["correct"] and ib[(i, mb)]["correct"]]
        lost = [i for i in ids if ia[(i, ma)]["correct"] and not ib[(i, mb)]["correct"]]
        acc_a = sum(1 for i in ids if ia[(i, ma)]["correct"]) / len(ids)
        acc_b = sum(1 for i in ids if ib[(i, mb)]["correct"]) / len(ids)
        out[label if ma == mb else f"{ma}->{mb}"] = {
            "paired": len(ids), "accuracy_a": round(acc_a, 4), "accuracy_b": round(acc_b, 4),
            "difference": round(acc_b - acc_a, 4), "b_right_a_wrong": gained, "a_right_b_wrong": lost,
            "mcnemar_p": mcnemar_exact(len(gained), len(lost)),
            "flips": [{"id": i, "a": ia[(i, ma)].get("answer"), "b": ib[(i, mb)].get("answer"),
                       "gold": ia[(i, ma)].get("gold"), "now": "right" if i in gained else "wrong"}
                      for i in ids if i in gained or i in lost],
        }
    return out


def compare_markdown(result: dict[str, Any]) -> str:
    lines = ["| mode | paired | A % | B % | B - A | B right, A wrong | A right, B wrong | McNemar p |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for m, r in result.items():
        lines.append(f"| {m} | {r['paired']} | {_pct(r['accuracy_a'])} | {_pct(r['accuracy_b'])} "
                     f"| {100 * r['difference']:+.1f} | {len(r['b_right_a_wrong'])} | {len(r['a_right_b_wrong'])} "
                     f"| {r['mcnemar_p']:.3g} |")
    for m, r in result.items():
        for f in r["flips"]:
            lines.append(f"- {m} {f['id']}: now {f['now']} (A {f['a']!r}, B {f['b']!r}, gold {f['gold']!r})")
    return "\n".join(lines) + "\n"


__all__ = ["build_report", "compare", "compare_markdown", "mcnemar_exact", "mode_figures", "plot", "to_markdown",
           "wilson", "write_report"]
