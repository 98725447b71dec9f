"""Per-example clipping of a holder's summed gradient (paper Eq. 6 and 9).

``clipped_gradient_sum`` returns ``sum_i g_i / max(1, ||g_i|| / G)`` over the
examples of a batch, the per-example form that Appendix A's sensitivity bound of
2G assumes. It never materialises per-example gradients of linear layers: for a
linear layer with input a_i and output gradient d_i, the per-example gradient is
``d_i a_i^T``, whose norm is ``||d_i|| * ||a_i||``, and the clipped sum is
``(c * D)^T A`` with ``c_i = min(1, G / ||g_i||)`` (the "ghost clipping" idea).
One forward pass and one backward pass to the layer outputs suffice, as for a
plain gradient. Convolutions use per-example gradients from unfolded inputs
(cheap for the small kernels used here); any other layer falls back to
``torch.func`` per-example gradients.

``mode="total"`` is the literal Eq. 9: clip the summed gradient as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError

__all__ = ["clipped_gradient_sum", "plain_gradient_sum", "ClipStats"]


@dataclass(frozen=True)
class ClipStats:
    examples: int
    clipped: int  # how many per-example gradients were scaled down
    mean_norm: float  # mean per-example gradient norm before clipping


def plain_gradient_sum(model: nn.Module, loss, x, y) -> np.ndarray:
    """Eq. 6 without clipping: gradient of the summed loss, as float64 flat vector."""
    params = [p for p in model.parameters()]
    total = loss(model(x), y).sum()
    grads = torch.autograd.grad(total, params)
    return torch.cat([g.reshape(-1) for g in grads]).to(torch.float64).numpy()


def _total_clip(model, loss, x, y, clip):
    g = plain_gradient_sum(model, loss, x, y)
    norm = float(np.sqrt(np.dot(g, g)))
    scale = 1.0 / max(1.0, norm / clip)
    return g * scale, ClipStats(int(x.shape[0]), int(scale < 1.0), norm / max(1, x.shape[0]))


class _Capture:
    """Forward hooks that record (module, input, output) of linear and conv layers."""

    def __init__(self, model: nn.Module):
        self.records: list = []
        self.handles = []
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                self.handles.append(module.register_forward_hook(self._hook))

    def _hook(self, module, inputs, output):
        self.records.append((module, inputs[0].detach(), output))

    def close(self):
        for h in self.handles:
            h.remove()


def _supported(model: nn.Module) -> bool:
    covered = set()
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            covered.update(id(p) for p in module.parameters(recurse=False))
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return False
    return all(id(p) in covered for p in model.parameters())


def _conv_per_example(module: nn.Conv2d, a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    cols = F.unfold(a, module.kernel_size, dilation=module.dilation, padding=module.padding,
                    stride=module.stride)  # (B, C*k*k, P)
    d = d.reshape(d.shape[0], d.shape[1], -1)  # (B, O, P)
    return torch.einsum("bop,bkp->bok", d, cols)  # (B, O, C*k*k)


def clipped_gradient_sum(model: nn.Module, loss, x: torch.Tensor, y: torch.Tensor, *, clip: float,
                         mode: str = "per-example") -> tuple[np.ndarray, ClipStats]:
    """Sum over the batch of per-example gradients clipped at ``clip`` (G)."""
    if not clip > 0:
        raise ConfigError(f"clip must be > 0, got {clip}")
    if mode == "total":
        return _total_clip(model, loss, x, y, clip)
    if mode != "per-example":
        raise ConfigError(f"unknown clip mode {mode!r}; known: per-example, total")
    if not _supported(model):
        return _functorch_clip(model, loss, x, y, clip)
    cap = _Capture(model)
    try:
        out = model(x)
    finally:
        cap.close()
    losses = loss(out, y)
    outputs = [rec[2] for rec in cap.records]
    douts = torch.autograd.grad(losses.sum(), outputs)
    batch = x.shape[0]
    sq = torch.zeros(batch, dtype=out.dtype)
    per_conv = {}
    for i, ((module, a, _), d) in enumerate(zip(cap.records, douts)):
        if isinstance(module, nn.Linear):
            if a.dim() != 2:
                return _functorch_clip(model, loss, x, y, clip)
            sq += (a * a).sum(1) * (d * d).sum(1)
            if module.bias is not None:
                sq += (d * d).sum(1)
        else:
            pe = _conv_per_example(module, a, d)
            per_conv[i] = pe
            sq += (pe * pe).sum((1, 2))
            if module.bias is not None:
                bsum = d.sum((2, 3))
                sq += (bsum * bsum).sum(1)
    norms = sq.sqrt()
    coef = torch.clamp(clip / (norms + 1e-12), max=1.0)
    grads: dict[int, torch.Tensor] = {}
    for i, ((module, a, _), d) in enumerate(zip(cap.records, douts)):
        if isinstance(module, nn.Linear):
            dc = d * coef[:, None]
            gw = dc.t() @ a
            gb = dc.sum(0) if module.bias is not None else None
        else:
            gw = torch.einsum("b,bok->ok", coef, per_conv[i]).reshape(module.weight.shape)
            gb = (d.sum((2, 3)) * coef[:, None]).sum(0) if module.bias is not None else None
        grads[id(module.weight)] = grads.get(id(module.weight), 0) + gw
        if gb is not None:
            grads[id(module.bias)] = grads.get(id(module.bias), 0) + gb
    flat = torch.cat([grads[id(p)].reshape(-1) for p in model.parameters()])
    stats = ClipStats(int(batch), int((norms > clip).sum()), float(norms.mean()) if batch else 0.0)
    return flat.detach().to(torch.float64).numpy(), stats


def _functorch_clip(model, loss, x, y, clip):
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def one(p, xi, yi):
        return loss(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0)).sum()

    per = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)
    flat = torch.cat([per[k].reshape(x.shape[0], -1) for k in params], dim=1)
    norms = flat.norm(dim=1)
    coef = torch.clamp(clip / (norms + 1e-12), max=1.0)
    total = (flat * coef[:, None]).sum(0)
    stats = ClipStats(int(x.shape[0]), int((norms > clip).sum()), float(norms.mean()))
    return total.detach().to(torch.float64).numpy(), stats
