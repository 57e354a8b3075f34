"""Where each leaf of a run's train state lives on the mesh (`state_specs`): a leaf its model
names the axes of is split by the rules of ``config.sharding``, any other by the automatic FSDP
rule (`automatic`); optimizer state as its parameter. The rules: docs/sharding.md.
"""

import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
from flax.core import meta
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxlab.errors import UserError

DEFAULT_RULES = {  # logical axis -> mesh axis ("" leaves it whole)
    "embed": "fsdp",
    "mlp": "tensor",
    "heads": "tensor",
    "kv": "",
    "classes": "",
    "vocab": "tensor",
}
DEFAULT_FSDP_MIN_SIZE = 2**12  # elements: smaller unnamed leaves stay replicated


def rules_of(sharding_config: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """``config.sharding``'s rules as Flax takes them: (logical name, mesh axis or None)."""
    return [
        (name, axis or None) for name, axis in sharding_config.items() if name != "fsdp_min_size"
    ]


def state_specs(abstract: Any, mesh: Mesh, sharding_config: Mapping[str, Any]) -> Any:
    """The `PartitionSpec` of every leaf of ``abstract`` (a state from `jax.eval_shape`, whose
    leaves may carry logical names); `UserError` for a dimension the mesh cannot split."""
    rules = rules_of(sharding_config)
    min_size = sharding_config.get("fsdp_min_size", DEFAULT_FSDP_MIN_SIZE)

    def spec(path, leaf) -> PartitionSpec:
        if not isinstance(leaf, nn.Partitioned):
            return automatic(getattr(leaf, "shape", ()), mesh, min_size)
        where = jax.tree_util.keystr(path, simple=True, separator="/")
        where = where[where.find("params/") :] if "params/" in where else where  # its parameter
        names = PartitionSpec(*leaf.names)
        axes: PartitionSpec | None = names
        if isinstance(leaf, nn.LogicallyPartitioned):
            try:
                axes = nn.logical_to_mesh_axes(tuple(leaf.names), rules)
            except ValueError as error:
                raise UserError(f"parameter {where}: {error}") from None
        shape = leaf.unbox().shape
        if axes is None or all(axis is None for axis in axes):  # the rules split none of it
            return automatic(shape, mesh, min_size)
        _check_divisible(where, shape, axes, mesh, names)
        return axes

    return jax.tree_util.tree_map_with_path(
        spec, abstract, is_leaf=lambda x: isinstance(x, nn.Partitioned)
    )


def shardings(specs: Any, mesh: Mesh) -> Any:
    """`NamedSharding` of each `PartitionSpec` of ``specs`` on ``mesh``."""
    return jax.tree.map(
        lambda spec: NamedSharding(mesh, spec),
        specs,
        is_leaf=lambda x: isinstance(x, PartitionSpec),
    )


def automatic(shape: tuple[int, ...], mesh: Mesh, min_size: int) -> PartitionSpec:
    """The automatic FSDP rule: the largest dimension divisible by the ``fsdp`` axis split over
    it, for a leaf of at least ``min_size`` elements; otherwise replicated."""
    fsdp = mesh.shape["fsdp"]
    if fsdp == 1 or math.prod(shape) < min_size:
        return PartitionSpec()
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % fsdp == 0:
            return PartitionSpec(*(["fsdp" if d == dim else None for d in range(len(shape))]))
    return PartitionSpec()


def unbox(tree: Any) -> Any:
    """``tree`` with the logical names taken off its leaves (what the state holds)."""
    return meta.unbox(tree)


def _check_divisible(
    where: str, shape: tuple[int, ...], axes: PartitionSpec, mesh: Mesh, names: PartitionSpec
) -> None:
    for dim, axis in enumerate(axes):
        if axis is None:
            continue
        group = (axis,) if isinstance(axis, str) else tuple(axis)
        parts = math.prod(mesh.shape[a] for a in group)
        if shape[dim] % parts:
            name = names[dim]
            raise UserError(
                f"parameter {where} (shape {tuple(shape)}): its {name} dimension of size "
                f"{shape[dim]} cannot be split over {'x'.join(group)} ({parts} devices); "
                f"change config.mesh, or set config.sharding.{name}='' to keep it whole"
            )
