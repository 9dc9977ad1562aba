"""The direction of imports: UI libraries only under r1v4_nb/ui/, and the core never imports the UI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "r1v4_nb"
UI_LIBS = ("ipywidgets", "IPython", "anywidget", "ipykernel")
CORE = ("agent.py", "events.py", "records.py", "images.py", "trajectory.py", "dialects", "models", "tools",
        "sandbox")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:  # resolve relative imports against the file's package
                parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
                base = parts[: len(parts) - node.level]
                mod = ".".join(base + ([mod] if mod else []))
            names.append(mod)
            names += [f"{mod}.{a.name}" if mod else a.name for a in node.names]  # `from . import ui`
    return names


def _files(*roots: str) -> list[Path]:
    out: list[Path] = []
    for r in roots:
        p = PKG / r
        out += [p] if p.is_file() else sorted(p.rglob("*.py"))
    return out


def test_ui_libraries_only_under_ui() -> None:
    bad = []
    for f in PKG.rglob("*.py"):
        if "ui" in f.relative_to(PKG).parts[:1]:
            continue
        for name in _imports(f):
            if name.split(".")[0] in UI_LIBS:
                bad.append(f"{f.relative_to(PKG)} imports {name}")
    assert not bad, bad


def test_core_never_imports_the_ui() -> None:
    bad = []
    for f in _files(*CORE):
        for name in _imports(f):
            if name.startswith("r1v4_nb.ui") or name.startswith("r1v4_nb.cli"):
                bad.append(f"{f.relative_to(PKG)} imports {name}")
    assert not bad, bad


def test_import_is_light() -> None:
    code = ("import sys, r1v4_nb, r1v4_nb.agent, r1v4_nb.trajectory; "
            "heavy = [m for m in ('torch', 'transformers', 'ipywidgets', 'cv2') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing r1v4_nb pulled in: {out.stdout.strip()}"
