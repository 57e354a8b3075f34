"""jaxlab: a functional JAX experiment framework.

import jaxlab
config = jaxlab.load_config("minimal_transformer", overrides={"train.steps": 500})
metrics = jaxlab.train(config, workdir="runs/demo")
metrics = jaxlab.evaluate(workdir="runs/demo")          # the newest checkpoint, on the test split
metrics = jaxlab.evaluate("runs/demo", step=500, overrides={"data.split_seed": 1})  # other data
config, setup, state = jaxlab.restore("runs/demo")      # state["params"], ...
table = jaxlab.sweep("minimal_transformer:smoke", [{"seed": 0}, {"seed": 1}], "runs/seeds")
workdir = jaxlab.notebook.workdir("minimal_transformer", {"train.steps": 500})  # stable name
"""

__version__ = "0.2.0"

from jaxlab import notebook
from jaxlab.config.registry import list_experiments, load_config
from jaxlab.errors import Interrupted, NonFiniteError, UserError
from jaxlab.loop.train import evaluate_workdir as evaluate
from jaxlab.loop.train import restore, train
from jaxlab.parallel import initialize_distributed
from jaxlab.sweep import sweep  # shadows the module: import its helpers `from jaxlab.sweep import`

__all__ = [
    "Interrupted",
    "NonFiniteError",
    "UserError",
    "evaluate",
    "initialize_distributed",
    "list_experiments",
    "load_config",
    "notebook",
    "restore",
    "sweep",
    "train",
]
