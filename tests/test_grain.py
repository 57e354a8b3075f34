"""The Grain input path (``train.data_pipeline=grain``): the same training as the on-device
sampler, from memory-mapped ``.npy`` and ArrayRecord files written by ``jaxlab data convert``;
the converter and its bad input; resumption after kill -9 and two processes (slow)."""

import os
import signal

import numpy as np
import pytest

import jaxlab
from jaxlab import cli
from jaxlab.data import arrays, cifar10, digits, in_memory, mnist
from jaxlab.errors import UserError
from tests.conftest import read_jsonl
from tests.test_image_loaders import write_cifar, write_mnist

SMOKE_LOGGED = {"train.log_every": 1, "train.eval_every": 10, "train.checkpoint_every": 10}


def convert(*args: str) -> int:
    return cli.main(["data", "convert", *args])


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory):
    """The smoke preset's digits split, written as .npz files and converted to both formats."""
    base = tmp_path_factory.mktemp("digits")
    data = digits.load(test_fraction=0.2, split_seed=0)
    np.savez(base / "train.npz", **data.train)
    np.savez(base / "test.npz", **data.test)
    for fmt in ("npy", "array_record"):
        assert (
            convert(
                str(base / "train.npz"),
                str(base / fmt),
                "--test",
                str(base / "test.npz"),
                "--format",
                fmt,
            )
            == 0
        )
    return base, data


def on_files(directory, suffix: str = "", **overrides):
    """The smoke preset reading its data from ``directory``'s converted files."""
    config = jaxlab.load_config("minimal_transformer:smoke", {**SMOKE_LOGGED, **overrides})
    config.data = dict(
        loader="jaxlab.data.arrays:load",
        train=f"{directory}/train{suffix}",
        test=f"{directory}/test{suffix}",
    )
    return config


def test_converted_files_hold_the_arrays_and_read_lazily(digits_files):
    base, data = digits_files
    npy = arrays.load(train=str(base / "npy" / "train"), test=str(base / "npy" / "test"))
    records = arrays.load(
        train=str(base / "array_record" / "train.array_record"),
        test=str(base / "array_record" / "test.array_record"),
    )
    assert isinstance(npy.train["x"], np.memmap)  # not read into memory
    placed = in_memory(npy.train)  # what the device path places: a copy, never the file's view
    assert not isinstance(placed["x"], np.memmap)
    assert not np.shares_memory(placed["x"], npy.train["x"])
    assert np.shares_memory(in_memory(data.train)["x"], data.train["x"])  # in memory: as it is
    assert records.train["x"].shape == data.train["x"].shape
    for split in ("train", "test"):
        for name, want in getattr(data, split).items():
            np.testing.assert_array_equal(getattr(npy, split)[name], want)
            np.testing.assert_array_equal(np.asarray(getattr(records, split)[name]), want)
            assert getattr(records, split)[name].dtype == want.dtype


def test_grain_path_trains_as_the_device_path_from_npy_and_array_record_files(
    digits_files, tmp_path
):
    """Same examples per step on both paths: the same losses and evaluations, on 8 devices."""
    base, _ = digits_files
    device = jaxlab.train(on_files(base / "npy"), tmp_path / "device", quiet=True)
    reference = read_jsonl(tmp_path / "device" / "metrics.jsonl")
    for name, config in {
        "npy": on_files(base / "npy", **{"train.data_pipeline": "grain"}),
        "array_record": on_files(
            base / "array_record",
            ".array_record",
            **{"train.data_pipeline": "grain", "train.prefetch": 3},
        ),
    }.items():
        final = jaxlab.train(config, tmp_path / name, quiet=True)
        log = read_jsonl(tmp_path / name / "metrics.jsonl")
        assert [r["step"] for r in log] == [r["step"] for r in reference] == list(range(1, 21))
        for got, want in zip(log, reference):
            assert got.keys() == want.keys()
            np.testing.assert_allclose(
                [got[k] for k in sorted(got)],
                [want[k] for k in sorted(want)],
                rtol=1e-5,
                atol=1e-5,
                err_msg=f"{name} step {got['step']}",
            )
        np.testing.assert_allclose(final["eval/accuracy"], device["eval/accuracy"], atol=1e-6)
        evaluated = jaxlab.evaluate(tmp_path / name)  # streamed in chunks again
        np.testing.assert_allclose(evaluated["eval/loss"], final["eval/loss"], rtol=1e-5)


@pytest.mark.slow  # 21 s
def test_vmapped_sweep_on_the_grain_path_equals_the_device_path(digits_files, tmp_path):
    base, _ = digits_files
    points = [{"seed": 0}, {"seed": 1}]
    rows = {
        pipeline: jaxlab.sweep(
            on_files(base / "npy", **{"train.data_pipeline": pipeline}),
            points,
            tmp_path / pipeline,
            vmap=True,
        )
        for pipeline in ("device", "grain")
    }
    assert [r["status"] for r in rows["grain"]] == ["done", "done"]
    for grain_row, device_row in zip(rows["grain"], rows["device"]):
        np.testing.assert_allclose(grain_row["eval/loss"], device_row["eval/loss"], rtol=1e-5)
        log = read_jsonl(tmp_path / "grain" / grain_row["run"] / "metrics.jsonl")
        ref = read_jsonl(tmp_path / "device" / device_row["run"] / "metrics.jsonl")
        np.testing.assert_allclose(
            [r["train/loss"] for r in log], [r["train/loss"] for r in ref], rtol=1e-5, atol=1e-5
        )


def test_the_grain_path_refuses_a_task_without_evaluate_sums(tmp_path):
    config = jaxlab.load_config("gedi:smoke", {"train.data_pipeline": "grain"})
    with pytest.raises(UserError, match="needs the task's evaluate_sums"):
        jaxlab.train(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_a_batch_larger_than_the_files_is_refused_before_anything_is_written(
    digits_files, tmp_path
):
    base, _ = digits_files
    config = on_files(base / "npy", **{"train.data_pipeline": "grain", "train.batch_size": 2048})
    with pytest.raises(UserError, match="batch_size=2048 is larger than the training set"):
        jaxlab.train(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["mnist", "cifar10"])
def test_convert_the_distributions_files(tmp_path, kind):
    source = tmp_path / kind
    source.mkdir()
    (write_mnist if kind == "mnist" else write_cifar)(source)
    loaded = (mnist if kind == "mnist" else cifar10).load(str(source))
    assert convert(str(source), str(tmp_path / "out"), "--from", kind) == 0
    converted = arrays.load(
        train=str(tmp_path / "out" / "train"), test=str(tmp_path / "out" / "test")
    )
    for split in ("train", "test"):
        for name in ("x", "label"):
            got, want = getattr(converted, split)[name], getattr(loaded, split)[name]
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


def test_convert_a_test_fraction_and_to_array_record(tmp_path):

    np.savez(tmp_path / "all.npz", x=np.arange(40.0).reshape(20, 2), label=np.arange(20))
    assert (
        convert(
            str(tmp_path / "all.npz"),
            str(tmp_path / "split"),
            "--test-fraction",
            "0.25",
            "--split-seed",
            "3",
        )
        == 0
    )
    split = arrays.load(
        train=str(tmp_path / "split" / "train"), test=str(tmp_path / "split" / "test")
    )
    assert (len(split.train["label"]), len(split.test["label"])) == (15, 5)
    assert sorted(np.concatenate([split.train["label"], split.test["label"]])) == list(range(20))
    np.testing.assert_array_equal(split.train["x"][:, 0], 2.0 * split.train["label"])
    in_run = arrays.load(train=str(tmp_path / "all.npz"), test_fraction=0.25, split_seed=3)
    for name in ("x", "label"):  # the split a run's loader draws with the same seed
        np.testing.assert_array_equal(split.train[name], in_run.train[name])
        np.testing.assert_array_equal(split.test[name], in_run.test[name])
    assert (
        convert(
            str(tmp_path / "split" / "train"),
            str(tmp_path / "records"),
            "--test-fraction",
            "0.2",
            "--format",
            "array_record",
        )
        == 0
    )
    records = arrays.load(
        train=str(tmp_path / "records" / "train.array_record"),
        test=str(tmp_path / "records" / "test.array_record"),
    )
    assert sorted(np.concatenate([records.train["label"][:], records.test["label"][:]])) == sorted(
        split.train["label"]
    )


def _bad_inputs(tmp_path):
    """name -> (convert arguments, the error's words): each written into ``tmp_path``."""
    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((10, 3), np.float32), label=np.zeros(10, np.int32))
    np.savez(tmp_path / "float64.npz", x=np.zeros((10, 3)), label=np.zeros(10, np.int32))
    np.savez(tmp_path / "wide.npz", x=np.zeros((10, 4), np.float32), label=np.zeros(10, np.int32))
    for name, rows in (("truncated", 10), ("uneven", 9)):
        (tmp_path / name).mkdir()
        np.save(tmp_path / name / "x.npy", np.zeros((10, 3), np.float32))
        np.save(tmp_path / name / "label.npy", np.zeros(rows, np.int32))
    raw = (tmp_path / "truncated" / "x.npy").read_bytes()
    (tmp_path / "truncated" / "x.npy").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "taken").mkdir()
    (tmp_path / "bad.array_record").write_bytes(b"not a record file" * 8)
    fraction = ["--test-fraction", "0.2"]
    return {
        "missing": ([str(tmp_path / "nothing.npz"), *fraction], "does not exist"),
        "truncated": ([str(tmp_path / "truncated"), *fraction], "is not a readable .npy file"),
        "uneven": ([str(tmp_path / "uneven"), *fraction], "differ in their number of examples"),
        "dtype": (
            [str(good), "--test", str(tmp_path / "float64.npz")],
            "dtype float32 in the train split but (3,) and float64",
        ),
        "shape": (
            [str(good), "--test", str(tmp_path / "wide.npz")],
            "examples of shape (3,) and dtype float32 in the train split but (4,)",
        ),
        "no_test": ([str(good)], "give the test split"),
        "array_record": (
            [str(tmp_path / "bad.array_record"), *fraction],
            "is not a readable ArrayRecord file",
        ),
        "mnist_missing": ([str(tmp_path / "taken"), "--from", "mnist"], "is missing from"),
        "format": ([str(good), *fraction, "--format", "tfrecord"], "--format must be one of"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "truncated",
        "uneven",
        "dtype",
        "shape",
        "no_test",
        "array_record",
        "mnist_missing",
        "format",
        "exists",
    ],
)
def test_bad_input_to_convert_is_one_line_exit_2_and_writes_nothing(tmp_path, case, capsys):
    cases = _bad_inputs(tmp_path)
    args, message = cases.get(
        case,
        ([str(tmp_path / "good.npz"), "--test-fraction", "0.2"], "exists; give a new directory"),
    )
    destination = tmp_path / ("taken" if case == "exists" else "out")
    before = sorted(os.listdir(tmp_path))
    assert convert(*args[:1], str(destination), *args[1:]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxlab: error: ") and err.count("\n") == 1 and message in err, err
    assert sorted(os.listdir(tmp_path)) == before  # no destination, no temporary directory
    assert list((tmp_path / "taken").iterdir()) == []


def test_a_truncated_file_named_by_a_run_is_refused_before_anything_is_written(
    digits_files, tmp_path
):
    base, _ = digits_files
    (tmp_path / "data").mkdir()
    for name in ("x", "label"):
        raw = (base / "npy" / "train" / f"{name}.npy").read_bytes()
        (tmp_path / "data" / f"{name}.npy").write_bytes(raw[:-100] if name == "x" else raw)
    config = on_files(base / "npy", **{"train.data_pipeline": "grain"})
    config.data.train = str(tmp_path / "data")
    with pytest.raises(UserError, match="x.npy is not a readable .npy file"):
        jaxlab.train(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


# --- slow: kill -9 and two processes on the Grain path -------------------------------------


@pytest.mark.slow
def test_kill_9_on_the_grain_path_resumes_exactly(tmp_path):
    from tests import test_faults as faults

    grain = ["--config.train.data_pipeline=grain"]
    reference, workdir, cache = tmp_path / "reference", tmp_path / "run", tmp_path / "cache"
    status, err = faults.finish(faults.launch(reference, cache, grain), reference)
    assert status == 0, err
    for target in (7, 29):  # inside the first chunks; past the first checkpoints
        process = faults.launch(workdir, cache, grain)
        faults.wait_for(lambda: faults.logged_step(workdir) >= target, process)
        process.kill()
        assert faults.finish(process, workdir)[0] == -signal.SIGKILL
    status, err = faults.finish(faults.launch(workdir, cache, grain), workdir)
    assert status == 0, err
    faults.assert_same_run(workdir, reference, faults.EIGHT_DEVICES)


@pytest.mark.slow
def test_two_processes_on_the_grain_path_equal_one_process(digits_files, tmp_path):
    from tests.test_multihost import run_two_processes

    base, _ = digits_files
    one = jaxlab.train(
        on_files(base / "npy", **{"train.data_pipeline": "grain"}), tmp_path / "one", quiet=True
    )
    experiment = tmp_path / "on_files.py"
    experiment.write_text(
        "import jaxlab\n\n\ndef get_config(arg):\n"
        "    config = jaxlab.load_config('minimal_transformer:smoke')\n"
        f"    config.data = dict(loader='jaxlab.data.arrays:load', train='{base}/npy/train',\n"
        f"                       test='{base}/npy/test')\n"
        "    return config\n"
    )
    run_two_processes(
        "train",
        str(experiment),
        "--workdir",
        str(tmp_path / "two"),
        "--quiet",
        *[f"--config.{k}={v}" for k, v in SMOKE_LOGGED.items()],
        "--config.train.data_pipeline=grain",
    )
    log_one = read_jsonl(tmp_path / "one" / "metrics.jsonl")
    log_two = read_jsonl(tmp_path / "two" / "metrics.jsonl")
    np.testing.assert_allclose(
        [r["train/loss"] for r in log_two], [r["train/loss"] for r in log_one], rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(log_two[-1]["eval/loss"], one["eval/loss"], rtol=1e-5)
