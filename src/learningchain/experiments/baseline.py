"""The centralized baseline of the paper's figures: the same model trained on the
pooled training data by full-batch gradient descent, with the same learning rate,
regularisation and number of rounds, and no privacy, clipping or attackers."""

from __future__ import annotations

import numpy as np
import torch

from ..models import build_model, error_rate, loss_fn, mean_loss, set_flat

__all__ = ["train_centralized"]


def train_centralized(spec: dict, w0: np.ndarray, x_train: np.ndarray, y_train: np.ndarray,
                      x_test: np.ndarray, y_test: np.ndarray, *, lr: float, lam: float, rounds: int,
                      eval_every: int = 1) -> dict:
    model = build_model(spec)
    set_flat(model, w0)
    loss = loss_fn(spec)
    xt = torch.as_tensor(x_train, dtype=torch.float32)
    yt = torch.as_tensor(y_train, dtype=torch.long)
    xe = torch.as_tensor(x_test, dtype=torch.float32)
    ye = torch.as_tensor(y_test, dtype=torch.long)
    params = list(model.parameters())
    curve = []
    for t in range(1, rounds + 1):
        value = loss(model(xt), yt).mean()
        grads = torch.autograd.grad(value, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= lr * (g + lam * p)
        if t % eval_every == 0 or t == rounds:
            curve.append((t, error_rate(model, spec, xe, ye)))
    return {
        "test_error": error_rate(model, spec, xe, ye),
        "train_loss": mean_loss(model, spec, xt, yt),
        "curve": curve,
    }
