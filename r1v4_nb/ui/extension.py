"""`%load_ext r1v4_nb`: register the magics; `%unload_ext` removes them again."""

from __future__ import annotations

from typing import Any


def load_ipython_extension(ipython: Any) -> None:
    from ..eval.runner import set_notebook_progress
    from .magics import R1V4Magics

    ipython.register_magics(R1V4Magics)
    set_notebook_progress(_eval_panel)


def _eval_panel() -> Any:
    """`r1v4_nb.eval.run` in this kernel shows its progress as a widget (imported when a run starts)."""
    from .eval_panel import EvalPanel

    return EvalPanel()


def unload_ipython_extension(ipython: Any) -> None:
    magics = ipython.magics_manager.magics
    for kind in ("line", "cell"):
        magics[kind].pop("r1v4", None)
    ipython.magics_manager.registry.pop("R1V4Magics", None)
    from ..eval.runner import set_notebook_progress

    set_notebook_progress(None)
