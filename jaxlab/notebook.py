"""Workdirs for notebooks: stable names under a durable root, so that running a training cell
again (after a disconnect, or in a new runtime with Drive) resumes the run, and running a
finished one returns at once. `workdir` names one; `workdir_root` picks the root.
"""

import os
import sys
from collections.abc import Mapping
from typing import Any

from etils import epath

from jaxlab import paths
from jaxlab.sweep.plan import directory_name, run_name

DRIVE = "/content/drive/MyDrive"


def workdir_root(root: str | os.PathLike | None = None) -> epath.Path:
    """The root of notebook workdirs (see docs/modules.md)."""
    if root:
        return paths.path(root, "root")
    if os.environ.get("JAXLAB_WORKDIR_ROOT"):
        return paths.path(os.environ["JAXLAB_WORKDIR_ROOT"], "JAXLAB_WORKDIR_ROOT")
    if "google.colab" in sys.modules:
        return epath.Path(
            f"{DRIVE}/jaxlab_runs" if os.path.isdir(DRIVE) else "/content/jaxlab_runs"
        )
    return epath.Path("runs").absolute()


def workdir(
    spec: str, overrides: Mapping[str, Any] | None = None, root: str | os.PathLike | None = None
) -> epath.Path:
    """``ROOT/SPEC/OVERRIDES``: the same directory for the same experiment and overrides, e.g.
    ``runs/minimal_transformer_mlp=False/train.steps=1500``."""
    return workdir_root(root) / directory_name(spec) / run_name(dict(overrides or {}))
