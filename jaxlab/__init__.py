"""jaxlab: a functional JAX experiment framework.

    import jaxlab
    config = jaxlab.load_config("minimal_transformer", overrides={"train.steps": 500})
    metrics = jaxlab.train(config, workdir="runs/demo")
"""
from jaxlab.errors import Interrupted, NonFiniteError, UserError
from jaxlab.registry import list_experiments, load_config
from jaxlab.train import train

__all__ = ["Interrupted", "NonFiniteError", "UserError", "list_experiments", "load_config", "train"]
