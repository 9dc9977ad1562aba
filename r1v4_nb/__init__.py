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
