"""Ray Tune's scheduler over jaxlab runs: each Tune trial is a run trained in its own workdir and
reported at every evaluation; the runs Tune's ASHA stops keep their records where it stopped,
and the sweep's table records them stopped."""

import pytest

from jaxlab.rundir.metrics_log import read_metrics
from jaxlab.sweep import ray_backend

FIXED = {"train.steps": 40, "train.log_every": 10, "train.eval_every": 10,
         "train.checkpoint_every": 10}  # fmt: skip
RATES = [1e-4, 3e-4, 1e-3, 1e-2, 1e-1, 3e-1]


@pytest.mark.slow  # 60-90 s: a local Ray cluster, a worker process per evaluation of each run
def test_tunes_asha_stops_runs_at_their_evaluations_and_the_table_records_them(tmp_path):
    pytest.importorskip("ray.tune")
    from ray import tune

    from jaxlab.sweep.ray_tune import TuneSweep

    ray = ray_backend.require_ray(local=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        sweep = TuneSweep("mlp_moons:smoke", tmp_path / "sweep", FIXED)
        results = tune.Tuner(
            sweep.trainable,
            param_space={"optimizer.learning_rate": tune.grid_search(RATES)},
            tune_config=tune.TuneConfig(
                metric="eval/loss", mode="min", max_concurrent_trials=2,
                scheduler=tune.schedulers.ASHAScheduler(
                    time_attr="step", max_t=40, grace_period=10, reduction_factor=2
                ),
            ),
            run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="asha"),
        ).fit()  # fmt: skip
    finally:
        ray.shutdown()
    rows = sweep.record(results)
    assert len(rows) == len(RATES)
    by_rate = {row["optimizer.learning_rate"]: row for row in rows}
    for result in results:  # Tune's last report of each trial is the run's last record
        row = by_rate[result.config["optimizer.learning_rate"]]
        records = read_metrics(tmp_path / "sweep" / row["run"])
        assert result.metrics["step"] == records[-1]["step"] == row["step"]
        assert result.metrics["eval/loss"] == pytest.approx(records[-1]["eval/loss"])
        if row["step"] == 40:
            assert row["status"] == "done"
        else:
            assert row["status"] == "stopped"
            assert row["error"] == f"stopped by Ray Tune at step {row['step']}"
    statuses = [row["status"] for row in rows]
    assert "stopped" in statuses and "done" in statuses
    assert sweep.record(results) == rows  # recorded again: the same table
