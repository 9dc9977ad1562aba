"""r1v4_nb: agentic vision-language models in Jupyter, recorded as trajectories.

The package root is the top of the layer table (docs/architecture.md): it wires the demo world in as
the provider of the offline tools' default data, and holds IPython's extension hooks.
"""

from .paths import provide_offline_data
from .world import ensure_world

provide_offline_data(ensure_world)


def load_ipython_extension(ipython):  # noqa: ANN001 - IPython's hook; the UI loads only when it is called
    from .ui.extension import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython):  # noqa: ANN001
    from .ui.extension import unload_ipython_extension as unload

    unload(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """JupyterLab's hook: the prebuilt viewer extension (built from extensions/) shipped in the package."""
    return [{"src": "labextension", "dest": "r1v4-nb"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Jupyter server's hook: the viewer's endpoints (/r1v4/runs, /r1v4/trajectory, /r1v4/image)."""
    return [{"module": "r1v4_nb.ui.labserver"}]
