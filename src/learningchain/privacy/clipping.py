"""Per-example clipping of a holder's summed gradient (paper Eq. 6 and 9).

``clipped_gradient_sum`` returns ``sum_i g_i / max(1, ||g_i|| / G)`` over the
examples of a batch, the per-example form that Appendix A's sensitivity bound of
2G assumes. It never materialises per-example gradients of linear layers: for a
linear layer with input a_i and output gradient d_i, the per-example gradient is
``d_i a_i^T``, whose norm is ``||d_i|| * ||a_i||``, and the clipped sum is
``(c * D)^T A`` with ``c_i = min(1, G / ||g_i||)`` (the "ghost clipping" idea).
One forward pass and one backward pass to the layer outputs suffice, as for a
plain gradient. A convolution's per-example gradient norm comes the cheaper of
two ways: where its output has few positions P against its kernel (2 P^2 <= K O,
K = C k^2 inputs and O outputs per position) from the ghost norm
``||g_i||^2 = sum_{p,p'} (a_ip . a_ip') (d_ip . d_ip')`` over unfolded inputs,
without per-example gradients, its clipped sum then being a plain weight gradient
of the rescaled output gradients; otherwise from per-example gradients computed
as the weight gradient of one convolution with the examples as groups (the batch
laid side by side in the channels of a single input), which is also what the
small-kernel, large-map convolutions of the models here take; the clipped sum is
then the per-example gradients weighted by their ``c_i``. Any other layer falls
back to ``torch.func`` per-example gradients.

``mode="total"`` is the literal Eq. 9: clip the summed gradient as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import functools
import threading
import weakref

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from ..errors import ConfigError

__all__ = ["clipped_gradient_sum", "plain_gradient_sum", "ClipStats", "PerExampleClipper"]


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


class PerExampleClipper:
    """Clipped summed gradients of one model, with its layer hooks set up once.

    The forward hooks record a layer's input and output only while a clipped
    gradient is being computed, so the model can be used normally in between.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.params = list(model.parameters())
        self.layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        self.supported = _supported(model)
        self._records: list = []
        self._armed = False
        self._buffer = None
        # a weight or bias that two layers share (tied weights)
        owned = [id(p) for m in self.layers for p in m.parameters(recurse=False)]
        self._tied = len(owned) != len(set(owned))
        if self.supported:
            for layer in self.layers:
                layer.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if self._armed:
            a = inputs[0]
            if a.requires_grad:
                a = a.detach()
            # a linear layer's ||a_i||^2 (as a column) while its input is fresh in the cache
            aa = (a * a).sum(1, keepdim=True) if isinstance(module, nn.Linear) and a.dim() == 2 else None
            self._records.append((module, a, output, aa))

    def __call__(self, loss, x: torch.Tensor, y: torch.Tensor, *, clip: float) -> tuple[np.ndarray, ClipStats]:
        for grad, stats in self.iter_segments(loss, x, y, [(0, int(x.shape[0]))], clip=clip):
            return grad, stats
        raise AssertionError("one span gives one row")

    def segments(self, loss, x: torch.Tensor, y: torch.Tensor, spans, *, clip: float):
        """Clipped sums over consecutive slices ``[start, stop)`` of one batch: the
        gradients of several holders at the same model in one forward and one
        backward pass. Returns a (len(spans), d) float64 array and their stats."""
        out_grads = np.empty((len(spans), sum(p.numel() for p in self.params)), dtype=np.float64)
        stats = []
        for row, (grad, st) in enumerate(self.iter_segments(loss, x, y, spans, clip=clip)):
            out_grads[row] = grad
            stats.append(st)
        return out_grads, stats

    def _slots(self, dtype):
        """A flat buffer for one span's gradient, in the order of ``self.params``, and
        each parameter's view of it. The buffer is one per size, dtype and thread, shared
        by the clippers of every model of that size (a span is written whole and copied
        out before the next one starts), so K holders' models keep one, not K."""
        buffers = getattr(_BUFFERS, "flat", None)
        if buffers is None:
            buffers = _BUFFERS.flat = {}
        key = (dtype, sum(p.numel() for p in self.params))
        flat = buffers.get(key)
        if flat is None:
            flat = buffers[key] = torch.empty(key[1], dtype=dtype)
        if self._buffer is None or self._buffer[0] is not flat:
            views, off = {}, 0
            for p in self.params:
                views[id(p)] = flat[off:off + p.numel()].view(p.shape)
                off += p.numel()
            self._buffer = (flat, views)
        return flat, self._buffer[1]

    def iter_segments(self, loss, x: torch.Tensor, y: torch.Tensor, spans, *, clip: float):
        """:meth:`segments` one span at a time: yields each span's (d,) float64 clipped
        sum and its stats, the same numbers, after one forward and one backward pass
        for the whole batch. A caller that uses each gradient before asking for the
        next holds one of them, not len(spans) (at d = 1,000,000 and 100 holders,
        8 MB instead of 800 MB)."""
        if not self.supported:
            for lo, hi in spans:
                yield _functorch_clip(self.model, loss, x[lo:hi], y[lo:hi], clip)
            return
        self._records = []
        self._armed = True
        try:
            out = self.model(x)
        finally:
            self._armed = False
        records, self._records = self._records, []
        # One record per parameter: a layer called twice, or a weight two layers share, has
        # per-example gradients that are sums over its calls, whose norms the per-layer
        # formulas below do not give; those models (and linear layers over sequences)
        # take the per-example gradients of torch.func, as do dtypes other than float32
        # and float64 (the norms' bookkeeping is numpy's).
        called = {id(r[0]) for r in records}
        if (self._tied or len(called) != len(records) or out.dtype not in _NUMPY_FLOATS
                or any(isinstance(m, nn.Linear) and a.dim() != 2 for m, a, *_ in records)):
            for lo, hi in spans:
                yield _functorch_clip(self.model, loss, x[lo:hi], y[lo:hi], clip)
            return
        douts = torch.autograd.grad(loss(out, y).sum(), [r[2] for r in records])
        np_dtype = _NUMPY_FLOATS[out.dtype]
        del out
        batch = int(x.shape[0])
        # Squared norms (a (B, 1) column), layer by layer in the order of the records; a
        # linear layer adds ||a_i||^2 ||d_i||^2, then ||d_i||^2 for its bias. These float
        # operations and their order fix the bits of every linear model's clipped sum.
        # The sums over a row, the square root and the reciprocal are torch's (its float32
        # square root is not numpy's, bit for bit); the products, sums and minimum of (B, 1)
        # columns are numpy's, which rounds each as torch does (one IEEE operation each),
        # at a fraction of the cost of a torch call.
        # numpy stays as silent as torch where a norm overflows to inf (or inf meets 0)
        with np.errstate(over="ignore", invalid="ignore"):
            sq = None
            linear = 0
            layers = []  # (module, kind, inputs or per-example gradients, output gradients, bias sums)
            for (module, a, _, aa), d in zip(records, douts):
                if isinstance(module, nn.Linear):
                    dd = (d * d).sum(1, keepdim=True).numpy()
                    terms = [np.multiply(aa.numpy(), dd)]
                    if module.bias is not None:
                        terms.append(dd)
                    layers.append((module, _LINEAR, a, d, None))
                    linear += 1
                else:
                    flat_d = d.reshape(batch, d.shape[1], -1)  # (B, O, P)
                    bsum = flat_d.sum(2) if module.bias is not None else None  # (B, O)
                    if _use_ghost(module, d):
                        terms = [_conv_ghost_sq_norms(module, a, flat_d).unsqueeze(1).numpy()]
                        layers.append((module, _GHOST, a, d, bsum))
                    else:
                        pe = _conv_per_example(module, a, d).reshape(batch, -1)  # (B, weights)
                        terms = [torch.linalg.vecdot(pe, pe).unsqueeze(1).numpy()]
                        layers.append((module, _PER_EXAMPLE, pe, None, bsum))
                    if bsum is not None:
                        terms.append(torch.linalg.vecdot(bsum, bsum).unsqueeze(1).numpy())
                for term in terms:
                    if sq is None:  # 0 + term is term
                        sq = term.astype(np_dtype, copy=False)
                    else:
                        np.add(sq, term, out=sq)
            del records, douts
            torch.from_numpy(sq).sqrt_()
            norms = sq  # (B, 1)
            # min(1, clip / (norm + 1e-12)), as torch evaluates clip / t: t.reciprocal() * clip
            clip_t = _rounded(clip, np_dtype)  # the float clip becomes in torch's arithmetic
            coef = norms + 1e-12
            torch.from_numpy(coef).reciprocal_()
            coef *= clip_t
            np.minimum(coef, 1.0, out=coef)
            coef = torch.from_numpy(coef)  # (B, 1)
        spans = list(spans)
        stats = [_clip_stats(norms, lo, hi, batch, clip_t) for lo, hi in spans]
        for i, (module, kind, first, d, bsum) in enumerate(layers):
            if kind is _LINEAR:
                layers[i] = (module, kind, first, d * coef, None)
            elif kind is _GHOST:  # the weight gradient of the rescaled output gradients
                layers[i] = (module, kind, first, d * coef.reshape(-1, 1, 1, 1), bsum)
        coef = coef.view(-1) if len(layers) != linear else None  # the convolutions' weights
        flat, views = self._slots(self.params[0].dtype)
        unused = len(called) != len(self.layers)  # a layer the forward pass did not call: zeros
        for (lo, hi), st in zip(spans, stats):
            whole = lo == 0 and hi == batch
            c = coef if whole or coef is None else coef[lo:hi]
            if unused:
                flat.zero_()
            for module, kind, first, second, bsum in layers:
                if not whole:
                    first = first[lo:hi]
                    second = second[lo:hi] if second is not None else None
                    bsum = bsum[lo:hi] if bsum is not None else None
                vw = views[id(module.weight)]
                vb = views[id(module.bias)] if module.bias is not None else None
                if kind is _LINEAR:  # the same products as (second.t() @ first, second.sum(0))
                    torch.mm(second.t(), first, out=vw)
                    if vb is not None:
                        torch.sum(second, 0, out=vb)
                    continue
                gw = _conv_weight_grad(module, first, second) if kind is _GHOST else c @ first
                vw.copy_(gw.reshape(vw.shape))
                if vb is not None:
                    torch.mv(bsum.t(), c, out=vb)
            grad = flat.numpy().astype(np.float64)  # a copy (exact widening), the caller's own
            yield grad, st


_LINEAR, _GHOST, _PER_EXAMPLE = "linear", "ghost", "per-example"
_NUMPY_FLOATS = {torch.float32: np.float32, torch.float64: np.float64}


def _clip_stats(norms: np.ndarray, lo: int, hi: int, batch: int, clip: float) -> ClipStats:
    """The stats of the span ``[lo, hi)`` from the batch's (B, 1) column of norms (the
    mean summed in float64: a diagnostic, in nothing the chain computes)."""
    if lo == 0 and hi == batch:
        part = norms
    elif hi > lo:
        part = norms[lo:hi]
    else:
        return ClipStats(0, 0, 0.0)
    clipped = int(np.count_nonzero(part > clip))  # clip already of the norms' float type
    return ClipStats(hi - lo, clipped, float(np.add.reduce(part, axis=None, dtype=np.float64)) / (hi - lo))


@functools.lru_cache(maxsize=64)
def _rounded(clip: float, np_dtype) -> float:
    """``clip`` rounded to the model's float type, as torch rounds a Python float that
    meets a float32 tensor (to nearest; past the range, infinity). numpy then compares
    and multiplies with it as torch does with ``clip``."""
    with np.errstate(over="ignore"):
        return float(np_dtype(clip))


def _supported(model: nn.Module) -> bool:
    covered = set()
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            covered.update(id(p) for p in module.parameters(recurse=False))
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return False
    return all(id(p) in covered for p in model.parameters())


def _plain_conv(module: nn.Conv2d) -> bool:
    """A convolution of one group with zero (numeric) padding: what the fast paths handle."""
    return module.groups == 1 and module.padding_mode == "zeros" and not isinstance(module.padding, str)


def _use_ghost(module: nn.Conv2d, d: torch.Tensor) -> bool:
    """Whether the ghost norm costs less than per-example gradients: B P^2 (K + O)
    against B O K P, i.e. (with opacus' rule of thumb) 2 P^2 <= K O."""
    if not _plain_conv(module):
        return False
    positions = d.shape[2] * d.shape[3]
    return 2 * positions * positions <= module.weight[0].numel() * module.out_channels


def _unfold(module: nn.Conv2d, a: torch.Tensor) -> torch.Tensor:
    return F.unfold(a, module.kernel_size, dilation=module.dilation, padding=module.padding,
                    stride=module.stride)  # (B, C*k*k, P)


def _conv_ghost_sq_norms(module: nn.Conv2d, a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """||g_i||^2 of each example's weight gradient g_i = D_i A_i^T without forming it:
    sum over positions p, p' of (A_i^T A_i)[p, p'] (D_i^T D_i)[p, p']."""
    cols = _unfold(module, a)  # (B, K, P)
    d = d.reshape(d.shape[0], d.shape[1], -1)  # (B, O, P)
    return (torch.bmm(cols.transpose(1, 2), cols) * torch.bmm(d.transpose(1, 2), d)).sum((1, 2))


def _conv_weight_grad(module: nn.Conv2d, a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """The weight gradient summed over the examples of ``a`` with output gradients ``d``."""
    return torch.nn.grad.conv2d_weight(a, module.weight.shape, d, stride=module.stride, padding=module.padding,
                                       dilation=module.dilation, groups=module.groups)


def _conv_per_example(module: nn.Conv2d, a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Each example's weight gradient, (B, O, C/groups*kh*kw): the weight gradient of one
    convolution with the examples as groups (B * groups groups), the batch laid side by
    side in the channels of a single input. Any stride, dilation, groups and padding
    (a padding mode other than zeros, or "same", is applied to the input first, as the
    layer's forward does)."""
    if module.padding_mode != "zeros" or isinstance(module.padding, str):
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        a = F.pad(a, module._reversed_padding_repeated_twice, mode=mode)
        padding = (0, 0)
    else:
        padding = module.padding
    batch = a.shape[0]
    out_ch = module.out_channels
    shape = (batch * out_ch, module.in_channels // module.groups, *module.kernel_size)
    g = torch.nn.grad.conv2d_weight(a.reshape(1, -1, *a.shape[2:]), shape, d.reshape(1, -1, *d.shape[2:]),
                                    stride=module.stride, padding=padding, dilation=module.dilation,
                                    groups=batch * module.groups)
    return g.reshape(batch, out_ch, -1)


_BUFFERS = threading.local()  # (dtype, size) -> flat buffer; see PerExampleClipper._slots
_CLIPPERS: "weakref.WeakKeyDictionary[nn.Module, PerExampleClipper]" = weakref.WeakKeyDictionary()


def clipped_gradient_sum(model: nn.Module, loss, x: torch.Tensor, y: torch.Tensor, *, clip: float,
                         mode: str = "per-example") -> tuple[np.ndarray, ClipStats]:
    """Sum over the batch of per-example gradients clipped at ``clip`` (G)."""
    if not clip > 0:
        raise ConfigError(f"clip must be > 0, got {clip}")
    if mode == "total":
        return _total_clip(model, loss, x, y, clip)
    if mode == "none":
        g = plain_gradient_sum(model, loss, x, y)
        return g, ClipStats(int(x.shape[0]), 0, float("nan"))
    if mode != "per-example":
        raise ConfigError(f"unknown clip mode {mode!r}; known: per-example, total, none")
    clipper = _CLIPPERS.get(model)
    if clipper is None:
        clipper = _CLIPPERS[model] = PerExampleClipper(model)
    return clipper(loss, x, y, clip=clip)


def _functorch_clip(model, loss, x, y, clip):
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
