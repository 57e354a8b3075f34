"""The training progress bar (steps/s, time left, the latest loss): tqdm's terminal bar when
stderr is a terminal; in a Jupyter or Colab notebook its notebook bar (a text bar in the cell
where ipywidgets is missing); otherwise, and with ``quiet``, none."""

import importlib.util
import sys

import tqdm


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (Jupyter, Colab, VS Code notebooks)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def bar(total: int, initial: int, *, shown: bool) -> tqdm.tqdm:
    """A progress bar of ``total`` steps starting at ``initial``; a disabled one unless
    ``shown`` and there is a terminal or a notebook to show it in."""
    settings = dict(total=total, initial=initial, unit="step")
    if shown and in_notebook():
        if importlib.util.find_spec("ipywidgets") is not None:  # the notebook bar's widgets
            from tqdm.notebook import tqdm as notebook_bar

            return notebook_bar(**settings)
        return tqdm.tqdm(**settings, file=sys.stderr, mininterval=0.5)
    return tqdm.tqdm(
        **settings, file=sys.stderr, dynamic_ncols=True, disable=not (shown and sys.stderr.isatty())
    )
