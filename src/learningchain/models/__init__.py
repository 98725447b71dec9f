"""Torch models and the flat-vector view of their parameters.

The chain stores a model as one float64 vector; :func:`get_flat` and
:func:`set_flat` map between that vector and a torch module, in the order of
``module.parameters()`` with each tensor flattened row-major. A model is named
by a small JSON-able spec (``{"kind": "logistic", "inputs": 30, "classes": 2}``)
that genesis records, so anyone can rebuild it from a stored chain.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..types import MAX_DIM
from .custom import IMPORT_KIND, build_imported, imported_spec, is_factory_path

__all__ = [
    "MODEL_KINDS",
    "IMPORT_KIND",
    "build_model",
    "imported_spec",
    "is_binary",
    "is_factory_path",
    "model_spec",
    "loss_fn",
    "get_flat",
    "set_flat",
    "num_params",
    "initial_vector",
    "predict",
    "error_rate",
    "mean_loss",
]


class LogisticRegression(nn.Module):
    """Binary (one logit, labels in {0,1}) or multinomial logistic regression."""

    def __init__(self, inputs: int, classes: int):
        super().__init__()
        self.linear = nn.Linear(inputs, 1 if classes == 2 else classes)

    def forward(self, x):
        return self.linear(x.flatten(1))


class SmoothHingeSVM(nn.Module):
    """Linear SVM with the smoothed (quadratically smoothed) hinge loss, binary only."""

    def __init__(self, inputs: int, classes: int):
        super().__init__()
        if classes != 2:
            raise ConfigError("the svm model is binary; use logistic for more classes")
        self.linear = nn.Linear(inputs, 1)

    def forward(self, x):
        return self.linear(x.flatten(1))


class MLP(nn.Module):
    def __init__(self, inputs: int, classes: int, hidden=(100,)):
        super().__init__()
        layers: list[nn.Module] = []
        width = inputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1 if classes == 2 else classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x.flatten(1))


class CNN(nn.Module):
    """A small convolutional net for 28x28 grey images (two conv layers, one hidden)."""

    def __init__(self, inputs: int, classes: int, channels=(8, 16), hidden: int = 32, side: int = 28):
        super().__init__()
        if inputs != side * side:
            raise ConfigError(f"the cnn model expects {side}x{side} images ({side * side} inputs), got {inputs}")
        c1, c2 = channels
        self.side = side
        self.conv1 = nn.Conv2d(1, c1, 5, padding=2)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2)
        self.fc1 = nn.Linear(c2 * (side // 4) ** 2, hidden)
        self.fc2 = nn.Linear(hidden, 1 if classes == 2 else classes)

    def forward(self, x):
        x = x.reshape(-1, 1, self.side, self.side)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


MODEL_KINDS: dict[str, Callable[..., nn.Module]] = {
    "logistic": LogisticRegression,
    "svm": SmoothHingeSVM,
    "mlp": MLP,
    "cnn": CNN,
}


def model_spec(kind: str, inputs: int, classes: int, **options) -> dict:
    if kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model {kind!r}; known: {', '.join(MODEL_KINDS)}")
    spec = {"kind": kind, "inputs": int(inputs), "classes": int(classes)}
    for key, value in options.items():
        spec[key] = list(value) if isinstance(value, tuple) else value
    return spec


def build_model(spec: dict, *, dtype=torch.float32) -> nn.Module:
    if spec.get("kind") == IMPORT_KIND:  # a user's factory (models/custom.py)
        return build_imported(spec).to(dtype)
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model {kind!r}; known: {', '.join(MODEL_KINDS)}")
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
    try:
        with torch.device("meta"):  # its shapes only: nothing allocated, no random draw
            probe = MODEL_KINDS[kind](**options)
        size = sum(p.numel() for p in probe.parameters())
        if size > MAX_DIM:
            raise ConfigError(f"model {kind!r} with these options has {size:,} parameters; a chain's model has at "
                              f"most {MAX_DIM:,}")
        model = MODEL_KINDS[kind](**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for model {kind!r}: {exc}") from None
    return model.to(dtype)


def is_binary(spec: dict) -> bool:
    """One logit and binary cross-entropy (two classes), or one logit per class.
    The built-in models say so by their class count; a user's model by its ``loss``."""
    return spec.get("loss", "binary" if spec["classes"] == 2 else "cross-entropy") == "binary"


def loss_fn(spec: dict) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Per-example loss ``phi(h(w; x), y)`` (reduction='none'), labels as class indices."""
    binary = is_binary(spec)
    if spec["kind"] == "svm":
        def smooth_hinge(out, y):
            z = out.squeeze(1) * (2.0 * y.to(out.dtype) - 1.0)
            return torch.where(z >= 1, torch.zeros_like(z),
                               torch.where(z <= 0, 0.5 - z, 0.5 * (1 - z) ** 2))
        return smooth_hinge
    if binary:
        return lambda out, y: F.binary_cross_entropy_with_logits(out.squeeze(1), y.to(out.dtype), reduction="none")
    return lambda out, y: F.cross_entropy(out, y, reduction="none")


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def get_flat(model: nn.Module) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([p.detach().reshape(-1).to(torch.float64) for p in model.parameters()]).numpy()


def set_flat(model: nn.Module, vector: np.ndarray) -> None:
    vec = torch.from_numpy(np.array(vector, dtype=np.float64, copy=True))
    if vec.numel() != num_params(model):
        raise ConfigError(f"vector has {vec.numel()} entries, the model has {num_params(model)} parameters")
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            n = p.numel()
            p.copy_(vec[offset:offset + n].reshape(p.shape).to(p.dtype))
            offset += n


def initial_vector(spec: dict, seed: int) -> np.ndarray:
    """w_0: zeros for linear models (the convex problems), torch's default init
    from ``seed`` for the networks."""
    torch_gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = build_model(spec, dtype=torch.float64)
    finally:
        torch.random.set_rng_state(torch_gen_state)
    if spec["kind"] in ("logistic", "svm"):
        return np.zeros(num_params(model))
    return get_flat(model)


def predict(model: nn.Module, spec: dict, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
        if is_binary(spec):
            return (out.squeeze(1) > 0).long()
        return out.argmax(1)


def error_rate(model: nn.Module, spec: dict, x: torch.Tensor, y: torch.Tensor, *, chunk: int = 8192) -> float:
    wrong = 0
    for i in range(0, x.shape[0], chunk):
        wrong += int((predict(model, spec, x[i:i + chunk]) != y[i:i + chunk]).sum())
    return wrong / max(1, x.shape[0])


def mean_loss(model: nn.Module, spec: dict, x: torch.Tensor, y: torch.Tensor, *, chunk: int = 8192) -> float:
    fn = loss_fn(spec)
    total = 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], chunk):
            total += float(fn(model(x[i:i + chunk]), y[i:i + chunk]).sum())
    if not math.isfinite(total):
        return float("inf")
    return total / max(1, x.shape[0])
