"""A worker process of a process sweep: ``python -m jaxlab.sweep.worker RUN_DIR PARENT_PID
[UNTIL]``, the run's validated config as JSON on standard input.

`main` trains the run and records its outcome in the run's ``RESULT_FILE``; with ``UNTIL`` (a
scheduler's rung before the last step) it stops there and records only a failure.
"""

import ctypes
import json
import os
import signal
import sys
import traceback

import ml_collections

from jaxlab import errors, paths
from jaxlab.errors import Interrupted, InUse, UserError
from jaxlab.loop.train import summary_line, train_validated
from jaxlab.rundir.preemption import StopSignals
from jaxlab.rundir.run import DONE, FAILED
from jaxlab.sweep.results import write_result

PR_SET_PDEATHSIG = 1  # prctl(2)


def die_with_parent(parent: int) -> None:
    """SIGTERM to this process when ``parent`` dies (Linux); at once if it already has."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def main(run_dir: str, parent: int, until: int | None = None) -> int:
    with StopSignals():
        die_with_parent(parent)
        return _train(paths.path(run_dir, "workdir"), until)


def _train(workdir, until: int | None) -> int:
    config = ml_collections.ConfigDict(json.loads(sys.stdin.read()))
    try:
        outcome = train_validated(config, workdir, quiet=True, record_nonfinite=True, until=until)
    except Interrupted as stopped:
        print(f"jaxlab: {stopped}", file=sys.stderr)
        return errors.INTERRUPTED
    except InUse as error:
        print(f"jaxlab: error: {error}", file=sys.stderr)
        return errors.USAGE_ERROR  # held by another live process: nothing recorded
    except Exception as error:  # recorded, so that the sweep goes on with the other runs
        if not isinstance(error, UserError):
            traceback.print_exc()
        write_result(workdir, FAILED, error=f"{type(error).__name__}: {error}")
        return 1
    if until is not None and until < config.train.steps and outcome.status == DONE:
        return 0  # at the rung: the scheduler decides
    write_result(workdir, outcome.status, outcome.metrics, outcome.error)
    if outcome.status == DONE:
        print(summary_line(config.experiment, outcome.metrics), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), *(int(a) for a in sys.argv[3:4])))
