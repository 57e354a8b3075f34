"""What a run is before it trains (`jaxlab inspect`): its parameters (path, shape, dtype, count
and, on a mesh with more than a data axis, sharding), and from XLA's analyses of its compiled
one-step chunk the FLOPs per step, the memory per device and the compile time."""

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections

from jaxlab import parallel, tasks
from jaxlab.loop import compilation_cache, feed
from jaxlab.loop.program import Program


@dataclasses.dataclass(frozen=True)
class Parameter:
    path: str  # e.g. "block0/attention/query/kernel"
    shape: tuple[int, ...]
    dtype: str
    sharding: str  # the leaf's PartitionSpec over the mesh axes


@dataclasses.dataclass(frozen=True)
class Inspection:
    parameters: list[Parameter]
    mesh: dict[str, int]  # axis -> size
    platform: str
    flops_per_step: float | None  # per device (the SPMD program's); None when not given
    memory: dict[str, int]  # per device: arguments, outputs, temporaries (bytes)
    compile_s: float

    @property
    def total(self) -> int:
        return sum(math.prod(p.shape) for p in self.parameters)


def inspect(
    config: ml_collections.ConfigDict, devices: Sequence[jax.Device] | None = None
) -> Inspection:
    """Builds the run of a validated ``config`` without training it: the state stays abstract,
    the one-step chunk is compiled (on the device path with the training set placed)."""
    mesh = parallel.make_mesh(devices, config.mesh)
    compilation_cache.refuse_sharded_cpu(mesh)
    parallel.check_batch_size(config.train.batch_size, mesh, config.train.grad_accum_steps)
    task = tasks.build(config)
    feed.check(config, task)
    program = Program(config, task, mesh)
    state = program.abstract_state()
    data = feed.make([config], task.data, mesh).chunk(0, 1)
    started = time.perf_counter()
    compiled = program.compiled(1).lower(state, data).compile()
    compile_s = time.perf_counter() - started
    memory = compiled.memory_analysis()
    leaves = jax.tree_util.tree_flatten_with_path(state["params"])[0]
    return Inspection(
        parameters=[
            Parameter(
                jax.tree_util.keystr(path, simple=True, separator="/"),
                tuple(leaf.shape),
                str(leaf.dtype),
                str(tuple(leaf.sharding.spec)),
            )
            for path, leaf in leaves
        ],
        mesh={axis: mesh.shape[axis] for axis in parallel.RUN_AXES},
        platform=mesh.devices.flat[0].platform,
        flops_per_step=_flops(compiled),
        memory={
            "arguments": memory.argument_size_in_bytes,
            "outputs": memory.output_size_in_bytes,
            "temporaries": memory.temp_size_in_bytes,
        },
        compile_s=compile_s,
    )


def _flops(compiled: Any) -> float | None:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # older jax: one dict per program
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return float(flops) if flops is not None and flops >= 0 else None


def render(inspection: Inspection, title: str) -> str:
    """The table and summary lines `jaxlab inspect` prints."""
    sharded = any(size > 1 for axis, size in inspection.mesh.items() if axis != "data")
    header = ["parameter", "shape", "dtype", "count"] + (["sharding"] if sharded else [])
    rows = [
        [p.path, str(p.shape), p.dtype, f"{math.prod(p.shape):,}"]
        + ([p.sharding] if sharded else [])
        for p in inspection.parameters
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    aligned = [
        "  ".join(
            cell.rjust(w) if i == 3 else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths))
        )
        for r in [header, *rows]
    ]
    mesh = " ".join(f"{axis}={size}" for axis, size in inspection.mesh.items())
    devices = math.prod(inspection.mesh.values())
    memory = ", ".join(f"{name} {_mib(n)}" for name, n in inspection.memory.items())
    flops = inspection.flops_per_step
    flops_line = (
        f"FLOPs per step (XLA's cost analysis): {flops:.4g} per device, {flops * devices:.4g} "
        f"on the {devices} device(s)"
        if flops is not None
        else "FLOPs per step: not given by this backend's cost analysis"
    )
    return "\n".join(
        [
            f"{title}: mesh {mesh} ({devices} {inspection.platform} device(s))",
            "",
            *(line.rstrip() for line in aligned),
            "",
            f"total: {inspection.total:,} parameters",
            f"memory per device of one step (XLA's memory analysis): {memory}",
            flops_line,
            f"compile time of the one-step chunk: {inspection.compile_s:.2f} s",
        ]
    )


def _mib(size: int) -> str:
    return f"{size / 2**20:.2f} MiB"
