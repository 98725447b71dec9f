"""A user's own model and data for LearningChain (docs/CUSTOM.md).

``make_cnn`` is a small convolutional network for 8x8 one-channel images, and
``make_arrays`` draws a toy image data set: three classes of noisy bars
(horizontal, vertical, diagonal). Train them on the chain from the command line,
in this directory (the model is named ``custom_cnn:make_cnn``, a module beside you)::

    python custom_cnn.py bars.npz
    learningchain train --data bars.npz --model custom_cnn:make_cnn \\
        --model-arg channels=4 --holders 5 --rounds 40 --no-dp --out runs/bars
    learningchain chain verify runs/bars --trust-model-code

or from Python with ``learningchain.run_training(model=make_cnn, data=(x, y), ...)``.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import nn

SIDE = 8
CLASSES = 3


def make_cnn(channels: int = 4, classes: int = CLASSES, side: int = SIDE) -> nn.Module:
    """One 3x3 convolution, ReLU, 2x2 max-pooling and a linear layer: logits of ``classes`` classes."""
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(channels * (side // 2) ** 2, classes),
    )


def make_arrays(n: int = 600, *, seed: int = 0, side: int = SIDE, noise: float = 0.3):
    """``(x, y)``: ``n`` images of shape (1, side, side), float32, and their labels in 0..2
    (0: a horizontal bar, 1: a vertical bar, 2: a diagonal), each at a random place, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, size=n)
    x = noise * rng.standard_normal((n, 1, side, side))
    for i, label in enumerate(y):
        k = rng.integers(0, side)
        if label == 0:
            x[i, 0, k, :] += 1.0
        elif label == 1:
            x[i, 0, :, k] += 1.0
        else:
            x[i, 0] += np.roll(np.eye(side), k, axis=1)
    return x.astype(np.float32), y.astype(np.int64)


def bars_dataset() -> torch.utils.data.Dataset:
    """The same data as a ``torch.utils.data.Dataset`` (for ``--data custom_cnn:bars_dataset``)."""
    x, y = make_arrays()
    return torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].endswith(".npz"):
        sys.exit("usage: python custom_cnn.py OUT.npz")
    x, y = make_arrays()
    np.savez(sys.argv[1], x=x, y=y)
    print(f"wrote {sys.argv[1]}: x {x.shape}, y {y.shape} ({CLASSES} classes)")
