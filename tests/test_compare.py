"""`jaxlab compare` (runs that are not one sweep side by side) and the statistics `jaxlab report`
shows for a sweep: mean ± sample std over seeds in its table and its curves."""

import pytest

import jaxlab
from jaxlab import plots
from jaxlab.sweep.results import seed_means_table
from tests.conftest import without_progress
from tests.test_cli import jaxlab_cli

RUN = {"train.steps": 20, "train.log_every": 10, "train.eval_every": 10}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    for name, rate in (("slow", 0.001), ("fast", 0.01)):
        config = jaxlab.load_config("mlp_moons:smoke", {**RUN, "optimizer.learning_rate": rate})
        jaxlab.train(config, root / name, quiet=True)
    return root


def test_compare_tables_the_differing_keys_and_final_metrics_and_overlays_curves(two_runs):
    output = two_runs / "both.png"
    result = jaxlab_cli("compare", str(two_runs / "slow"), str(two_runs / "fast"),
                        "--output", str(output))  # fmt: skip
    assert result.returncode == 0, result.stderr
    header, _, slow, fast, *_ = result.stdout.splitlines()
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[:3] == ["run", "optimizer.learning_rate", "step"]  # only the key that differs
    assert "eval/accuracy" in columns and "train/loss" in columns
    assert slow.startswith("| slow | 0.001 | 20 |") and fast.startswith("| fast | 0.01 | 20 |")
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_refuses_one_run_or_a_directory_that_is_no_run(two_runs, tmp_path):
    one = jaxlab_cli("compare", str(two_runs / "slow"), "--output", str(tmp_path / "x.png"))
    assert one.returncode == 2
    assert without_progress(one.stderr) == [
        f"jaxlab: error: compare needs two runs or more, found 1 in {two_runs / 'slow'}"
    ]
    other = jaxlab_cli("compare", str(two_runs / "slow"), str(tmp_path),
                       "--output", str(tmp_path / "x.png"))  # fmt: skip
    assert other.returncode == 2
    assert without_progress(other.stderr) == [
        f"jaxlab: error: {tmp_path} is neither a run (no config.json) nor a sweep (no sweep.json)"
    ]
    assert not (tmp_path / "x.png").exists()


def test_the_sweep_statistics_are_the_mean_and_sample_std_over_seeds():
    rows = [
        {"run": f"r{i}", "lr": lr, "seed": seed, "status": "done", "eval/loss": loss}
        for i, (lr, seed, loss) in enumerate(
            [(0.1, 0, 1.0), (0.1, 1, 2.0), (0.1, 2, 3.0), (0.01, 0, 5.0), (0.01, 1, 7.0)]
        )
    ]
    table = seed_means_table(rows, ["lr", "seed"]).splitlines()
    assert table[0] == "mean ± sample std over seeds:"
    assert table[2:] == [
        "| lr | runs | eval/loss |",
        "|---|---|---|",
        "| 0.1 | 3 | 2 ± 1 |",
        "| 0.01 | 2 | 6 ± 1.4 |",
    ]
    assert seed_means_table(rows, ["lr"]) == ""  # no seeds swept: nothing to average
    mean, spread = plots.mean_and_spread([([1, 2, 3], [1.0, 2.0, 3.0]), ([1, 2], [3.0, 4.0])])
    assert mean == ([1, 2], [2.0, 3.0])  # the steps both runs logged
    assert spread == pytest.approx([2**0.5, 2**0.5])
