"""Run the tutorial notebooks and save them with their outputs, in a state that reopens cleanly.

A live widget's output names a model that exists only in the kernel that drew it; reopened later it can only
say "Error displaying widget: model not found". The views of r1v4-nb leave a static copy (HTML) beside each
widget, so the saved tutorials keep those copies and drop the widget outputs and any saved widget state.

    python scripts/build_notebooks.py                 # every notebooks/*.ipynb
    python scripts/build_notebooks.py notebooks/02-thinking-with-images.ipynb
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
ROOT = Path(__file__).resolve().parent.parent

__all__ = ["build", "clean"]


def clean(nb: nbformat.NotebookNode) -> int:
    """Drop widget outputs and saved widget state; returns how many outputs went."""
    dropped = 0
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = [o for o in cell.get("outputs", []) if WIDGET_VIEW not in o.get("data", {})]
        dropped += len(cell.get("outputs", [])) - len(kept)
        cell.outputs = kept
    return dropped


def build(path: Path, timeout_s: int = 900) -> None:
    """Execute `path` in a scratch folder (its runs/ stay out of the repo), clean it, write it back."""
    nb = nbformat.read(path, as_version=4)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="r1v4-nb-build-") as work:
        NotebookClient(nb, timeout=timeout_s, kernel_name="python3", resources={"metadata": {"path": work}},
                       store_widget_state=False).execute()
    dropped = clean(nb)
    nbformat.write(nb, path)
    print(f"{path.name}: ran in {time.monotonic() - started:.0f} s, {dropped} widget outputs dropped", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*", type=Path)
    a = p.parse_args(argv)
    for path in a.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb")):
        build(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
