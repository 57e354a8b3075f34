"""Where a sweep's runs train one at a time each: local processes, or Ray tasks on a cluster.

Either way a run is a fresh Python process that trains one resolved config in its workdir
(`train_one`), its output going to ``RUN_DIR/run.log``. The process records its outcome in
``RUN_DIR/sweep_result.json``; a process that dies without recording one (killed, crashed) is
recorded as failed with its exit status and the last line of its log. A failed run never stops
the others.
"""
import concurrent.futures
import json
import os
import pathlib
import subprocess
import sys
import traceback
from typing import Sequence

from etils import epath

from jaxlab import paths
from jaxlab.config import to_json
from jaxlab.errors import UserError
from jaxlab.sweep import DONE, FAILED, PENDING, RESULT_FILE, Run, read_result, write_result

LOG_FILE = "run.log"
_WORKER = "import sys; from jaxlab.sweep_backends import train_one; sys.exit(train_one(sys.argv[1]))"


def train_one(run_dir: str) -> int:
    """The body of a run's process: trains the config JSON on stdin in ``run_dir``."""
    import ml_collections

    from jaxlab.train import train

    try:
        config = ml_collections.ConfigDict(json.loads(sys.stdin.read()))
        final = train(config, run_dir)  # its summary line goes to run.log
    except Exception as error:  # recorded, so that the sweep goes on with the other runs
        traceback.print_exc()
        write_result(paths.path(run_dir), FAILED,
                               error=f"{type(error).__name__}: {error}")
        return 1
    write_result(paths.path(run_dir), DONE, metrics=final)
    return 0


def run_process(config_json: str, run_dir: str, package_root: str,
                shares_accelerator: bool = False) -> str:
    """Trains one run in a child process; returns its status. ``package_root`` is put first on
    the child's ``PYTHONPATH`` so that it imports this same jaxlab; a child that
    ``shares_accelerator`` with others does not preallocate most of the GPU's memory."""
    run_dir_path = paths.path(run_dir)
    run_dir_path.mkdir(parents=True, exist_ok=True)
    (run_dir_path / RESULT_FILE).unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    if shares_accelerator:
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    with open(os.fspath(run_dir_path / LOG_FILE), "a") as log:
        code = subprocess.run([sys.executable, "-c", _WORKER, run_dir], input=config_json,
                              stdout=log, stderr=subprocess.STDOUT, text=True, env=env).returncode
    result = read_result(run_dir_path)
    if result["status"] == PENDING:  # the process died before recording its outcome
        lines = (run_dir_path / LOG_FILE).read_text().strip().splitlines()
        write_result(run_dir_path, FAILED,
                               error=f"exit status {code}: {lines[-1] if lines else ''}")
        return FAILED
    return result["status"]


def _package_root() -> str:
    return str(pathlib.Path(__file__).resolve().parent.parent)


def _announce(name: str, status: str, quiet: bool) -> None:
    if not quiet:
        print(f"jaxlab sweep: {name}: {status}", flush=True)


def run_in_processes(runs: Sequence[Run], workdir: epath.Path, parallel: int,
                     quiet: bool = True) -> None:
    """``parallel`` child processes at a time (threads here only wait for them)."""
    root = _package_root()
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {pool.submit(run_process, to_json(run.config), str(workdir / run.name), root,
                               parallel > 1): run.name for run in runs}
        for future in concurrent.futures.as_completed(futures):
            _announce(futures[future], future.result(), quiet)


def require_ray():
    """The ``ray`` module, or a `UserError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError("--backend ray needs Ray: pip install 'jaxlab[ray]'") from None
    return ray


def run_on_ray(runs: Sequence[Run], workdir: epath.Path, parallel: int,
               address: str | None, quiet: bool = True) -> None:
    """Each run as a Ray task (one CPU) on the cluster at ``address`` (a new local one when
    None), at most ``parallel`` in flight. The workdir must be on a filesystem every node sees;
    this jaxlab package is shipped to the workers with the job (``py_modules``)."""
    ray = require_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, runtime_env={"py_modules": [str(pathlib.Path(__file__).parent)]},
                 include_dashboard=False, log_to_driver=False)
    task = ray.remote(num_cpus=1)(_ray_task)
    try:
        pending, names = [], {}
        queue = [(run.name, to_json(run.config), str(workdir / run.name))
                 for run in runs]
        while queue or pending:
            while queue and len(pending) < parallel:
                name, config_json, run_dir = queue.pop(0)
                ref = task.remote(config_json, run_dir)
                pending.append(ref)
                names[ref] = name
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                _announce(names[ref], ray.get(ref), quiet)
    finally:
        if started_here:
            ray.shutdown()


def _ray_task(config_json: str, run_dir: str) -> str:
    import jaxlab  # from the job's py_modules on the worker
    return run_process(config_json, run_dir, str(pathlib.Path(jaxlab.__file__).parent.parent))
