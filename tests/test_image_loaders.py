"""Image loaders: digits (against scikit-learn's own loader), MNIST (IDX) and CIFAR-10 (binary
batches) on tiny files written by the tests."""
import gzip
import struct

import numpy as np
import pytest

import jaxlab
from jaxlab.data import cifar10, digits, mnist
from jaxlab.errors import UserError


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
    path.write_bytes(gzip.compress(raw) if compress else raw)


def write_mnist(directory, num_train=16, num_test=8, compress=False, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", num_train), ("t10k", num_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        suffix = ".gz" if compress else ""
        write_idx(directory / f"{split}-images-idx3-ubyte{suffix}", images, compress)
        write_idx(directory / f"{split}-labels-idx1-ubyte{suffix}", labels, compress)
        arrays[split] = (images, labels)
    return arrays


def write_cifar(directory, per_batch=3, seed=0):
    """Batches whose images are known: returns {file name: (images NHWC, labels)}."""
    rng = np.random.default_rng(seed)
    written = {}
    for name in cifar10.TRAIN_FILES + cifar10.TEST_FILES:
        images = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch, dtype=np.uint8)
        planes = images.transpose(0, 3, 1, 2).reshape(per_batch, -1)  # R plane, G plane, B plane
        (directory / name).write_bytes(np.concatenate([labels[:, None], planes], 1).tobytes())
        written[name] = (images, labels)
    return written


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
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte \\(or t10k-labels-idx1-ubyte.gz\\) "
                                        "is missing from"):
        mnist.load(str(tmp_path))


@pytest.mark.parametrize("corrupt,match", [
    (lambda raw: raw[:-5], "is truncated: .* expected"),
    (lambda raw: raw[:6], "shorter than its IDX header"),
    (lambda raw: b"\x1f\x8b" + raw[2:], "not an IDX file"),
    (lambda raw: raw[:2] + b"\x0d" + raw[3:], "type byte 0x0d"),
    (lambda raw: raw[:3] + b"\x02" + raw[4:], "of 2 dimensions, expected 3"),
    (lambda raw: raw + b"\x00", "longer than its header says"),
])
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


def test_cifar10_reads_binary_batches(tmp_path):
    root = tmp_path / cifar10.SUBDIRECTORY  # the directory the archive unpacks to is found too
    root.mkdir()
    written = write_cifar(root)
    data = cifar10.load(str(tmp_path))
    assert data.train["x"].shape == (15, 32, 32, 3) and data.test["x"].shape == (3, 32, 32, 3)
    images, labels = written["data_batch_2.bin"]
    np.testing.assert_array_equal(data.train["x"][3:6], images)
    np.testing.assert_array_equal(data.train["label"][3:6], labels)
    np.testing.assert_array_equal(data.test["x"], written["test_batch.bin"][0])


def test_cifar10_errors(tmp_path):
    with pytest.raises(UserError, match="CIFAR-10 directory .*missing does not exist.*data_batch_1"):
        cifar10.load(str(tmp_path / "missing"))
    write_cifar(tmp_path)
    (tmp_path / "data_batch_4.bin").unlink()
    (tmp_path / "data_batch_4").write_bytes(b"pickle")  # the Python version's name is not read
    with pytest.raises(UserError, match="files missing from .*: data_batch_4.bin"):
        cifar10.load(str(tmp_path))
    write_cifar(tmp_path)
    path = tmp_path / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(UserError, match="truncated or not a CIFAR-10 binary batch: 9218 bytes"):
        cifar10.load(str(tmp_path))
    raw = bytearray(path.read_bytes() + b"\x00")
    raw[0] = 200
    path.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="label byte 200 is not in 0..9"):
        cifar10.load(str(tmp_path))


@pytest.mark.parametrize("dataset,writer,shape", [("mnist", write_mnist, (28, 28, 1)),
                                                  ("cifar10", write_cifar, (32, 32, 3))])
def test_classification_trains_on_the_loaders(tmp_path, dataset, writer, shape):
    writer(tmp_path, **({"num_train": 32} if dataset == "mnist" else {"per_batch": 8}))
    config = jaxlab.load_config(f"minimal_transformer:smoke,dataset={dataset},attention=wqk_novo",
                                {"data.directory": str(tmp_path), "train.steps": 10,
                                 "model.patch_size": 7 if dataset == "mnist" else 8})
    final = jaxlab.train(config, tmp_path / "run", quiet=True)
    assert final["step"] == 10 and np.isfinite(final["eval/loss"])
    bad = jaxlab.load_config(f"minimal_transformer:smoke,dataset={dataset}",
                             {"data.directory": str(tmp_path), "model.patch_size": 5})
    with pytest.raises(UserError, match=f"patch_size=5 does not divide the "
                                        f"{shape[0]}x{shape[1]} images of the dataset"):
        jaxlab.train(bad, tmp_path / "bad", quiet=True)


def test_uint8_images_are_scaled_to_unit_interval():
    from jaxlab.tasks.classification import as_float_images
    scaled = as_float_images(np.array([[0, 51, 255]], np.uint8))
    np.testing.assert_allclose(scaled, [[0.0, 0.2, 1.0]])
    floats = np.array([[0.5, 2.0]], np.float32)
    np.testing.assert_array_equal(as_float_images(floats), floats)
