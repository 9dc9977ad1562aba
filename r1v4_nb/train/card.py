"""The model card of a built model: README.md with the data, filter, training and evaluation tables,
and the learning curve drawn as a PNG beside it (plain PIL, so no plotting package is needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["draw_curve", "write_card"]

_STAGE_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def draw_curve(points: list[dict[str, Any]], path: str | Path, title: str = "training loss (log scale)") -> Path:
    """Loss against step, one colour per curriculum stage, on a log axis; saved as PNG."""
    from PIL import Image, ImageDraw, ImageFont

    w, h, left, right, top, bottom = 720, 360, 64, 16, 28, 40
    im = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=12)
    d.text((left, 6), title, fill=(0, 0, 0), font=font)
    if not points:
        im.save(path)
        return Path(path)
    losses = [max(1e-4, p["loss"]) for p in points]
    lo, hi = math.log10(min(losses)), math.log10(max(losses))
    hi = hi if hi > lo else lo + 1
    n = max(p["step"] for p in points)

    def xy(step: int, loss: float) -> tuple[float, float]:
        x = left + (w - left - right) * (step - 1) / max(1, n - 1)
        y = top + (h - top - bottom) * (hi - math.log10(max(1e-4, loss))) / (hi - lo)
        return x, y

    d.rectangle((left, top, w - right, h - bottom), outline=(0, 0, 0))
    for e in range(math.floor(lo), math.ceil(hi) + 1):
        if lo <= e <= hi:
            _, y = xy(1, 10 ** e)
            d.line((left, y, w - right, y), fill=(220, 220, 220))
            d.text((4, y - 6), f"1e{e}", fill=(0, 0, 0), font=font)
    d.text((left, h - bottom + 6), "1", fill=(0, 0, 0), font=font)
    d.text((w - right - 40, h - bottom + 6), f"{n} steps", fill=(0, 0, 0), font=font)
    stages = list(dict.fromkeys(p["stage"] for p in points))
    for k, stage in enumerate(stages):
        colour = _STAGE_COLOURS[k % len(_STAGE_COLOURS)]
        line = [xy(p["step"], p["loss"]) for p in points if p["stage"] == stage]
        if len(line) > 1:
            d.line(line, fill=colour, width=1)
        d.text((left + 8 + 150 * k, h - 18), f"- {stage}", fill=colour, font=font)
    im.save(path)
    return Path(path)


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _reused(record: dict[str, Any]) -> str:
    reused = record.get("reused") or []
    if not reused:
        return ""
    return ("; this run resumed an earlier run of the same build and reused its finished work ("
            + ", ".join(reused) + "): a reused stage's seconds are the ones it took then, reused runs took none")


def write_card(folder: str | Path, record: dict[str, Any]) -> Path:
    """README.md of the model folder from the build record (build.json)."""
    folder = Path(folder)
    draw_curve(record.get("curve", []), folder / "learning_curve.png")
    lines = ["# r1v4-nb default agent", "",
             "A tiny Qwen3-VL-MoE trained from scratch by `r1v4-nb build-demo-model "
             f"--seed {record['seed']}`: tasks from `r1v4_nb.world.tasks`, runs of the scripted expert "
             "(`r1v4_nb.world.expert`) with the real tools, the curation filters, then SFT of every parameter "
             "in a curriculum. It finds the plaque the question names by its colour in code, crops its text at "
             "full resolution with the code tool and reads it; on an interleaved task it finds the inset in "
             "code, crops it, reverse-searches the crop, visits the best match's page and answers from it. "
             "It is a demonstration of the pipeline, not a general model.", "",
             f"- parameters: {record.get('parameters', 0) / 1e6:.2f}M; images seen at up to 128x128 px "
             "(16 visual tokens; a 64x32 crop is 2)",
             f"- build time: {record['timings'].get('total', 0) / 60:.1f} min on CPU with "
             f"{record.get('torch_threads', '?')} torch thread(s)" + _reused(record), "",
             "## Evaluation (held-out seeds, real tools)", "",
             _row(["set", "mode", "tasks", "accuracy", "answered", "valid turns", "seed"]),
             _row(["---"] * 7)]
    for name, r in record.get("eval", {}).items():
        for mode, f in r.items():
            if isinstance(f, dict) and "accuracy" in f:
                lines.append(_row([name, mode, f["n"], f"{f['accuracy']:.3f}", f"{f['answered'] or 0:.3f}",
                                   f"{f['valid_turns']:.3f}", r["seed"]]))
    lines += ["", "Chance on a zoom task is 1/64 (a letter of 8 and a digit of 8). Each set's reports, from the "
              "evaluation runner behind `r1v4-nb eval run`, are in the build's work folder.", "",
              "## Curation (expert runs -> filters)", "",
              _row(["set", "runs", "kept", "dropped (reason: count)"]), _row(["---"] * 4)]
    for name, f in record.get("filters", {}).items():
        dropped = ", ".join(f"{k}: {v}" for k, v in f.items() if k not in ("runs", "kept") and v) or "-"
        lines.append(_row([name, f["runs"], f["kept"], dropped]))
    lines += ["", "## Training (every parameter, AdamW, warm-up then cosine per stage)", "",
              _row(["stage", "data", "examples", "steps", "lr", "first loss", "last loss", "seconds"]),
              _row(["---"] * 8)]
    for s in record.get("stages", []):
        lines.append(_row([s["name"], ", ".join(s["data"]), s["examples"], s["steps"], s["lr"],
                           f"{s['first_loss']:.4f}", f"{s['last_loss']:.4f}", s["seconds"]]))
    lines += ["", "![learning curve](learning_curve.png)", "", "## Timings (seconds)", "",
              _row(["step", "seconds"]), _row(["---"] * 2)]
    lines += [_row([k, v]) for k, v in record.get("timings", {}).items()]
    lines += ["", "The whole record, with the plan and the data tables, is in `build.json`.", ""]
    path = folder / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def load_record(folder: str | Path) -> dict[str, Any]:
    """The build record of a model folder."""
    return json.loads((Path(folder) / "build.json").read_text(encoding="utf-8"))
