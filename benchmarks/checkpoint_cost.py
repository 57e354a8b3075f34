"""The wall time checkpoints cost at the default interval.

Trains the default minimal_transformer preset (3000 steps) with ``checkpoint_every=1000`` (saves at
1000, 2000, 3000) and with ``checkpoint_every=3000`` (the final save only), alternating, and prints
the wall times, their difference per intermediate checkpoint, and the time the loop spent blocked
in `Checkpoints.save` (the asynchronous write itself runs in the background).

    python benchmarks/checkpoint_cost.py --repeats 2 --out /tmp/checkpoint_cost
"""

import argparse
import json
import pathlib
import shutil
import statistics
import time

import jaxlab
from jaxlab.rundir import checkpoint


def timed_saves():
    """Wraps `Checkpoints.save` to sum the time callers spend blocked in it."""
    blocked = []
    save = checkpoint.Checkpoints.save

    def timed(self, step, state):
        start = time.perf_counter()
        save(self, step, state)
        blocked.append(time.perf_counter() - start)

    checkpoint.Checkpoints.save = timed
    return blocked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("/tmp/checkpoint_cost"))
    args = parser.parse_args()
    blocked = timed_saves()
    walls = {1000: [], 3000: []}
    for repeat in range(args.repeats):
        for every in (1000, 3000):
            workdir = args.out / f"every{every}_{repeat}"
            shutil.rmtree(workdir, ignore_errors=True)
            config = jaxlab.load_config("minimal_transformer", {"train.checkpoint_every": every})
            del blocked[:]
            start = time.perf_counter()
            final = jaxlab.train(config, workdir, quiet=True)
            walls[every].append(time.perf_counter() - start)
            print(
                json.dumps(
                    {
                        "checkpoint_every": every,
                        "wall_s": round(walls[every][-1], 2),
                        "saves": len(blocked),
                        "blocked_in_save_s": round(sum(blocked), 3),
                        "eval/accuracy": final["eval/accuracy"],
                    }
                ),
                flush=True,
            )
    extra = statistics.mean(walls[1000]) - statistics.mean(walls[3000])
    print(
        json.dumps(
            {
                "extra_wall_s_for_2_intermediate_checkpoints": round(extra, 2),
                "per_checkpoint_s": round(extra / 2, 2),
                "fraction_of_run": round(extra / statistics.mean(walls[3000]), 4),
            }
        )
    )


if __name__ == "__main__":
    main()
