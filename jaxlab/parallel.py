"""The device mesh (`MESH_AXES`: trial, data, fsdp, tensor, sized by ``config.mesh``), the
sharding of batches over it, and joining a multi-process run. Where the train state's leaves live
on the mesh is `jaxlab.sharding`'s job; the ``trial`` axis splits the trials of a vmapped sweep
(`jaxlab.sweep.trials`) and is of size 1 for a single run.
"""

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxlab.errors import UserError

TRIAL_AXIS = "trial"  # splits the trials of a vmapped sweep
RUN_AXES = ("data", "fsdp", "tensor")  # the axes one run's batch and state are split over
MESH_AXES = (TRIAL_AXIS, *RUN_AXES)  # the mesh's axes, outermost first
BATCH_AXES = ("data", "fsdp")  # the axes the batch is split over (FSDP is data parallel too)


def check_sizes(sizes: Mapping[str, Any]) -> None:
    """`UserError` unless ``config.mesh`` holds a size for each axis it names: a positive int or
    -1, or for ``trial`` a positive int or 0 (chosen)."""
    unknown = sorted(set(sizes) - set(MESH_AXES))
    if unknown:
        raise UserError(
            f"config.mesh.{unknown[0]} is not a mesh axis; the axes are {', '.join(MESH_AXES)}"
        )
    for axis, size in sizes.items():
        integer = isinstance(size, int) and not isinstance(size, bool)
        if axis == TRIAL_AXIS and not (integer and size >= 0):
            raise UserError(
                f"config.mesh.trial must be a positive int or 0 (chosen for the trials), "
                f"got {size!r}"
            )
        if axis != TRIAL_AXIS and (not integer or size == 0 or size < -1):
            raise UserError(f"config.mesh.{axis} must be a positive int or -1, got {size!r}")


def mesh_shape(sizes: Mapping[str, int], devices: int, runs: int | None = None) -> tuple[int, ...]:
    """The sizes of `MESH_AXES` for ``devices`` devices (``config.mesh``: an axis of -1 takes the
    devices the others leave), for a single run or a program of ``runs`` stacked runs (a vmapped
    sweep's trials); `UserError` naming the sizes when they do not fit.

    A ``trial`` size of 0 (the default) is chosen. For stacked runs: each run's batch stays as
    the other axes split it (a -1 there counts as 1), and the trial axis takes as many devices
    as divide the runs (their greatest common divisor with the devices left), so a run computes
    alike in a program of any size (a resumed or pruned group) and the mesh may leave devices
    idle. For a single run it is 1. Any other trial size must divide the runs, and the mesh
    must then fill the devices."""
    check_sizes(sizes)
    shape = [int(sizes.get(axis, 1)) for axis in MESH_AXES]
    count = 1 if runs is None else runs
    if shape[0] == 0 and runs is not None:  # chosen for stacked runs
        shape[1:] = [1 if size == -1 else size for size in shape[1:]]
        shape[0] = math.gcd(runs, max(1, devices // math.prod(shape[1:])))
        if math.prod(shape) <= devices:
            return tuple(shape)
    shape[0] = shape[0] or 1
    if count % shape[0]:
        raise UserError(
            f"config.mesh.trial={shape[0]} does not divide the {count} trials trained as one "
            f"program{' (a single run)' if runs is None else ''}: leave it 0 (chosen) or use a "
            f"divisor of {count}"
        )
    shown = " ".join(  # a single run's trial axis goes without saying
        f"{axis}={size}"
        for axis, size in zip(MESH_AXES, shape)
        if runs is not None or axis != TRIAL_AXIS
    )
    if shape.count(-1) > 1:
        raise UserError(
            f"config.mesh {shown}: each axis must be a positive size, and at most one -1 "
            f"(the devices the others leave)"
        )
    fixed = math.prod(size for size in shape if size != -1)
    if -1 in shape and devices % fixed == 0:
        shape[shape.index(-1)] = devices // fixed
    if math.prod(shape) != devices:
        raise UserError(
            f"config.mesh {shown} needs {fixed}{' x k' if -1 in shape else ''} devices; "
            f"there are {devices}"
        )
    return tuple(shape)


def make_mesh(
    devices: Sequence[jax.Device] | None = None,
    sizes: Mapping[str, int] | None = None,
    runs: int | None = None,
) -> Mesh:
    """The mesh of `MESH_AXES` over ``devices`` (default: every device of every process), of the
    ``sizes`` of ``config.mesh`` (default: every device on ``data``), for a single run or a
    program of ``runs`` stacked runs (`mesh_shape`: the first of the devices it needs)."""
    devices = list(devices) if devices is not None else jax.devices()
    shape = mesh_shape(sizes if sizes is not None else {"data": -1}, len(devices), runs)
    devices = devices[: math.prod(shape)]
    return jax.make_mesh(
        shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices
    )


def cpu_device_per_core() -> None:
    """Gives JAX's CPU backend one device per core this process may use, unless
    ``JAX_NUM_CPU_DEVICES`` or ``XLA_FLAGS``' ``--xla_force_host_platform_device_count`` says how
    many: a vmapped sweep's trials then run side by side on the cores (one CPU device computes a
    program on about one core). Call before any JAX computation; other platforms are unchanged."""
    if "JAX_NUM_CPU_DEVICES" in os.environ or "host_platform_device_count" in os.environ.get(
        "XLA_FLAGS", ""
    ):
        return
    jax.config.update("jax_num_cpu_devices", len(os.sched_getaffinity(0)))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh, leading: int = 0) -> NamedSharding:
    """The example axis (after ``leading`` unsplit axes) split over `BATCH_AXES`."""
    return NamedSharding(mesh, PartitionSpec(*([None] * leading), BATCH_AXES))


def stacked_batch_sharded(mesh: Mesh) -> NamedSharding:
    """Batches of runs stacked on a leading axis, ``(runs, steps, examples, ...)``: the runs split
    over the ``trial`` axis, as their stacked state is, and each run's examples over
    `BATCH_AXES`."""
    return NamedSharding(mesh, PartitionSpec(TRIAL_AXIS, None, BATCH_AXES))


def batch_devices(mesh: Mesh) -> int:
    """How many parts a batch is split into: the product of the `BATCH_AXES` sizes."""
    return math.prod(mesh.shape[axis] for axis in BATCH_AXES)


def check_batch_size(batch_size: int, mesh: Mesh, grad_accum_steps: int = 1) -> None:
    """`UserError` unless each micro-batch (the whole batch without accumulation) splits evenly
    over the mesh's batch axes."""
    parts = batch_devices(mesh)
    if grad_accum_steps > 1 and (batch_size // grad_accum_steps) % parts:
        raise UserError(
            f"a micro-batch of config.train.batch_size={batch_size} / "
            f"config.train.grad_accum_steps={grad_accum_steps} = "
            f"{batch_size // grad_accum_steps} examples does not split into the {parts} parts "
            f"the mesh splits a batch into; use a batch size that does"
        )
    if batch_size % parts:
        shown = " x ".join(f"{axis}={mesh.shape[axis]}" for axis in BATCH_AXES)
        raise UserError(
            f"config.train.batch_size={batch_size} is not divisible by the {parts} parts the "
            f"mesh splits a batch into ({shown}); use a multiple of {parts}"
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
