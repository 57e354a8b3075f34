"""Data parallelism as SPMD ``jit`` over a one-axis device mesh (the successor of ``pmap``).

The global batch is sharded along the mesh's ``data`` axis; parameters and optimizer state are
replicated. XLA inserts the gradient all-reduce. The same code runs on one CPU, simulated CPU
devices, a GPU, a TPU slice, and several hosts.
"""
from typing import Sequence

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxlab.errors import UserError

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh with one ``data`` axis over ``devices`` (default: every device of every process)."""
    devices = list(devices) if devices is not None else jax.devices()
    return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,),
                         devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (example) axis split over the ``data`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    devices = mesh.devices.size
    if batch_size % devices:
        raise UserError(f"config.train.batch_size={batch_size} is not divisible by the number of "
                        f"devices ({devices}); use a multiple of {devices}")
