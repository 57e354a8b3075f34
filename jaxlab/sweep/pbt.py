"""Population-based training of a vmapped sweep (``--scheduler pbt --vmap``), after Jaderberg et
al. 2017, "Population Based Training of Neural Networks" (arXiv:1711.09846), section 4.

The sweep's runs are the population, trained as one vmapped program. Every ``interval`` steps
the loop pauses (`Population`, the loop's ``exploit``) and ranks the live runs by ``metric`` at
that step. Each of the worst ``ceil(fraction * runs)`` takes the state of one of the best as many,
drawn uniformly ("truncation selection": the paper's bottom and top 20%, the default fraction):
parameters, optimizer state and EMA, all but its own random key (its data order and step keys
stay its own). It then multiplies each numeric leaf the runs differ in (the traced values, all
but the seed) by 0.8 or 1.2, drawn independently ("perturb"; kept to 6 significant digits, as
sampled values are, and integers rounded). Both happen on the device: one
gather on the trial axis of the stacked state, and new values of the traced leaves, which every
chunk takes as an argument, so nothing recompiles.

Each run's ``lineage.jsonl`` holds its hyperparameter schedule: one entry at step 0 and one at
every exploit step (the parent it copied, or none, its values from then on, and its metric
there). The decisions are a function of the records, seeded by ``seed`` and the step. The loop
saves each run's state at an exploit step after the exploit (its lineage entry written before),
and lets no run go on until every run's checkpoint there is committed
(`jaxlab.loop.train.train_runs`), so the runs of a killed population resume on the same side of
every exploit. A run resumed at step r keeps the lineage entries up to r and the values in force
there; runs that reach an exploit step after others resumed there take the decision again,
which gives the same states (a parent is never changed by an exploit, and a run that took a
parent's state takes it again). So a population killed at any moment resumes to the same
decisions and results (tested).
"""

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np
from etils import epath

from jaxlab import config as config_lib
from jaxlab import paths
from jaxlab.errors import UserError
from jaxlab.rundir.workdir import LINEAGE_FILE
from jaxlab.sweep.halving import rank, recorded_every
from jaxlab.sweep.plan import Run
from jaxlab.sweep.trials import TrialGroup, TrialProgram, split_untraceable, traced_config

PERTURBATIONS = (0.8, 1.2)  # the paper's "perturb" factors


@dataclasses.dataclass(frozen=True)
class PopulationBasedTraining:
    interval: int
    metric: str
    mode: str = "min"
    fraction: float = 0.2
    seed: int = 0

    def due(self, step: int, total_steps: int) -> bool:
        """Whether the population is compared at ``step``."""
        return 0 < step < total_steps and step % self.interval == 0

    def count(self, runs: int) -> int:
        """How many runs are replaced, and how many are drawn from, among ``runs`` live ones:
        ``ceil(fraction * runs)``, at most half of them."""
        return min(math.ceil(self.fraction * runs), runs // 2)


def check(pbt: PopulationBasedTraining, runs: Sequence[Run]) -> None:
    """`UserError`, before anything is written, for settings the runs cannot honour."""
    if not 0 < pbt.fraction <= 0.5:
        raise UserError(f"--fraction must be in (0, 0.5], got {pbt.fraction}")
    if len(runs) < 2:
        raise UserError(f"--scheduler pbt needs a population of 2 runs or more, got {len(runs)}")
    every = recorded_every(pbt.metric, pbt.mode, runs, "pbt trains the runs as one population")
    steps = runs[0].config.train.steps
    if not 0 < pbt.interval < steps or pbt.interval % every:
        raise UserError(
            f"--interval {pbt.interval} must be below config.train.steps={steps} and a "
            f"multiple of {every}, where {pbt.metric} is recorded"
        )
    keys, _ = split_untraceable([run.config for run in runs])
    if keys:
        raise UserError(
            f"--scheduler pbt trains the population as one program, and the runs differ in "
            f"config.{keys[0]}, which a program cannot trace; sweep it without --scheduler pbt"
        )
    traced = TrialGroup.of([run.config for run in runs]).traced
    outside = [key for key in traced if key != "seed" and not key.startswith("optimizer.")]
    if outside:
        raise UserError(
            f"--scheduler pbt perturbs optimizer settings (the task is built once per run), "
            f"and the runs differ in config.{outside[0]}; sweep it without --scheduler pbt"
        )


class Population:
    """The loop's exploit step (`jaxlab.loop.train.train_runs`) for the runs of ``program``,
    in ``workdirs``; keeps their values in force and their lineage files."""

    def __init__(
        self, pbt: PopulationBasedTraining, program: TrialProgram, workdirs: Sequence[epath.Path]
    ):
        self.pbt, self.program, self.workdirs = pbt, program, list(workdirs)
        self.keys = [key for key in program.group.traced if key != "seed"]
        self.values = {  # float64 on the host: the lineage shows the values as perturbed
            key: np.asarray([config_lib.get_leaf(c, key) for c in program.group.configs])
            for key in self.keys
        }
        self.lineages: list[list[dict]] = [[] for _ in self.workdirs]

    def due(self, step: int) -> bool:
        return self.pbt.due(step, self.program.config.train.steps)

    def resume(self, steps: Sequence[int]) -> list[ml_collections.ConfigDict]:
        """Each run's lineage cut to its entries up to its step in ``steps`` (a checkpoint at an
        exploit step holds the state after it), and its values set to the last of them; returns
        the runs' configs with the values in force."""
        start = {key: column.tolist() for key, column in self.values.items()}
        for i, (workdir, step) in enumerate(zip(self.workdirs, steps)):
            kept = [e for e in read_lineage(workdir) if e["step"] <= step]
            if not kept:
                kept = [{"step": 0, "parent": None, "values": _row(start, self.keys, i)}]
            self.lineages[i] = kept
            for key, value in kept[-1]["values"].items():
                self.values[key][i] = value
            _write(workdir, kept)
        self.program.set_values(self.values)
        return self.configs()

    def __call__(
        self, state: Any, step: int, records: Mapping[int, Mapping[str, Any]]
    ) -> tuple[Any, list[ml_collections.ConfigDict]]:
        """Exploit and explore at ``step``: ``records`` holds each live run's newest record (its
        index -> record); returns the new state and the configs in force."""
        scores = {
            i: record.get(self.pbt.metric) if record.get("step") == step else None
            for i, record in records.items()
        }
        parents = self.decide(step, scores)
        names = [workdir.name for workdir in self.workdirs]
        for i in scores:
            score = scores[i]
            entry = {
                "step": step,
                "parent": names[parents[i]] if parents[i] != i else None,
                "values": _row(self.values, self.keys, i),
                self.pbt.metric: float(score) if isinstance(score, (int, float)) else None,
            }
            lineage = [e for e in self.lineages[i] if e["step"] != step]  # decided again
            self.lineages[i] = [*lineage, entry]
            _write(self.workdirs[i], self.lineages[i])
        self.program.set_values(self.values)
        return self.program.regroup(state, parents), self.configs()

    def decide(self, step: int, scores: Mapping[int, float | None]) -> np.ndarray:
        """Each run's parent (itself when kept), and the new values in ``self.values``: the
        worst `PopulationBasedTraining.count` of the scored runs take a parent drawn from as
        many of the best, and its values perturbed."""
        parents = np.arange(len(self.workdirs))
        count = self.pbt.count(len(scores))
        if not count:
            return parents
        sign = 1.0 if self.pbt.mode == "min" else -1.0
        ranked = sorted(scores, key=lambda i: rank(scores[i], sign))  # ties: the sweep's order
        rng = np.random.default_rng([self.pbt.seed, step])
        for i in sorted(ranked[-count:]):
            parent = ranked[int(rng.integers(count))]
            parents[i] = parent
            for key in self.keys:
                column = self.values[key]
                value = column[parent] * rng.choice(PERTURBATIONS)
                column[i] = round(value) if column.dtype.kind == "i" else float(f"{value:.6g}")
        return parents

    def configs(self) -> list[ml_collections.ConfigDict]:
        """Each run's config with the values in force."""
        return [
            traced_config(config, _row(self.values, self.keys, i))
            for i, config in enumerate(self.program.group.configs)
        ]

    def final_values(self, index: int) -> dict[str, Any]:
        """Run ``index``'s values in force at its end, as table columns ``pbt/KEY``."""
        return {f"pbt/{key}": value for key, value in _row(self.values, self.keys, index).items()}


def _row(values: Mapping[str, Any], keys: Sequence[str], index: int) -> dict[str, Any]:
    """Run ``index``'s values of ``keys`` as Python numbers."""
    return {key: np.asarray(values[key][index]).item() for key in keys}


def read_lineage(workdir: epath.Path) -> list[dict]:
    """The entries of a run's `LINEAGE_FILE` (none when it has none)."""
    path = workdir / LINEAGE_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(workdir: epath.Path, entries: Sequence[dict]) -> None:
    paths.write_atomic(workdir / LINEAGE_FILE, "".join(json.dumps(e) + "\n" for e in entries))
