"""Data parallelism as SPMD ``jit`` over a one-axis device mesh (the successor of ``pmap``).

The global batch is sharded along the mesh's ``data`` axis; parameters and optimizer state are
replicated. XLA inserts the gradient all-reduce. The same code runs on one CPU, simulated CPU
devices, a GPU, a TPU slice, and several hosts: with several processes the mesh spans the devices
of all of them, every process runs the same program, and each computes the part of the global
batch that falls on its own devices.
"""

import os
from collections.abc import Sequence
from typing import Any

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxlab.errors import UserError

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh with one ``data`` axis over ``devices`` (default: every device of every process)."""
    devices = list(devices) if devices is not None else jax.devices()
    return jax.make_mesh(
        (len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices
    )


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (example) axis split over the ``data`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    devices = mesh.devices.size
    if batch_size % devices:
        raise UserError(
            f"config.train.batch_size={batch_size} is not divisible by the number of "
            f"devices ({devices}); use a multiple of {devices}"
        )


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    auto: bool = False,
    heartbeat_timeout: int | None = None,
) -> bool:
    """Joins a multi-process run; returns whether one was joined. Call before any other JAX use.

    Explicit: ``coordinator_address`` (host:port of process 0), ``num_processes``, ``process_id``,
    or the environment variables ``JAXLAB_COORDINATOR_ADDRESS``, ``JAXLAB_NUM_PROCESSES``,
    ``JAXLAB_PROCESS_ID``. Auto-detected (TPU pod slices, SLURM, ...): ``auto=True`` or
    ``JAXLAB_DISTRIBUTED=1``. CPU processes exchange collectives through gloo.

    ``heartbeat_timeout`` (or ``JAXLAB_HEARTBEAT_TIMEOUT``), in seconds: how long JAX's
    coordination service waits for a silent process before it ends the others (by default JAX's
    own, 100 s). A process whose peer died is ended by the service with an abort, which no
    Python code can turn into an error line (see docs/faults.md).
    """
    env = os.environ
    coordinator_address = coordinator_address or env.get("JAXLAB_COORDINATOR_ADDRESS")
    num_processes = num_processes if num_processes is not None else _env_int("JAXLAB_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("JAXLAB_PROCESS_ID")
    auto = auto or env.get("JAXLAB_DISTRIBUTED", "") == "1"
    explicit = (coordinator_address, num_processes, process_id)
    if not auto and all(v is None for v in explicit):
        return False
    if not auto and any(v is None for v in explicit):
        raise UserError(
            "a multi-process launch needs all three of coordinator address, number of "
            "processes and process id (flags --coordinator-address, --num-processes, "
            "--process-id or JAXLAB_* environment variables); got "
            f"address={coordinator_address}, processes={num_processes}, "
            f"id={process_id}"
        )
    if not auto and process_id is not None and num_processes is not None:
        if not 0 <= process_id < num_processes:
            raise UserError(f"process id {process_id} is outside 0..{num_processes - 1}")
    heartbeat_timeout = (
        heartbeat_timeout if heartbeat_timeout is not None else _env_int("JAXLAB_HEARTBEAT_TIMEOUT")
    )
    if heartbeat_timeout is not None and heartbeat_timeout < 1:
        raise UserError(f"the heartbeat timeout must be at least 1 s, got {heartbeat_timeout}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    options: dict[str, Any] = {}
    if heartbeat_timeout is not None:
        options["heartbeat_timeout_seconds"] = heartbeat_timeout
    jax.distributed.initialize(coordinator_address, num_processes, process_id, **options)
    return True


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name} must be an integer, got {value!r}") from None
