"""A user's own data: arrays, .npz, CSV and torch Datasets become the same checked
Dataset, and every unclear or malformed input is refused with a message that says what."""

import hashlib
import json

import numpy as np
import pytest
import torch

from learningchain.config import TrainConfig
from learningchain.data import as_dataset, from_object, load_user_data, partition_indices
from learningchain.errors import ConfigError, DataError
from learningchain.parties import build_chain_setup


def _arrays(n=50, seed=0, classes=3, shape=(2, 3)):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    y = np.arange(n) % classes
    return x, y


def test_arrays_are_flattened_and_split_as_documented():
    x, y = _arrays(50)
    ds = as_dataset(x, y, seed=7)
    # the documented split: round(0.2 N) test examples, order from default_rng([seed, 0xDA7A])
    order = np.random.default_rng([7, 0xDA7A]).permutation(50)
    assert (len(ds.y_test), len(ds.y_train)) == (10, 40)
    np.testing.assert_array_equal(ds.x_test, x[order[:10]].reshape(10, 6))
    np.testing.assert_array_equal(ds.y_train, y[order[10:]])
    assert ds.input_shape == (2, 3) and ds.classes == 3 and ds.features == 6
    # another seed, another split; the same seed, the same one
    assert not np.array_equal(as_dataset(x, y, seed=8).y_test, ds.y_test)
    np.testing.assert_array_equal(as_dataset(x, y, seed=7).x_train, ds.x_train)


def test_npz_with_its_own_test_part(tmp_path):
    x, y = _arrays(40)
    xt, yt = _arrays(9, seed=1)
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=xt, y_test=yt.astype(np.float64))  # float labels, integral
    ds = load_user_data(str(tmp_path / "d.npz"))
    np.testing.assert_array_equal(ds.x_train, x.reshape(40, -1))
    np.testing.assert_array_equal(ds.y_test, yt)
    assert ds.y_test.dtype == np.int64 and ds.name == "d.npz"


@pytest.mark.parametrize("arrays,match", [
    ({"x": np.zeros((4, 2))}, "must hold arrays x and y"),
    ({"x": np.zeros((4, 2)), "y": np.zeros(4), "X_test": np.zeros((1, 2))}, "must hold arrays x and y"),
    ({"x": np.zeros((4, 2)), "y": np.array([0, 1, 0.5, 1])}, "class indices .*0.5"),
    ({"x": np.zeros((4, 2)), "y": np.array([0, 1, 0])}, "4 examples in x but 3 labels"),
    ({"x": np.array([[0.0, np.nan]] * 4), "y": np.array([0, 1, 0, 1])}, "NaN or infinity"),
    ({"x": np.zeros((4, 2)), "y": np.array([1, 1, 1, 1])}, "at least two classes"),
    ({"x": np.zeros((4, 2)), "y": np.array([1, 2, 1, 2])}, r"class\(es\) \[0\] have no training example"),
    # one huge label: named at once (the missing classes were a set of every index up to it)
    ({"x": np.zeros((4, 2)), "y": np.array([0, 1, 3, 4_000_000_000]), "x_test": np.zeros((1, 2)),
      "y_test": np.array([0])},
     r"labels run to 4000000000 but class\(es\) \[2, 4, 5, 6, 7\] have"),
    ({"x": np.zeros((4, 2)), "y": np.array([0, 1, 0, 1]), "x_test": np.zeros((1, 2)),
      "y_test": np.array([2**62])}, r"labels run to 4611686018427387904 but class\(es\) \[2, 3, 4, 5, 6\]"),
    ({"x": np.zeros((4, 2)), "y": np.array([0, 1, -1, 1])}, "labels must be class indices >= 0"),
    ({"x": np.zeros(4), "y": np.array([0, 1, 0, 1])}, "one row per example"),
    ({"x": np.zeros((4, 2)), "y": np.array([0, 1, 0, 1]), "x_test": np.zeros((1, 2))}, "x_test and y_test"),
    ({"x": np.zeros((4, 2)), "y": np.array([0, 1, 0, 1]), "x_test": np.zeros((2, 3)), "y_test": np.array([0, 1])},
     "x_test examples have shape"),
])
def test_bad_npz_files_are_refused_with_what_is_wrong(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=match):
        load_user_data(str(tmp_path / "bad.npz"))


def test_pickled_arrays_are_never_loaded(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="cannot read the arrays"):
        load_user_data(str(tmp_path / "obj.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_user_data(str(tmp_path / "junk.npz"))
    with pytest.raises(DataError, match="does not exist"):
        load_user_data(str(tmp_path / "missing.npz"))
    (tmp_path / "d.txt").write_text("1,2\n")
    with pytest.raises(DataError, match="expected an .npz or .csv"):
        load_user_data(str(tmp_path / "d.txt"))


def test_csv_without_a_header_takes_the_last_column_as_label(tmp_path):
    rng = np.random.default_rng(3)
    table = np.column_stack([rng.standard_normal((30, 4)), np.arange(30) % 2])
    np.savetxt(tmp_path / "d.csv", table, delimiter=",")
    ds = load_user_data(str(tmp_path / "d.csv"), seed=1)
    reference = np.loadtxt(tmp_path / "d.csv", delimiter=",")  # an independent reader
    ref = as_dataset(reference[:, :4], reference[:, 4], seed=1)
    np.testing.assert_array_equal(ds.x_train, ref.x_train)
    np.testing.assert_array_equal(ds.y_test, ref.y_test)
    assert ds.classes == 2 and ds.input_shape == (4,)


def test_csv_with_a_header_and_a_named_label_column(tmp_path):
    rows = ["a,label,b"] + [f"{i},{i % 3},{-i}" for i in range(20)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    by_name = load_user_data(str(tmp_path / "d.csv"), label_column="label")
    by_index = load_user_data(str(tmp_path / "d.csv"), label_column="1")
    np.testing.assert_array_equal(by_name.x_train, by_index.x_train)
    assert by_name.classes == 3
    assert sorted(by_name.x_train[:, 0].tolist() + by_name.x_test[:, 0].tolist()) == list(range(20))
    with pytest.raises(DataError, match="no column named 'lbl'; the header has"):
        load_user_data(str(tmp_path / "d.csv"), label_column="lbl")
    with pytest.raises(DataError, match="label column 5 is out of range for 3 columns"):
        load_user_data(str(tmp_path / "d.csv"), label_column="5")
    # through the config: the key reaches the loader, and applies to CSV data only
    setup = build_chain_setup(TrainConfig(data=str(tmp_path / "d.csv"), label_column="label", holders=2, rounds=1))
    assert setup.dataset.classes == 3 and setup.params.meta["data"]["input_shape"] == [2]
    with pytest.raises(ConfigError, match="label_column applies to CSV data"):
        TrainConfig(data="d.npz", label_column="label")


@pytest.mark.parametrize("text,match", [
    ("1,2,0\n3,x,1\n", "row 2, column 2: 'x' is not a number"),
    ("1,2,0\n3,4\n", "row 2 has 2 columns, expected 3"),
    ("", "holds no rows"),
    ("1\n2\n", "at least two columns"),
])
def test_bad_csv_files_are_refused_with_the_row(tmp_path, text, match):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(DataError, match=match):
        load_user_data(str(tmp_path / "bad.csv"))


def test_classes_given_accepts_labels_the_inference_refuses(tmp_path):
    x, y = _arrays(30, classes=2)
    y = y + 1  # labels 1 and 2: with no 0 the class count is unclear
    with pytest.raises(DataError, match="class count is unclear"):
        as_dataset(x, y)
    assert as_dataset(x, y, classes=3).classes == 3
    with pytest.raises(DataError, match="label 2 is out of range for classes = 2"):
        as_dataset(x, y, classes=2)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    setup = build_chain_setup(TrainConfig(data=str(tmp_path / "d.npz"), classes=3, holders=2, rounds=1))
    assert setup.spec["classes"] == 3 and setup.params.meta["data"]["classes"] == 3
    with pytest.raises(ConfigError, match="classes applies to your own data"):
        TrainConfig(dataset="breast-cancer", classes=3)


def test_a_torch_dataset_is_stacked_item_by_item():
    x, y = _arrays(20)
    ds = from_object(torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), "t", seed=2)
    ref = as_dataset(x, y, seed=2)
    np.testing.assert_array_equal(ds.x_train, ref.x_train)
    np.testing.assert_array_equal(ds.y_test, ref.y_test)
    with pytest.raises(DataError, match="not an \\(x, y\\) pair"):
        from_object([(1,)] * 3, "t")
    with pytest.raises(DataError, match="expected a torch.utils.data.Dataset"):
        from_object(42, "t")


def test_user_data_is_recorded_in_genesis_and_partitions_unchanged(tmp_path):
    x, y = _arrays(60)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    cfg = TrainConfig(data=str(tmp_path / "d.npz"), holders=4, rounds=1, partition="dirichlet", dirichlet_alpha=0.3,
                      seed=5)
    setup = build_chain_setup(cfg)
    # the partition is the same function of the labels and the config's generator as for a built-in set
    expected = partition_indices(setup.dataset.y_train, 4, np.random.default_rng(5), scheme="dirichlet", alpha=0.3)
    assert all(np.array_equal(a, b) for a, b in zip(setup.parts, expected))
    record = setup.params.meta["data"]
    assert record["source"] == "d.npz" and (record["train"], record["test"]) == (48, 12)
    assert record["input_shape"] == [2, 3] and setup.params.meta["dataset"] == "user"
    h = hashlib.sha256()
    for a, dt in ((setup.dataset.x_train, "<f4"), (setup.dataset.y_train, "<i8"), (setup.dataset.x_test, "<f4"),
                  (setup.dataset.y_test, "<i8")):
        h.update(repr(a.shape).encode())
        h.update(np.ascontiguousarray(a, dtype=dt).tobytes())
    assert record["sha256"] == h.hexdigest()
    # one label changed: another fingerprint, another genesis
    y2 = y.copy()
    y2[0] = 1 if y2[0] != 1 else 2
    np.savez(tmp_path / "d.npz", x=x, y=y2)
    assert build_chain_setup(cfg).genesis.hash != setup.genesis.hash
    json.dumps(setup.params.meta)  # genesis hashes canonical JSON


def test_data_keys_are_checked_when_the_config_is_made():
    with pytest.raises(ConfigError, match="give dataset \\('mnist'\\) or data"):
        TrainConfig(dataset="mnist", data="d.npz")
    with pytest.raises(ConfigError, match="expected an .npz or .csv file or package.module:factory"):
        TrainConfig(data="d.parquet")
    with pytest.raises(ConfigError, match="not an import path"):
        TrainConfig(data="no module:f")
    with pytest.raises(ConfigError, match="dataset 'user' needs your data"):
        build_chain_setup(TrainConfig(dataset="user", holders=2, rounds=1))
    assert TrainConfig(data="d.npz").resolved().dataset == "user"
