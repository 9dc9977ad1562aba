"""r1v4_nb."""


def load_ipython_extension(ipython):  # noqa: ANN001 - IPython's hook; the UI loads only when it is called
    from .ui.extension import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython):  # noqa: ANN001
    from .ui.extension import unload_ipython_extension as unload

    unload(ipython)
