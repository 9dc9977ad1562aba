"""The shape of the package: a table of layers, each importing only the layers below it, and no cycles.

`LAYERS` is the architecture of docs/architecture.md as data. A unit is a top-level module or
subpackage of r1v4_nb. Every import counts, wherever it sits (module top, inside a function, under
`TYPE_CHECKING`): a lazy import is still a dependency. A new unit goes into the table (and the doc)
before it can be imported; an import that points up, or a loop of modules, fails here with its line.
The tests themselves keep to the package's shape too: a module's tests are found by its path.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.support import CHECKOUT

PKG = CHECKOUT / "r1v4_nb"
TESTS = CHECKOUT / "tests"
UI_LIBS = ("ipywidgets", "IPython", "anywidget", "ipykernel")

# Bottom first. A unit may import units of lower layers and of its own layer (the cycle test keeps
# a layer's units from leaning on each other both ways).
LAYERS: list[tuple[str, ...]] = [
    ("errors", "paths"),                      # the base: no project imports
    ("images", "prompts", "modes", "messages"),  # images; prompt texts; the table of modes; the message shape
    ("records",),                             # tool calls, observations, steps
    ("dialects", "sandbox"),                  # model text formats; the code worker
    ("trajectory", "tools"),                  # the recorded run; the tools
    ("models", "world", "formats", "events"),  # backends; the demo world; import / export; run events
    ("agent",),                               # the loop
    ("runs",),                                # run set-up shared by every front end: tools, replay, fork
    ("train", "eval", "data"),                # training, evaluation, data curation
    ("ui",),                                  # the notebook front end (widgets, magics, server extension)
    ("cli",),                                 # the shell front end
    ("__init__",),                            # the package root: IPython's extension hooks
]

def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its __init__)."""
    out: dict[str, Path] = {}
    for f in sorted(PKG.rglob("*.py")):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


MODULES = _modules()


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every name imported by a file as an absolute dotted name, with its line.

    `from pkg import x` gives `pkg.x`: a submodule when x is one, else a name that lives in pkg.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    package = parts[:-1]  # the package a relative import counts from (an __init__'s own package)
    names: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([mod] if mod else []))
            names += [(f"{mod}.{a.name}" if mod else a.name, node.lineno) for a in node.names]
    return names


def _project_module(name: str) -> str | None:
    """The project module an imported name lives in (`r1v4_nb.records.ToolCall` -> `r1v4_nb.records`)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _edges() -> dict[str, dict[str, int]]:
    """module -> {project module it imports: the first line that does}."""
    out: dict[str, dict[str, int]] = {}
    for mod, path in MODULES.items():
        targets: dict[str, int] = {}
        for name, line in _imports(path):
            target = _project_module(name)
            if target is not None and target != mod:
                targets.setdefault(target, line)
        out[mod] = targets
    return out


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer_of() -> dict[str, int]:
    return {u: n for n, layer in enumerate(LAYERS) for u in layer}


def test_every_unit_has_a_layer() -> None:
    layer = _layer_of()
    missing = sorted({_unit(m) for m in MODULES} - set(layer))
    assert not missing, (f"r1v4_nb/{missing[0]} is in no layer: add it to LAYERS in tests/test_imports.py "
                         f"and to docs/architecture.md")


def test_no_upward_imports() -> None:
    layer = _layer_of()
    bad = []
    for mod, targets in _edges().items():
        a = _unit(mod)
        for target, line in targets.items():
            b = _unit(target)
            if a != b and layer.get(b, -1) > layer.get(a, -1):
                bad.append(f"{MODULES[mod].relative_to(PKG.parent)}:{line} imports {target} "
                           f"({b} is above {a} in the layer table)")
    assert not bad, "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(comp)
    return found


def test_no_import_cycles() -> None:
    edges = _edges()
    graph = {m: set(t) for m, t in edges.items()}
    bad = [sorted(c) for c in _cycles(graph)]
    assert not bad, "import cycles: " + "; ".join(" <-> ".join(c) for c in bad)


def test_the_checks_see_a_cycle_and_an_upward_import() -> None:
    """The cycle finder on a hand-made graph, and the edge reader on a real upward pair."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert [sorted(c) for c in _cycles(graph)] == [["a", "b", "c"]]
    assert "r1v4_nb.records" in _edges()["r1v4_nb.events"]  # events sits above records: a downward edge
    assert _layer_of()["records"] < _layer_of()["events"]


def test_ui_libraries_only_under_ui() -> None:
    bad = []
    for f in PKG.rglob("*.py"):
        if "ui" in f.relative_to(PKG).parts[:1]:
            continue
        for name, line in _imports(f):
            if name.split(".")[0] in UI_LIBS:
                bad.append(f"{f.relative_to(PKG)}:{line} imports {name}")
    assert not bad, bad


def test_import_is_light() -> None:
    code = ("import sys, r1v4_nb, r1v4_nb.agent, r1v4_nb.trajectory; "
            "heavy = [m for m in ('torch', 'transformers', 'ipywidgets', 'cv2') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing r1v4_nb pulled in: {out.stdout.strip()}"



# Test files that test no one module or package, each with what it tests instead.
ACROSS = {
    "test_imports.py": "the shape of the whole package (this file)",
    "test_demo.py": "the bundled DeepResearch demonstration end to end: CLI, replay, tools and world",
    "ui/test_browser.py": "the notebook in a real browser: the ui package's views through JupyterLab",
}


def test_tests_mirror_the_package() -> None:
    """tests/<path>/test_<module>.py tests r1v4_nb/<path>/<module>.py; test_<package>.py in a package's
    folder tests the package as a whole. Every folder is a package (test files of the same name in two
    folders stay apart); shared helpers live in tests/support/."""
    bad = []
    for f in sorted(TESTS.rglob("*.py")):
        rel = f.relative_to(TESTS)
        folder, name = rel.parent, rel.stem.removeprefix("test_")
        if rel.parts[0] == "support" or rel.as_posix() in ("conftest.py", *ACROSS):
            continue
        if not (TESTS / folder / "__init__.py").is_file():
            bad.append(f"tests/{folder}/ has no __init__.py")
        elif rel.name == "__init__.py":
            if not (PKG / folder).is_dir():
                bad.append(f"tests/{folder}/ mirrors no folder of r1v4_nb/")
        elif not rel.name.startswith("test_"):
            bad.append(f"tests/{rel} is not a test file: shared helpers go in tests/support/")
        elif not ((PKG / folder / f"{name}.py").is_file() or (folder.parts and folder.name == name)):
            bad.append(f"tests/{rel} names no module: r1v4_nb/{folder / name}.py is not there "
                       "(move it beside its module's path, or name what it tests in ACROSS)")
    assert not bad, "\n".join(bad)
