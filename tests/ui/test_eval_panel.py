"""The notebook's eval panel: the bar and the running accuracy follow the items; the table appears at the end."""

from __future__ import annotations

from r1v4_nb.eval.report import build_report
from r1v4_nb.ui.eval_panel import EvalPanel


def test_panel_follows_a_run() -> None:
    p = EvalPanel(display_on_start=False)
    p.on_start(4, 1, ["direct", "general"])
    assert p.bar.max == 4 and p.bar.value == 1 and "resumed" in p.line.value
    recs = [{"id": "a", "mode": "direct", "correct": True, "answered": True},
            {"id": "a", "mode": "general", "correct": False, "answered": True}]
    for n, r in enumerate(recs, start=2):
        p.on_item(r, n, 4)
    assert p.bar.value == 3 and "direct 1/1" in p.line.value and "general 0/1" in p.line.value
    p.on_end(build_report(recs))
    assert "<td>direct</td>" in p.table.value and p.bar.bar_style == "success"
