"""Faults a run survives: kill -9, SIGTERM, damaged checkpoints, NaN/Inf, a changed config."""

import functools
import importlib
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import jaxlab
from jaxlab import cli, tasks
from jaxlab.data import batch_indices
from jaxlab.errors import Interrupted, NonFiniteError, UserError
from jaxlab.loop import state
from jaxlab.loop.train import prepare
from jaxlab.rundir.checkpoint import Checkpoints, CheckpointWarning
from jaxlab.rundir.metrics_log import LogWarning
from tests.conftest import REPO, freeze, read_jsonl, without_progress

SMOKE = "minimal_transformer:smoke"
# In-process runs: 20 steps in chunks of 5, a checkpoint every 5 steps, all kept.
RUN = {"train.steps": 20, "train.checkpoint_every": 5, "train.keep_checkpoints": 10}
# Runs in a subprocess: many chunk boundaries and (asynchronous) checkpoint writes to land in.
SUBPROCESS_RUN = [
    "--config.train.steps=48",
    "--config.train.log_every=2",
    "--config.train.checkpoint_every=6",
    "--config.train.eval_every=24",
    "--config.train.keep_checkpoints=3",
]


ONE_DEVICE = jax.devices()[:1]  # in-process runs: the fault logic does not depend on the mesh
EIGHT_DEVICES = tuple(jax.devices())  # `jaxlab train` subprocesses: every (simulated) device


def config(**overrides):
    return jaxlab.load_config(SMOKE, {**RUN, **overrides})


def train(cfg, workdir, **kwargs):
    return jaxlab.train(cfg, workdir, quiet=True, devices=ONE_DEVICE, **kwargs)


@functools.cache
def state_template(devices):
    """A train state of the smoke preset's shapes (all that restoring needs), on ``devices``."""
    return prepare(jaxlab.load_config(SMOKE), devices).state


@functools.cache
def final_state(workdir, devices=tuple(ONE_DEVICE)):
    """(step, state) of the newest checkpoint; cached, so only pass finished workdirs."""
    with Checkpoints(pathlib.Path(workdir) / "checkpoints", keep=10) as checkpoints:
        step, restored = checkpoints.restore_latest(state_template(devices))
    return step, jax.device_get(restored)


def assert_same_run(workdir, reference, devices=tuple(ONE_DEVICE)):
    """Each step logged once with the same values, and bit-identical final train states."""
    assert read_jsonl(workdir / "metrics.jsonl") == read_jsonl(reference / "metrics.jsonl")
    (step, got), (ref_step, want) = final_state(workdir, devices), final_state(reference, devices)
    assert step == ref_step
    jax.tree.map(np.testing.assert_array_equal, got, want)


def snapshot(directory):
    """Every path under ``directory`` with its bytes (None for directories)."""
    return {
        p.relative_to(directory): None if p.is_dir() else p.read_bytes()
        for p in sorted(pathlib.Path(directory).rglob("*"))
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished in-process run: checkpoints 5, 10, 15, 20."""
    workdir = tmp_path_factory.mktemp("finished") / "run"
    train(config(), workdir)
    return workdir


def copy_of(workdir, tmp_path):
    return pathlib.Path(shutil.copytree(workdir, tmp_path / "copy"))


# --- damaged checkpoints ----------------------------------------------------------------------


def left_as_unfinished_write(step_dir):
    tmp = step_dir.with_name(f"{step_dir.name}.orbax-checkpoint-tmp-1795000000000")
    step_dir.rename(tmp)
    return tmp


def arrays_truncated(step_dir):
    for path in step_dir.rglob("*"):
        if path.is_file() and path.parent.name == "d":  # the OCDBT data files
            os.truncate(path, path.stat().st_size // 2)
    return step_dir


def commit_record_removed(step_dir):
    (step_dir / "_CHECKPOINT_METADATA").unlink()
    return step_dir


def tree_metadata_removed(step_dir):
    (step_dir / "default" / "_METADATA").unlink()
    return step_dir


@pytest.mark.parametrize(
    "damage_20, damage_15",
    [
        (left_as_unfinished_write, arrays_truncated),
        (commit_record_removed, tree_metadata_removed),
    ],
)
def test_damaged_checkpoints_are_skipped_with_a_warning(finished, tmp_path, damage_20, damage_15):
    workdir = copy_of(finished, tmp_path)
    damaged = [damage_20(workdir / "checkpoints" / "20"), damage_15(workdir / "checkpoints" / "15")]
    with pytest.warns(CheckpointWarning) as warned:
        final = train(config(), workdir)
    messages = [str(w.message) for w in warned]
    for path in damaged:
        assert any(m.startswith("ignoring") and f"{path}:" in m for m in messages), messages
    assert final["step"] == 20
    assert_same_run(workdir, finished)  # resumed from step 10, redid 11..20
    for path in damaged:
        if ".orbax-checkpoint-tmp" in path.name:  # an unfinished write is removed
            assert not path.exists()
        else:  # a damaged step is moved aside, so that it could be saved again
            assert path.with_name(path.name + ".unreadable").is_dir()


def test_no_readable_checkpoint_is_an_error_not_a_fresh_start(finished, tmp_path):
    workdir = copy_of(finished, tmp_path)
    for step_dir in (workdir / "checkpoints").iterdir():
        commit_record_removed(step_dir)
    before = snapshot(workdir)
    with (
        pytest.warns(CheckpointWarning),
        pytest.raises(UserError, match=f"no readable checkpoint in {workdir / 'checkpoints'}"),
    ):
        train(config(), workdir)
    after = snapshot(workdir)
    lock = pathlib.Path(".lock")  # rewritten with the pid of the process that held it
    assert {k: v for k, v in after.items() if k != lock} == {
        k: v for k, v in before.items() if k != lock
    }


def test_checkpoint_of_another_model_is_refused_not_taken_for_damage(finished, tmp_path):
    workdir = copy_of(finished, tmp_path)
    before = snapshot(workdir / "checkpoints")
    with pytest.raises(
        UserError,
        match=r"(?s)another structure.*"
        r"params/params/block0/attention/key/kernel: "
        r"\(16, 4, 4\) float32 in the checkpoint, \(8, 4, 2\) float32 now",
    ):
        with pytest.warns(UserWarning, match="model.width: 16 in the workdir, 8 now"):
            train(
                config(**{"model.width": 8, "model.mlp_dim": 16}), workdir, allow_config_change=True
            )
    assert snapshot(workdir / "checkpoints") == before
    assert (workdir / "config.json").read_bytes() == (finished / "config.json").read_bytes()


# --- bad input and the config guard -----------------------------------------------------------

RUN_ARGS = [f"--config.{k}={v}" for k, v in RUN.items()]
BAD_INPUT = [  # (arguments after `jaxlab train`, what the one error line says)
    (["nope", *RUN_ARGS], "unknown experiment 'nope'"),
    (["minimal_transformer:depth", *RUN_ARGS], "malformed preset item 'depth'"),
    (["minimal_transformer:colour=red", *RUN_ARGS], "unknown preset key 'colour'"),
    (["minimal_transformer:smoke,depth=two", *RUN_ARGS], "preset key 'depth' expects an int"),
    ([SMOKE, *RUN_ARGS, "--config.train.stepz=5"], "did you mean train.steps"),
    ([SMOKE, *RUN_ARGS, "--config.train.steps=many"], "config.train.steps expects an int"),
    ([SMOKE, *RUN_ARGS, "--config.optimizer.learning_rate=fast"], "expects a float"),
    ([SMOKE, *RUN_ARGS, "--config.train.skip_nonfinite_steps=maybe"], "expects a bool"),
    ([SMOKE, *RUN_ARGS, "--config.train.steps=0"], "config.train.steps must be positive"),
    ([SMOKE, *RUN_ARGS, "--config.train.steps=-20"], "config.train.steps must be positive"),
    ([SMOKE, *RUN_ARGS, "--config.train.batch_size=0"], "batch_size must be positive"),
    ([SMOKE, *RUN_ARGS, "--config.train.batch_size=-32"], "batch_size must be positive"),
    (
        [SMOKE, *RUN_ARGS, "--config.train.batch_size=12"],
        "not divisible by the 8 parts the mesh splits a batch into",
    ),
    ([SMOKE, *RUN_ARGS, "--steps=5"], "unrecognised argument '--steps=5'"),
    (
        [SMOKE, *RUN_ARGS, "--config.optimizer.learning_rate=nan"],
        "config.optimizer.learning_rate must be a finite number, got nan",
    ),
    (
        [SMOKE, *RUN_ARGS, "--config.optimizer.learning_rate=inf"],
        "config.optimizer.learning_rate must be a finite number, got inf",
    ),
    (
        [SMOKE, *RUN_ARGS, "--config.optimizer.learning_rate=-0.001"],
        "config.optimizer.learning_rate must be positive, got -0.001",
    ),
    (
        [SMOKE, *RUN_ARGS, "--config.optimizer.weight_decay=-1"],
        "config.optimizer.weight_decay must be zero or positive",
    ),
    (
        [SMOKE, *RUN_ARGS, f"--config.train.steps={2**70}"],
        f"config.train.steps={2**70} is past the step counter's range (int32, at most 2147483647)",
    ),
    ([SMOKE, *RUN_ARGS, "--config.seed=4294967296"], "config.seed must be in 0..4294967295"),
    ([SMOKE, *RUN_ARGS, "--config.model.dropout=1.5"], "config.model.dropout must be in [0, 1)"),
    (
        [
            "mlp_moons:smoke",
            *RUN_ARGS,
            "--config.train.log_every=5",
            "--config.model.hidden_sizes=(0,)",
        ],
        "config.model.hidden_sizes=(0,): every width must be a positive int",
    ),
    (["/etc/hostname", *RUN_ARGS], "/etc/hostname is not an experiment file"),
    ([os.path.relpath("/etc/passwd"), *RUN_ARGS], "etc/passwd is not an experiment file"),
]
REFUSED_WORKDIR = [  # only an existing workdir can refuse these
    (
        [SMOKE, *RUN_ARGS, "--config.optimizer.learning_rate=0.5"],
        "optimizer.learning_rate: 0.001 in the workdir, 0.5 now",
    ),
    (
        ["minimal_transformer:smoke,depth=2", *RUN_ARGS],
        "experiment: 'minimal_transformer:smoke' in the workdir, "
        "'minimal_transformer:smoke,depth=2'",
    ),
]


@pytest.mark.parametrize("args, message", BAD_INPUT + REFUSED_WORKDIR)
def test_bad_input_exits_2_and_leaves_an_existing_workdir_unchanged(
    finished, args, message, capsys
):
    before = snapshot(finished)
    assert cli.main(["train", *args, "--workdir", str(finished)]) == cli.USAGE_ERROR
    error = capsys.readouterr().err
    assert error.startswith("jaxlab: error: ") and message in error
    assert snapshot(finished) == before


@pytest.mark.parametrize("args, message", BAD_INPUT)
def test_bad_input_exits_2_and_creates_no_workdir(tmp_path, args, message, capsys):
    workdir = tmp_path / "new"
    assert cli.main(["train", *args, "--workdir", str(workdir)]) == cli.USAGE_ERROR
    assert message in capsys.readouterr().err
    assert not workdir.exists()


BROKEN_EXPERIMENTS = {  # file -> (its text, what the one error line says)
    "syntax_error": (
        "def get_config(arg)\n    pass\n",
        "syntax_error.py fails to load: SyntaxError: ",
    ),
    "raises": ("raise RuntimeError('boom')\n", "raises.py fails to load: RuntimeError: boom"),
    "returns_dict": (
        "def get_config(arg):\n    return {}\n",
        "returned a dict, expected an ml_collections.ConfigDict",
    ),
    "returns_none": (
        "def get_config(arg):\n    pass\n",
        "returned a NoneType, expected an ml_collections.ConfigDict",
    ),
    "get_config_raises": ("def get_config(arg):\n    return {}['x']\n", "get_config('') of "),
    "exits": ("import sys\nsys.exit(0)\n", "exits.py calls sys.exit(0) when loaded"),
}


@pytest.mark.parametrize("name", sorted(BROKEN_EXPERIMENTS))
def test_a_broken_experiment_file_is_one_line_and_writes_nothing(tmp_path, name, capsys):
    text, message = BROKEN_EXPERIMENTS[name]
    (tmp_path / f"{name}.py").write_text(text)
    workdir = tmp_path / "run"
    assert (
        cli.main(["train", str(tmp_path / f"{name}.py"), "--workdir", str(workdir)])
        == cli.USAGE_ERROR
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxlab: error: ") and message in lines[0]
    assert not workdir.exists()


def test_jaxlab_list_names_the_broken_experiment_files_and_lists_the_others(tmp_path, capsys):
    for name, (text, _) in BROKEN_EXPERIMENTS.items():
        (tmp_path / f"{name}.py").write_text(text)
    shutil.copy(REPO / "experiments" / "mlp_moons.py", tmp_path / "my_moons.py")
    assert cli.main(["list", "--experiments-dir", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert re.search(r"^my_moons +A 2->64->64->2 MLP", listed, re.M)
    assert re.search(r"^minimal_transformer +ViT-style", listed, re.M)
    sources = re.findall(r"^ +source: (.*)$", listed, re.M)  # where each loadable one lives
    assert str(tmp_path / "my_moons.py") in sources and "built-in" in sources
    for name in ("syntax_error", "raises", "exits"):  # the ones whose import fails
        assert re.search(
            rf"^{name} +\(cannot be loaded\) experiment file .*{name}.py "
            rf"(fails to load|calls sys.exit)",
            listed,
            re.M,
        ), listed


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda w: (w / "config.json").write_text(""), "config.json is not readable JSON"),
        (lambda w: (w / "config.json").write_text("{not json"), "config.json is not readable JSON"),
        (
            lambda w: (w / "config.json").write_text("[1, 2]"),
            "holds a JSON list, not a jaxlab config",
        ),
        (
            lambda w: (shutil.rmtree(w / "checkpoints"), (w / "checkpoints").write_text("x")),
            "checkpoints is a file, where the run keeps its checkpoint directory",
        ),
    ],
)
def test_a_damaged_workdir_is_one_line_and_left_as_it_is(
    finished, tmp_path, damage, message, capsys
):
    workdir = copy_of(finished, tmp_path)
    damage(workdir)
    before = snapshot(workdir)
    assert cli.main(["train", SMOKE, *RUN_ARGS, "--workdir", str(workdir)]) == cli.USAGE_ERROR
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert snapshot(workdir) == before


def test_a_workdir_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "run").write_text("notes")
    assert cli.main(["train", SMOKE, *RUN_ARGS, "--workdir", str(tmp_path / "run")]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert (tmp_path / "run").read_text() == "notes"


def test_allow_config_change_resumes_with_the_new_config(finished, tmp_path):
    workdir = copy_of(finished, tmp_path)
    with pytest.warns(UserWarning, match="train.steps: 20 in the workdir, 30 now"):
        final = train(config(**{"train.steps": 30}), workdir, allow_config_change=True)
    assert final["step"] == 30
    records = read_jsonl(workdir / "metrics.jsonl")
    assert records[:4] == read_jsonl(finished / "metrics.jsonl")  # steps 5..20 kept, not redone
    assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30]
    assert '"steps": 30' in (workdir / "config.json").read_text()


# --- NaN / Inf --------------------------------------------------------------------------------


def steps_with_each_example(cfg, num_train):
    """{example: the steps (1-based) of ``cfg``'s run whose batch holds it}."""
    root = jax.random.split(jax.random.PRNGKey(cfg.seed))[1]
    data_key = jax.random.fold_in(root, state.DATA_STREAM)
    steps = {}
    for step in range(cfg.train.steps):
        for example in np.asarray(batch_indices(data_key, step, cfg.train.batch_size, num_train)):
            steps.setdefault(int(example), []).append(step + 1)
    return steps


POISONED_TASK = '''"""Classification with a NaN pixel in training example config.poison.example."""
import dataclasses

from jaxlab.tasks import classification


def make_task(config):
    task = classification.make_task(config)
    x = task.data.train["x"].copy()
    x[config.poison.example, 0, 0] = float("nan")
    train = dict(task.data.train, x=x)
    return dataclasses.replace(task, data=dataclasses.replace(task.data, train=train))
'''


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory):
    """(config maker, steps): configs whose task (a user file) gives one training example, first
    drawn at step 13, a NaN pixel; the steps that draw that example."""
    num_train = tasks.build(config()).data.num_train
    example, steps = next(
        (e, s)
        for e, s in sorted(steps_with_each_example(config(), num_train).items())
        if s[0] == 13
    )
    task_file = tmp_path_factory.mktemp("user_code") / "poisoned_task.py"
    task_file.write_text(POISONED_TASK)

    def poisoned_config(**overrides):
        cfg = config(**overrides)
        cfg.task = f"{task_file}:make_task"
        cfg.poison = {"example": example}
        return cfg

    return poisoned_config, steps


def test_nonfinite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(poisoned, tmp_path):
    poisoned_config, steps = poisoned
    bad_step = steps[0]
    with pytest.raises(
        NonFiniteError,
        match=f"non-finite train/loss=nan.* at step {bad_step};"
        f".*checkpoints up to step 10 are untouched",
    ) as error:
        train(poisoned_config(), tmp_path)
    assert error.value.step == bad_step and np.isnan(error.value.metrics["train/loss"])
    # The chunk of steps 11..15 holding the bad step was neither logged nor saved.
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["10", "5"]
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [5, 10]


@pytest.mark.parametrize(
    "raised, status",
    [
        (NonFiniteError("non-finite train/loss=nan at step 3", step=3, metrics={}), cli.NONFINITE),
        (Interrupted("stopped by SIGTERM at step 4", step=4, reason="SIGTERM"), cli.INTERRUPTED),
    ],
)
def test_cli_exit_status_of_a_stopped_run(monkeypatch, tmp_path, capsys, raised, status):
    def stopped_train(*args, **kwargs):
        raise raised

    monkeypatch.setattr(
        importlib.import_module("jaxlab.loop.train"), "train_validated", stopped_train
    )
    assert cli.main(["train", SMOKE, "--workdir", str(tmp_path)]) == status
    assert capsys.readouterr().err.strip().endswith(str(raised))


def test_skip_nonfinite_steps_skips_and_counts_them(poisoned, tmp_path):
    poisoned_config, steps = poisoned
    final = train(poisoned_config(**{"train.skip_nonfinite_steps": True}), tmp_path)
    assert final["step"] == 20 and np.isfinite(final["train/loss"])
    records = read_jsonl(tmp_path / "metrics.jsonl")
    skipped = {r["step"]: r["train/skipped_steps"] for r in records}
    assert skipped == {end: sum(end - 5 < s <= end for s in steps) for end in (5, 10, 15, 20)}
    assert sum(skipped.values()) >= 1
    _, restored = final_state(tmp_path)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(restored["params"]))


# --- kill -9 and SIGTERM, on a real `jaxlab train` process ------------------------------------


def launch(workdir, compile_cache, extra=()):
    """Starts `jaxlab train` (sharing a persistent compilation cache) with the arguments ``extra``
    added; stderr to WORKDIR.stderr."""
    env = dict(
        os.environ,
        JAX_COMPILATION_CACHE_DIR=str(compile_cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    with open(workdir.with_suffix(".stderr"), "w") as stderr:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jaxlab.cli",
                "train",
                SMOKE,
                "--workdir",
                str(workdir),
                *SUBPROCESS_RUN,
                *extra,
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def finish(process, workdir, timeout=600):
    """Waits for the process; returns (exit status, its stderr)."""
    process.wait(timeout=timeout)
    return process.returncode, workdir.with_suffix(".stderr").read_text()


def logged_step(workdir):
    records = read_jsonl_prefix(workdir / "metrics.jsonl")
    return records[-1]["step"] if records else 0


def read_jsonl_prefix(path):
    """The complete lines of a file another process is appending to."""
    from jaxlab.rundir.metrics_log import read_metrics

    return read_metrics(path.parent, warn=False) if path.exists() else []


def wait_for(condition, process, timeout=240):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended early with status {process.returncode}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def subprocess_reference(tmp_path_factory):
    """An uninterrupted `jaxlab train` subprocess run, and the compile cache it filled."""
    base = tmp_path_factory.mktemp("subprocess")
    process = launch(base / "reference", base / "compile_cache")
    status, err = finish(process, base / "reference")
    assert status == 0, err
    return base / "reference", base / "compile_cache"


def test_kill_9_at_random_points_resumes_exactly(subprocess_reference, tmp_path):
    reference, compile_cache = subprocess_reference
    workdir, rng = tmp_path / "run", random.Random(8)
    checkpoint_dir = workdir / "checkpoints"
    for kill_point in range(2):
        unfinished_before = set(checkpoint_dir.glob("*.orbax-checkpoint-tmp*"))
        logged_before = logged_step(workdir)  # lines past the checkpoint are cut on resume
        process = launch(workdir, compile_cache)
        if kill_point == 1:  # as soon as an asynchronous checkpoint write is under way
            wait_for(
                lambda: set(checkpoint_dir.glob("*.orbax-checkpoint-tmp*")) - unfinished_before,
                process,
            )
        else:  # after a random chunk, plus a random part of the next one
            target = min(rng.randrange(logged_before + 2, logged_before + 12, 2), 38)
            wait_for(lambda: logged_step(workdir) >= target, process)
            time.sleep(rng.uniform(0, 0.05))
        process.kill()
        assert finish(process, workdir)[0] == -signal.SIGKILL
    assert (workdir / ".lock").exists()  # left by the killed process; it must not block
    status, err = finish(launch(workdir, compile_cache), workdir)
    assert status == 0, err
    assert_same_run(workdir, reference, EIGHT_DEVICES)


def test_sigterm_commits_a_checkpoint_and_exits_75_while_a_second_launch_is_refused(
    subprocess_reference, tmp_path
):
    _, compile_cache = subprocess_reference
    workdir = tmp_path / "run"
    process = launch(workdir, compile_cache)
    wait_for(lambda: logged_step(workdir) >= 10, process)
    freeze(process)  # frozen while it holds the workdir
    try:
        with pytest.raises(
            UserError,
            match=re.escape(f"is in use by a running jaxlab process (pid {process.pid} on"),
        ):
            jaxlab.train(
                jaxlab.load_config(SMOKE, cli._split_overrides(SUBPROCESS_RUN)),
                workdir,
                quiet=True,
                devices=ONE_DEVICE,
            )
    finally:
        process.send_signal(signal.SIGCONT)
    process.send_signal(signal.SIGTERM)
    status, err = finish(process, workdir)
    assert status == cli.INTERRUPTED, err
    stopped_at = logged_step(workdir)
    assert stopped_at < 48
    assert f"jaxlab: stopped by SIGTERM at step {stopped_at}: its checkpoint is committed" in err
    with Checkpoints(workdir / "checkpoints", keep=10) as checkpoints:
        assert checkpoints.restore_latest(state_template(EIGHT_DEVICES))[0] == stopped_at


# --- a damaged metrics.jsonl, a full disk -------------------------------------------------------


def test_unreadable_metric_lines_are_dropped_with_a_warning_by_report_and_resume(
    finished, tmp_path, capsys
):
    workdir = copy_of(finished, tmp_path)
    lines = (workdir / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines[1] = "\0" * (len(lines[1]) - 1) + "\n"  # what a power loss can leave
    (workdir / "metrics.jsonl").write_text("".join(lines))
    with pytest.warns(LogWarning, match=r"left out 1 unreadable line\(s\) \(line 2\)"):
        assert cli.main(["report", str(workdir)]) == 0
    assert "| eval/accuracy | 20 |" in capsys.readouterr().out
    with pytest.warns(LogWarning, match=r"left out 1 unreadable line\(s\) \(line 2\)"):
        final = train(config(), workdir)
    assert final == train(config(), finished)  # both had finished: no wall time to report
    assert [r["step"] for r in read_jsonl(workdir / "metrics.jsonl")] == [5, 15, 20]


def test_a_torn_last_line_is_recomputed_from_the_checkpoint_the_log_covers(finished, tmp_path):
    workdir = copy_of(finished, tmp_path)
    text = (workdir / "metrics.jsonl").read_text()
    (workdir / "metrics.jsonl").write_text(text[:-40])  # the record of step 20 cut short
    with (
        pytest.warns(
            CheckpointWarning,
            match=r"moved the checkpoint .*/20 \(newer than the "
            r"last step metrics.jsonl records \(15\)\)",
        ),
        pytest.warns(LogWarning, match=r"left out 1 unreadable line\(s\) \(line 4\)"),
    ):
        final = train(config(), workdir)
    assert_same_run(workdir, finished)  # steps 16..20 recomputed, each step logged once
    assert final["step"] == 20
    assert final["eval/loss"] == read_jsonl(finished / "metrics.jsonl")[-1]["eval/loss"]
    assert (workdir / "checkpoints" / "20.ahead-of-log").is_dir()


def test_records_no_checkpoint_can_recompute_are_reported_lost_and_the_end_evaluated(tmp_path):
    one_kept = config(**{"train.keep_checkpoints": 1})
    train(one_kept, tmp_path)  # only checkpoint 20 is left
    want = read_jsonl(tmp_path / "metrics.jsonl")[-1]
    text = (tmp_path / "metrics.jsonl").read_text()
    (tmp_path / "metrics.jsonl").write_text(text[:-40])
    with pytest.warns(LogWarning) as warned:
        final = train(one_kept, tmp_path)
    messages = [str(w.message) for w in warned]
    assert any("left out 1 unreadable line(s) (line 4)" in m for m in messages), messages
    assert any(
        re.search("records no step after 15, .* the records up to step 20 are lost", m)
        for m in messages
    ), messages
    last = read_jsonl(tmp_path / "metrics.jsonl")[-1]
    assert last == {
        "step": 20,
        "eval/accuracy": want["eval/accuracy"],
        "eval/loss": want["eval/loss"],
    }  # the end evaluated again
    assert final["step"] == 20 and final["eval/loss"] == want["eval/loss"]


@pytest.fixture
def small_disk(tmp_path):
    """A 600 KiB tmpfs: room for the smoke run's first checkpoints, not for all four."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode:
        pytest.skip(f"a size-limited tmpfs cannot be mounted here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.mark.slow  # 20 s
def test_a_full_disk_is_one_line_keeps_the_older_checkpoints_and_resumes_exactly(
    small_disk, tmp_path
):
    args = [sys.executable, "-m", "jaxlab.cli", "train", SMOKE, *RUN_ARGS]
    reference = subprocess.run(
        [*args, "--workdir", str(tmp_path / "reference")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert reference.returncode == 0, reference.stderr
    workdir = small_disk / "run"
    full = subprocess.run(
        [*args, "--workdir", str(workdir)], capture_output=True, text=True, timeout=300
    )
    assert full.returncode == cli.STORAGE_ERROR, full.stderr
    (line,) = without_progress(full.stderr)
    intact = re.fullmatch(
        rf"jaxlab: error: writing a checkpoint in {workdir / 'checkpoints'} failed: no space "
        rf"left on device; the newest intact checkpoint is step (5|10|15): fix the storage and "
        rf"run the same command again to resume",
        line,
    )
    assert intact, line
    with Checkpoints(workdir / "checkpoints", keep=10) as checkpoints:
        assert checkpoints.restore_latest(state_template(EIGHT_DEVICES))[0] == int(intact[1])
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
    resumed = subprocess.run(
        [*args, "--workdir", str(workdir)], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(workdir, tmp_path / "reference", EIGHT_DEVICES)
