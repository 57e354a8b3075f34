"""A sweep's runs as Ray tasks: each task trains one run in a worker process on its node
(`jaxlab.sweep.processes.run_one`), at most ``parallel`` in flight.

Without ``--address`` a local Ray cluster is started for the sweep, bound to 127.0.0.1: every
server of it listens on the loopback interface only. Ray offers no ``ray.init`` argument for that
(it turns a loopback ``_node_ip_address`` into the machine's external address); its setting
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read when ``ray`` is imported, makes it run as a
single-node instance on 127.0.0.1, and jaxlab sets it unless the environment already does (or
``ray`` was imported before). To use a cluster across machines, start it yourself (``ray start``)
and pass its address. The sweep's directory must be on a filesystem every node sees; this jaxlab
package is shipped to the workers with the job (``py_modules``). While runs train, a line per
change says how many are done, running and queued.
"""
import os
import pathlib
from typing import Sequence

from etils import epath

from jaxlab.errors import UserError
from jaxlab.sweep import processes
from jaxlab.sweep.plan import Run

SINGLE_NODE_SETTING = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": a loopback-only instance


def require_ray(local: bool = False):
    """The ``ray`` module (an optional dependency), or a `UserError` saying how to install it;
    ``local``: set up for a loopback-only instance (before ``ray`` is first imported)."""
    if local:
        os.environ.setdefault(SINGLE_NODE_SETTING, "0")
    try:
        import ray
    except ImportError:
        raise UserError("--backend ray needs Ray: pip install 'jaxlab[ray]'") from None
    return ray


def run(runs: Sequence[Run], workdir: epath.Path, parallel: int, address: str | None, *,
        quiet: bool = True) -> None:
    """Trains ``runs`` as Ray tasks (one CPU each) on the cluster at ``address`` (a new local
    one, bound to 127.0.0.1, when None)."""
    ray = require_ray(local=address is None)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"py_modules": [str(pathlib.Path(__file__).parent.parent)]})
    task = ray.remote(num_cpus=1)(_train_one)
    try:
        queue, pending, names, done = list(runs), [], {}, 0
        while queue or pending:
            while queue and len(pending) < parallel:
                run_ = queue.pop(0)
                ref = task.remote(run_, os.fspath(workdir))
                pending.append(ref)
                names[ref] = run_.name
            _progress(done, len(pending), len(queue), quiet)
            finished, pending = ray.wait(pending, num_returns=1)
            for ref in finished:
                done += 1
                if not quiet:
                    print(f"jaxlab sweep: {names[ref]}: {ray.get(ref)}", flush=True)
    finally:
        if started_here:
            ray.shutdown()


def _progress(done: int, running: int, queued: int, quiet: bool) -> None:
    if not quiet:
        print(f"jaxlab sweep (ray): {done} finished, {running} running, {queued} queued",
              flush=True)


def _train_one(run_: Run, workdir: str) -> str:
    """A Ray task: the worker process imports the jaxlab this task came with (``py_modules``)."""
    return processes.run_one(run_, epath.Path(workdir),
                             python_path=str(pathlib.Path(__file__).resolve().parents[2]))
