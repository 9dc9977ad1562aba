"""The Jupyter layer: magics, the live run view, the debugger, the static HTML export.

The only package that imports IPython / ipywidgets / anywidget. The functions
here are the Python equivalents of the magics; they import the widget
machinery only when called, so `import r1v4_nb.ui` stays light.
"""

from __future__ import annotations

from typing import Any


def load(*args: Any, **kw: Any) -> Any:
    """`%r1v4 load`: see `api.load`."""
    from .api import load as f

    return f(*args, **kw)


def ask(*args: Any, **kw: Any) -> Any:
    """`%%r1v4 ask`: see `api.ask`."""
    from .api import ask as f

    return f(*args, **kw)


def replay(*args: Any, **kw: Any) -> Any:
    """`%r1v4 replay`: see `api.replay`."""
    from .api import replay as f

    return f(*args, **kw)


def open(*args: Any, **kw: Any) -> Any:  # noqa: A001 - the magic's name
    """`%r1v4 open`: see `api.open`."""
    from .api import open as f

    return f(*args, **kw)


def status() -> dict[str, Any]:
    """`%r1v4 status`: see `api.status`."""
    from .api import status as f

    return f()


def tools(*args: Any, **kw: Any) -> dict[str, Any]:
    """`%r1v4 tools`: see `api.tools`."""
    from .api import tools as f

    return f(*args, **kw)


def export_html(*args: Any, **kw: Any) -> Any:
    """`r1v4-nb export-html`: see `api.export_html`."""
    from .api import export_html as f

    return f(*args, **kw)


__all__ = ["ask", "export_html", "load", "open", "replay", "status", "tools"]
