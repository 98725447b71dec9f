"""Data a user brings: arrays, an ``.npz``, a CSV, or a factory named by import path.

Every source becomes a :class:`~.datasets.Dataset` (flat float32 rows, int64
labels) that remembers the examples' shape (``input_shape``), so a user's model
sees ``(B, *input_shape)``. The rules, the same for every source:

* labels are class indices: integers (or floats with integral values) in
  ``0..C-1``. ``C`` is ``classes`` when given, else the largest label + 1, and
  then every class ``0..C-1`` must have a training example (labels 1 and 2 with
  no 0 are refused: relabel them, or give ``classes``). At least two classes.
* features are finite numbers; the test part has the training part's shape.
* without a test part, a seeded split holds out ``round(0.2 N)`` examples (at
  least 1) drawn uniformly at random with ``numpy.random.default_rng([seed,
  0xDA7A])``; the rest, in the drawn order, is the training part.

Sources: an ``.npz`` holds arrays ``x`` and ``y`` and optionally ``x_test`` and
``y_test`` (nothing else; never pickles); a CSV holds one example a row, numbers
only, an optional header row, the label in the last column or ``label_column``
(a header name or a 0-based index, negative from the end); a factory
``package.module:function`` returns a ``torch.utils.data.Dataset`` of
``(x, y)`` pairs, a tuple ``(x, y)`` or ``(x, y, x_test, y_test)``, or a dict
with the ``.npz`` keys.
"""

from __future__ import annotations

import csv
import hashlib
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import ConfigError, DataError
from .datasets import Dataset

__all__ = ["TEST_FRACTION", "as_dataset", "data_fingerprint", "from_object", "load_user_data"]

TEST_FRACTION = 0.2
_NPZ_KEYS = ("x", "y", "x_test", "y_test")


def _labels(y, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{what}: labels must be one class index per example, got shape {y.shape}")
    if y.dtype == bool:
        return y.astype(np.int64)
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            bad = y[~(np.isfinite(y) & (y == np.round(y)))][0]
            raise DataError(f"{what}: labels must be class indices (integers), got {bad!r}: LearningChain "
                            "trains classifiers")
        return y.astype(np.int64)
    raise DataError(f"{what}: labels must be integer class indices, got {y.dtype} values")


def _features(x, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise DataError(f"{what}: features must be numbers, got {x.dtype} values")
    if x.ndim < 2:
        raise DataError(f"{what}: features must have one row per example (shape (N, ...)), got shape {x.shape}")
    if x.shape[0] == 0 or any(s == 0 for s in x.shape[1:]):
        raise DataError(f"{what}: features of shape {x.shape} hold no examples or no features")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise DataError(f"{what}: features contain NaN or infinity (or values too large for float32)")
    return x


def _classes(y_train: np.ndarray, y_test: np.ndarray, classes: Optional[int], what: str) -> int:
    low = min(int(y_train.min()), int(y_test.min()) if y_test.size else 0)
    high = max(int(y_train.max()), int(y_test.max()) if y_test.size else 0)
    if low < 0:
        raise DataError(f"{what}: labels must be class indices >= 0, got {low}")
    present = np.unique(y_train)
    if len(present) < 2:
        raise DataError(f"{what}: every training label is {int(present[0])}: a classifier needs at least two classes")
    if classes is not None:
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
            raise ConfigError(f"classes must be an integer >= 2, got {classes!r}")
        if high >= classes:
            raise DataError(f"{what}: label {high} is out of range for classes = {classes} (labels 0..{classes - 1})")
        return classes
    count = high + 1
    if len(present) != count:  # some class below the highest has no example (present is sorted)
        missing, expect = [], 0  # the first few, without a set of every class up to ``high``
        for label in [*present.tolist(), count]:
            missing.extend(range(expect, min(label, expect + 5 - len(missing))))
            expect = label + 1
            if len(missing) >= 5:
                break
        raise DataError(f"{what}: labels run to {high} but class(es) {missing[:5]} have no training example: "
                        "the class count is unclear; relabel the classes 0..C-1 or give classes = C")
    return count


def _split(x: np.ndarray, y: np.ndarray, seed: int, what: str):
    n = len(y)
    if n < 2:
        raise DataError(f"{what}: {n} example; a run needs at least 2 (training and test)")
    order = np.random.default_rng([seed, 0xDA7A]).permutation(n)
    cut = max(1, int(round(n * TEST_FRACTION)))
    return x[order[cut:]], y[order[cut:]], x[order[:cut]], y[order[:cut]]


def as_dataset(x, y, x_test=None, y_test=None, *, name: str = "user", seed: int = 0,
               classes: Optional[int] = None) -> Dataset:
    """Arrays as a checked :class:`Dataset` (see the module's rules)."""
    if (x_test is None) != (y_test is None):
        raise DataError(f"{name}: give both x_test and y_test, or neither (a seeded split is then made)")
    x, y = _features(x, f"{name} x"), _labels(y, f"{name} y")
    if len(x) != len(y):
        raise DataError(f"{name}: {len(x)} examples in x but {len(y)} labels in y")
    if x_test is None:
        x, y, x_test, y_test = _split(x, y, seed, name)
        note = f"seeded {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} split of {len(y) + len(y_test)} examples"
    else:
        x_test, y_test = _features(x_test, f"{name} x_test"), _labels(y_test, f"{name} y_test")
        if len(x_test) != len(y_test):
            raise DataError(f"{name}: {len(x_test)} examples in x_test but {len(y_test)} labels in y_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(f"{name}: x_test examples have shape {x_test.shape[1:]}, x examples {x.shape[1:]}")
        note = "with its own test part"
    count = _classes(y, y_test, classes, name)
    shape = tuple(int(s) for s in x.shape[1:])
    return Dataset(name, x.reshape(len(x), -1), y, x_test.reshape(len(x_test), -1), y_test, count,
                   note=note, input_shape=shape)


def data_fingerprint(ds: Dataset) -> str:
    """sha256 over the four arrays as the run uses them (float32 and int64, little-endian, C order)."""
    h = hashlib.sha256()
    for a, dtype in ((ds.x_train, "<f4"), (ds.y_train, "<i8"), (ds.x_test, "<f4"), (ds.y_test, "<i8")):
        a = np.ascontiguousarray(a, dtype=dtype)
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


# -- sources ----------------------------------------------------------------------------


def _load_npz(path: Path, **kw) -> Dataset:
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a readable .npz file (not a zip archive of arrays)")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = sorted(z.files)
            extra = [k for k in keys if k not in _NPZ_KEYS]
            if extra or "x" not in keys or "y" not in keys:
                raise DataError(f"{path}: an .npz must hold arrays x and y (and optionally x_test, y_test), "
                                f"it holds {keys}")
            arrays = {k: z[k] for k in keys}
    except DataError:
        raise
    except ValueError as exc:  # object arrays need pickle, which is never loaded
        raise DataError(f"{path}: cannot read the arrays ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc})") from None
    return as_dataset(arrays["x"], arrays["y"], arrays.get("x_test"), arrays.get("y_test"), name=path.name, **kw)


def _number(cell: str):
    try:
        return float(cell)
    except ValueError:
        return None


def _label_index(label_column: Optional[str], header: Optional[list], width: int, path: Path) -> int:
    if label_column is None:
        return width - 1
    try:
        index = int(label_column)
    except ValueError:
        if header is None or label_column not in header:
            raise DataError(f"{path}: no column named {label_column!r}"
                            + (f"; the header has {header}" if header else " (the file has no header row)")) from None
        return header.index(label_column)
    if not -width <= index < width:
        raise DataError(f"{path}: label column {index} is out of range for {width} columns")
    return index % width


def _load_csv(path: Path, *, label_column: Optional[str] = None, **kw) -> Dataset:
    try:
        with open(path, newline="") as fh:
            rows = [row for row in csv.reader(fh) if row and any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read CSV file {path}: {exc}") from None
    if not rows:
        raise DataError(f"{path}: the CSV file holds no rows")
    header = None
    if any(_number(c) is None for c in rows[0]):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    width = len(header) if header else len(rows[0]) if rows else 0
    if width < 2:
        raise DataError(f"{path}: a CSV needs at least two columns (features and the label)")
    values = np.empty((len(rows), width), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise DataError(f"{path}: row {i + 1 + (header is not None)} has {len(row)} columns, expected {width}")
        for j, cell in enumerate(row):
            v = _number(cell)
            if v is None:
                raise DataError(f"{path}: row {i + 1 + (header is not None)}, column {j + 1}: {cell!r} is not a "
                                "number (only the first row may be a header)")
            values[i, j] = v
    label = _label_index(label_column, header, width, path)
    features = np.delete(values, label, axis=1)
    return as_dataset(features, values[:, label], name=path.name, **kw)


def from_object(obj, name: str, *, seed: int = 0, classes: Optional[int] = None) -> Dataset:
    """A factory's or a caller's data: a Dataset, arrays, a dict of arrays, or a torch Dataset."""
    kw = {"seed": seed, "classes": classes}
    if isinstance(obj, Dataset):
        return obj
    if isinstance(obj, dict):
        extra = sorted(set(obj) - set(_NPZ_KEYS))
        if extra or "x" not in obj or "y" not in obj:
            raise DataError(f"{name}: a dict of arrays holds x, y and optionally x_test, y_test, not {sorted(obj)}")
        return as_dataset(obj["x"], obj["y"], obj.get("x_test"), obj.get("y_test"), name=name, **kw)
    if isinstance(obj, (tuple, list)) and len(obj) in (2, 4):
        return as_dataset(*obj, name=name, **kw)
    if hasattr(obj, "__getitem__") and hasattr(obj, "__len__"):  # torch.utils.data.Dataset (map-style)
        return _from_torch_dataset(obj, name, **kw)
    raise DataError(f"{name}: expected a torch.utils.data.Dataset, arrays (x, y) or (x, y, x_test, y_test), "
                    f"or a dict of them; got {type(obj).__name__}")


def _from_torch_dataset(ds, name: str, **kw) -> Dataset:
    n = len(ds)
    if not isinstance(n, int) or n < 2:
        raise DataError(f"{name}: the dataset has {n!r} examples; a run needs at least 2")
    xs, ys = [], []
    for i in range(n):
        item = ds[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise DataError(f"{name}: item {i} is {type(item).__name__}, not an (x, y) pair")
        x, y = (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v) for v in item)
        if xs and x.shape != xs[0].shape:
            raise DataError(f"{name}: item {i} has shape {x.shape}, item 0 {xs[0].shape}")
        if np.asarray(y).size != 1:
            raise DataError(f"{name}: item {i}'s label has shape {np.asarray(y).shape}, not one class index")
        xs.append(x)
        ys.append(np.asarray(y).reshape(()))
    return as_dataset(np.stack(xs), np.stack(ys), name=name, **kw)


def load_user_data(source: str, *, seed: int = 0, classes: Optional[int] = None,
                   label_column: Optional[str] = None) -> Dataset:
    """The data set in file ``source``: an ``.npz`` or a ``.csv``. (A ``package.module:factory``
    source is imported by the caller, which hands its result to :func:`from_object`.)"""
    kw = {"seed": seed, "classes": classes}
    path = Path(source)
    if label_column is not None and path.suffix.lower() != ".csv":
        raise ConfigError(f"label_column applies to CSV data, not {source!r}")
    if not path.is_file():
        raise DataError(f"data file {source} does not exist" if not path.exists() else f"{source} is not a file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path, **kw)
    if suffix == ".csv":
        return _load_csv(path, label_column=label_column, **kw)
    raise DataError(f"data file {source}: expected an .npz or .csv file (or package.module:factory)")
