"""The live view of an eval run in a notebook: a progress bar, running accuracy per mode, the table at the end.

`EvalPanel` is an `EvalProgress` (r1v4_nb.eval.runner). `%load_ext r1v4_nb` hands it to the runner, so
`r1v4_nb.eval.run` in that kernel shows it as soon as a run starts; or pass `progress=EvalPanel()`.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from typing import Any

import ipywidgets as w

from ..eval.runner import EvalProgress


class EvalPanel(EvalProgress):
    """A progress bar and a line of running accuracy per mode; the report's table replaces it at the end."""

    def __init__(self, display_on_start: bool = True):
        self.bar = w.IntProgress(value=0, min=0, max=1, description="eval", layout=w.Layout(width="60%"))
        self.line = w.HTML("")
        self.table = w.HTML("")
        self.widget = w.VBox([w.HBox([self.bar, self.line]), self.table])
        self.display_on_start = display_on_start
        self.right: Counter[str] = Counter()
        self.seen: Counter[str] = Counter()

    def on_start(self, total: int, done: int, modes: Sequence[str]) -> None:
        self.bar.max = max(1, total)
        self.bar.value = done
        self.line.value = html.escape(f"{done}/{total} done" + (" (resumed)" if done else ""))
        if self.display_on_start:
            from IPython.display import display

            display(self.widget)

    def on_item(self, record: dict[str, Any], done: int, total: int) -> None:
        self.seen[record["mode"]] += 1
        self.right[record["mode"]] += bool(record["correct"])
        self.bar.value = done
        running = "  ".join(f"{m} {self.right[m]}/{n}" for m, n in self.seen.items())
        self.line.value = html.escape(f"{done}/{total}  {running}")

    def on_end(self, report: dict[str, Any]) -> None:
        self.bar.bar_style = "success"
        rows = "".join(
            f"<tr><td>{html.escape(m)}</td><td>{f['n']}</td><td>{100 * (f['accuracy'] or 0):.1f}</td>"
            f"<td>{100 * f['ci95'][0]:.1f}-{100 * f['ci95'][1]:.1f}</td><td>{100 * (f['answer_rate'] or 0):.0f}</td>"
            f"<td>{f['wall_s'] or 0:.2f}</td><td>{f['tokens_out'] or 0:.0f}</td><td>{f['turns'] or 0:.2f}</td></tr>"
            for m, f in report.get("modes", {}).items())
        self.table.value = ("<table><tr><th>mode</th><th>n</th><th>accuracy %</th><th>95% CI</th><th>answered %</th>"
                            f"<th>wall s</th><th>tokens</th><th>turns</th></tr>{rows}</table>")


__all__ = ["EvalPanel"]
