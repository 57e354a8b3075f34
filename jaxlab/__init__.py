"""jaxlab: a functional JAX experiment framework.

    import jaxlab
    config = jaxlab.load_config("minimal_transformer", overrides={"train.steps": 500})
    metrics = jaxlab.train(config, workdir="runs/demo")
    table = jaxlab.sweep("minimal_transformer:smoke", [{"seed": 0}, {"seed": 1}], "runs/seeds")
"""
from jaxlab.errors import UserError
from jaxlab.registry import list_experiments, load_config
from jaxlab.sweep import sweep  # shadows the module: import its helpers `from jaxlab.sweep import`
from jaxlab.train import train

__all__ = ["UserError", "list_experiments", "load_config", "sweep", "train"]
