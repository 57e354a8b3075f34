"""The device side of a run: its initial state and its compiled chunks of steps, on the mesh.

The loop (`jaxlab.loop.train.train_runs`) drives a `Program` through the methods below; a
vmapped sweep's `jaxlab.sweep.trials.TrialProgram` overrides them to train several runs stacked
as one program. Where the state lives is `state_sharding` (every leaf replicated today).
"""

import functools
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import optax

from jaxlab import parallel, sharding
from jaxlab.loop import feed
from jaxlab.loop.optim import make_optimizer
from jaxlab.loop.state import init_state
from jaxlab.loop.step import make_train_chunk
from jaxlab.tasks import Task


class Program:
    """One run's compiled init and chunks of ``config`` with ``task`` on ``mesh``."""

    def __init__(self, config: ml_collections.ConfigDict, task: Task, mesh: jax.sharding.Mesh):
        self.config, self.task, self.mesh = config, task, mesh
        self.tx = make_optimizer(config.optimizer, config.train.steps)
        self.batch_sharding = parallel.batch_sharded(mesh)
        self._chunks: dict[int, Any] = {}  # chunk length -> compiled chunk

    stacked = False  # whether the state holds several runs on a leading axis

    @property
    def batches_given(self) -> bool:
        """Whether the chunks take the batches read on the host (the Grain input path)."""
        return self.config.train.data_pipeline == "grain"

    def _init_named(self, example: dict | None) -> Any:
        """The state at step 0, its leaves still carrying the model's logical axis names."""
        config = self.config
        return init_state(
            self.task,
            self.tx,
            config.seed,
            config.train.batch_size,
            example,
            ema=config.train.ema_decay is not None,
        )

    def _example(self) -> dict | None:
        return feed.example_batch(self.config, self.task, self.config.seed)

    @functools.cached_property
    def state_specs(self) -> Any:
        """The `PartitionSpec` of each leaf of the state (`jaxlab.sharding.state_specs`)."""
        abstract = jax.eval_shape(self._init_named, self._example())
        return sharding.state_specs(abstract, self.mesh, self.config.sharding)

    @functools.cached_property
    def state_sharding(self) -> Any:
        """Where each leaf of the state lives on the mesh."""
        return sharding.shardings(self.state_specs, self.mesh)

    def init(self) -> Any:
        """The state at step 0 (on the Grain path initialised on the batch of step 0 read on the
        host, on the device path on the one sampled there), placed by `state_sharding`."""
        return jax.jit(
            lambda example: sharding.unbox(self._init_named(example)),
            out_shardings=self.state_sharding,
        )(self._example())

    def abstract_state(self) -> Any:
        """The state at step 0 as `jax.ShapeDtypeStruct`s placed by `state_sharding`, nothing
        allocated (to plan memory or lower a chunk ahead of time)."""
        abstract = jax.eval_shape(
            lambda example: sharding.unbox(self._init_named(example)), self._example()
        )
        return jax.tree.map(
            lambda x, where: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=where),
            abstract,
            self.state_sharding,
        )

    def step_function(self, length: int):
        """``(state, data) -> (state, metrics)`` of ``length`` steps, not compiled."""
        return self._chunk_of(self.task, self.tx, length)

    def _chunk_of(self, task: Task, tx: optax.GradientTransformation, length: int):
        """`make_train_chunk` of ``task`` and ``tx`` with the run's ``config.train`` settings."""
        train = self.config.train
        return make_train_chunk(
            task,
            tx,
            train.batch_size,
            length,
            self.batch_sharding,
            skip_nonfinite=train.skip_nonfinite_steps,
            batches_given=self.batches_given,
            grad_accum_steps=train.grad_accum_steps,
            ema_decay=train.ema_decay,
        )

    def compiled(self, length: int):
        """`step_function` compiled once per ``length``, the state donated."""
        if length not in self._chunks:
            self._chunks[length] = jax.jit(
                self.step_function(length),
                donate_argnums=0,
                out_shardings=(self.state_sharding, parallel.replicated(self.mesh)),
            )
        return self._chunks[length]

    # What the loop calls; a run is named by its index (always 0 here).

    def run_chunk(self, state: Any, data: Any, length: int, moving: Sequence[int]) -> Any:
        """Dispatches ``length`` steps of the runs ``moving``; returns (state, metrics)."""
        del moving  # the one run always moves
        return self.compiled(length)(state, data)

    def part(self, tree: Any, index: int) -> Any:
        """Run ``index``'s part of a state or of metrics of the program."""
        del index
        return tree

    def parts(self, state: Any) -> list[Any]:
        """Every run's part of a state, as evaluations and checkpoints take it: the state itself
        for one run (`parts_on_host`: whether they are copies on the host instead, which the
        loop may save while the next chunk, donated the state, runs)."""
        return [state]

    parts_on_host = False

    def join(self, parts: Sequence[Any]) -> Any:
        """The program's state made of each run's (the inverse of `part`)."""
        (state,) = parts
        return state

    def task_of(self, index: int) -> Task:
        """The task that evaluates and plots run ``index``."""
        del index
        return self.task

    def alone(self, index: int) -> "Program":
        """Run ``index`` as a program of its own (to replay one step of it)."""
        del index
        return self
