"""Per-example clipping against a slow loop over examples with plain autograd."""

import numpy as np
import pytest
import torch

from learningchain.models import build_model, loss_fn, model_spec
from learningchain.privacy import clipped_gradient_sum, plain_gradient_sum


def slow_clipped_sum(model, loss, x, y, clip):
    total = None
    params = list(model.parameters())
    for i in range(x.shape[0]):
        g = torch.autograd.grad(loss(model(x[i:i + 1]), y[i:i + 1]).sum(), params)
        flat = torch.cat([t.reshape(-1) for t in g]).double()
        flat = flat / max(1.0, float(flat.norm()) / clip)
        total = flat if total is None else total + flat
    return total.numpy()


@pytest.mark.parametrize("kind,inputs,classes,opts", [
    ("logistic", 7, 2, {}),
    ("logistic", 12, 4, {}),
    ("svm", 5, 2, {}),
    ("mlp", 9, 3, {"hidden": [6, 5]}),
    ("cnn", 784, 10, {}),
])
def test_clipped_sum_matches_per_example_loop(kind, inputs, classes, opts):
    torch.manual_seed(0)
    spec = model_spec(kind, inputs, classes, **opts)
    model = build_model(spec, dtype=torch.float64)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    loss = loss_fn(spec)
    n = 6 if kind == "cnn" else 20
    x = torch.randn(n, inputs, dtype=torch.float64)
    y = torch.randint(0, classes, (n,))
    got, stats = clipped_gradient_sum(model, loss, x, y, clip=0.5)
    want = slow_clipped_sum(model, loss, x, y, 0.5)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert stats.examples == n and 0 <= stats.clipped <= n


def test_large_clip_gives_the_plain_gradient():
    spec = model_spec("logistic", 5, 2)
    model = build_model(spec, dtype=torch.float64)
    x = torch.randn(30, 5, dtype=torch.float64)
    y = torch.randint(0, 2, (30,))
    got, stats = clipped_gradient_sum(model, loss_fn(spec), x, y, clip=1e9)
    np.testing.assert_allclose(got, plain_gradient_sum(model, loss_fn(spec), x, y), rtol=1e-12)
    assert stats.clipped == 0


def test_total_mode_clips_the_summed_gradient_as_eq_9_writes_it():
    spec = model_spec("logistic", 5, 2)
    model = build_model(spec, dtype=torch.float64)
    x = torch.randn(50, 5, dtype=torch.float64) * 3
    y = torch.randint(0, 2, (50,))
    plain = plain_gradient_sum(model, loss_fn(spec), x, y)
    got, _ = clipped_gradient_sum(model, loss_fn(spec), x, y, clip=1.0, mode="total")
    assert np.linalg.norm(got) == pytest.approx(1.0)
    np.testing.assert_allclose(got / np.linalg.norm(got), plain / np.linalg.norm(plain))


@pytest.mark.parametrize("kind,inputs,classes,opts", [("logistic", 6, 2, {}), ("mlp", 8, 3, {"hidden": [5]}),
                                                      ("cnn", 784, 10, {})])
def test_segment_sums_equal_separate_calls(kind, inputs, classes, opts):
    from learningchain.privacy.clipping import PerExampleClipper

    torch.manual_seed(1)
    spec = model_spec(kind, inputs, classes, **opts)
    model = build_model(spec, dtype=torch.float64)
    loss = loss_fn(spec)
    x = torch.randn(13, inputs, dtype=torch.float64)
    y = torch.randint(0, classes, (13,))
    spans = [(0, 4), (4, 5), (5, 13)]
    grads, stats = PerExampleClipper(model).segments(loss, x, y, spans, clip=0.3)
    for (lo, hi), g, st in zip(spans, grads, stats):
        want, _ = clipped_gradient_sum(model, loss, x[lo:hi], y[lo:hi], clip=0.3)
        np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-13)
        assert st.examples == hi - lo


@pytest.mark.parametrize("kind,inputs,classes,opts", [("mlp", 8, 3, {"hidden": [5]}), ("cnn", 784, 10, {})])
def test_iter_segments_yields_the_rows_of_segments_bit_for_bit(kind, inputs, classes, opts):
    from learningchain.privacy.clipping import PerExampleClipper

    torch.manual_seed(2)
    spec = model_spec(kind, inputs, classes, **opts)
    model = build_model(spec)
    loss = loss_fn(spec)
    x = torch.randn(11, inputs)
    y = torch.randint(0, classes, (11,))
    spans = [(0, 3), (3, 4), (4, 11)]
    clipper = PerExampleClipper(model)
    grads, stats = clipper.segments(loss, x, y, spans, clip=0.3)
    rows = list(clipper.iter_segments(loss, x, y, spans, clip=0.3))
    assert len(rows) == len(spans)
    for g, st, (row, row_st) in zip(grads, stats, rows):
        assert row.dtype == np.float64 and np.array_equal(row, g) and row_st == st


def _linear_reference(model, loss, x, y, clip, spans):
    """The float operations the clipped sum of linear layers is defined by, written out
    (the seeded runs' heads depend on their bits): squared norms added layer by layer from
    zero as ||a_i||^2 ||d_i||^2 then ||d_i||^2 for the bias, c_i = min(1, clip / (norm_i +
    1e-12)) with the division as torch evaluates a float over a tensor, and per span the
    weight sum (c D)^T A and bias sum of c D, concatenated and widened to float64."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    inputs, outputs = [], []

    def record(module, args, out):
        inputs.append(args[0].detach())
        outputs.append(out)

    hooks = [m.register_forward_hook(record) for m in layers]
    try:
        out = model(x)
    finally:
        for h in hooks:
            h.remove()
    douts = torch.autograd.grad(loss(out, y).sum(), outputs)
    sq = torch.zeros(x.shape[0], dtype=out.dtype)
    for a, d in zip(inputs, douts):
        dd = (d * d).sum(1)
        sq += (a * a).sum(1) * dd
        sq += dd
    norms = sq.sqrt()
    coef = torch.clamp(clip / (norms + 1e-12), max=1.0)
    rows = []
    for lo, hi in spans:
        parts = []
        for a, d in zip(inputs, douts):
            s = (d * coef[:, None])[lo:hi]
            parts += [(s.t() @ a[lo:hi]).reshape(-1), s.sum(0)]
        rows.append((torch.cat(parts).double().numpy(), int((norms[lo:hi] > clip).sum()),
                     float(norms[lo:hi].double().mean()) if hi > lo else 0.0))
    return rows


@pytest.mark.parametrize("kind,inputs,classes,opts,dtype", [
    ("logistic", 784, 2, {}, torch.float32),
    ("logistic", 50, 7, {}, torch.float32),
    ("mlp", 784, 10, {"hidden": [100]}, torch.float32),
    ("mlp", 30, 3, {"hidden": [20, 9]}, torch.float64),
])
@pytest.mark.parametrize("clip", [0.05, 1.0, 0.1, 1e3, 1e300, float("inf")])
def test_linear_clipped_sums_are_bit_for_bit_the_written_out_operations(kind, inputs, classes, opts, dtype, clip):
    from learningchain.privacy.clipping import PerExampleClipper

    torch.manual_seed(5)
    spec = model_spec(kind, inputs, classes, **opts)
    model = build_model(spec, dtype=dtype)
    loss = loss_fn(spec)
    x = torch.rand(70, inputs, dtype=dtype)
    y = torch.randint(0, classes, (70,))
    spans = [(0, 70)] if clip != 0.1 else [(0, 20), (20, 21), (21, 21), (21, 70)]
    want = _linear_reference(model, loss, x, y, clip, spans)
    clipper = PerExampleClipper(model)
    for _ in range(2):  # the kept buffer gives the same rows again, and new arrays each time
        rows = list(clipper.iter_segments(loss, x, y, spans, clip=clip))
        for (g, st), (wg, wclipped, wmean) in zip(rows, want):
            assert g.dtype == np.float64 and np.array_equal(g, wg)
            assert st.clipped == wclipped and st.mean_norm == pytest.approx(wmean, rel=1e-12, abs=0)
        assert len({id(g) for g, _ in rows}) == len(rows)
    if spans == [(0, 70)]:
        g, st = clipped_gradient_sum(model, loss, x, y, clip=clip)
        assert np.array_equal(g, want[0][0])
        g[:] = 7.0  # the caller owns the array: the next call does not see it
        assert np.array_equal(clipped_gradient_sum(model, loss, x, y, clip=clip)[0], want[0][0])


def _slow_loop(model, loss, x, y, clip):
    params = list(model.parameters())
    total = None
    for i in range(x.shape[0]):
        g = torch.autograd.grad(loss(model(x[i:i + 1]), y[i:i + 1]).sum(), params, allow_unused=True)
        flat = torch.cat([(t if t is not None else torch.zeros_like(p)).reshape(-1) for t, p in zip(g, params)])
        flat = flat.double() / max(1.0, float(flat.double().norm()) / clip)
        total = flat if total is None else total + flat
    return total.numpy()


class _Twice(torch.nn.Module):
    """One layer called twice: its per-example gradient sums two outer products."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(4, 4)
        self.b = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.b(torch.tanh(self.a(torch.tanh(self.a(x)))))


class _Tied(torch.nn.Module):
    """Two layers sharing one weight."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(4, 4)
        self.b = torch.nn.Linear(4, 4, bias=False)
        self.b.weight = self.a.weight
        self.c = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.c(torch.tanh(self.b(torch.tanh(self.a(x)))))


class _Unused(torch.nn.Module):
    """A layer the forward pass never calls: its gradient is zero."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(4, 3)
        self.spare = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.a(x)


@pytest.mark.parametrize("net", [_Twice, _Tied, _Unused])
def test_reused_shared_and_unused_layers_match_the_per_example_loop(net):
    torch.manual_seed(6)
    model = net().double()
    loss = lambda out, y: torch.nn.functional.cross_entropy(out, y, reduction="none")  # noqa: E731
    x = torch.randn(9, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (9,))
    for clip in (0.05, 1e6):
        got, _ = clipped_gradient_sum(model, loss, x, y, clip=clip)
        np.testing.assert_allclose(got, _slow_loop(model, loss, x, y, clip), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clip_rounded_as_torch_rounds_it_counts_and_scales_as_torch_does(dtype):
    """numpy, given clip as torch rounds it, compares and multiplies as torch does with
    the Python float, overflow included (and without numpy's overflow warning)."""
    import warnings

    from learningchain.privacy.clipping import _NUMPY_FLOATS, _rounded

    norms = torch.tensor([0.1, 0.1 + 1e-9, 1.0, float("inf"), float("nan"), 3.4028234e38, 0.0, 1e-30], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for clip in (0.1, 0.09999999, 1.0, 1e-50, 3.39e38, 3.4028235e38, 3.4028236e38, 1e300, float("inf")):
            c = _rounded(clip, _NUMPY_FLOATS[dtype])
            assert int(np.count_nonzero(norms.numpy() > c)) == int((norms > clip).sum()), clip
            with np.errstate(over="ignore", invalid="ignore"):
                np.testing.assert_array_equal(norms.numpy() * c, (norms * clip).numpy())


def test_models_of_one_size_share_one_buffer_and_each_gets_its_own_gradient():
    """K holders' models of one size keep one flat buffer between calls, not K; a
    gradient returned earlier is not overwritten by another model's call."""
    from learningchain.privacy.clipping import PerExampleClipper

    spec = model_spec("mlp", 6, 3, hidden=[4])
    loss = loss_fn(spec)
    torch.manual_seed(7)
    models = [build_model(spec) for _ in range(3)]
    x = torch.randn(10, 6)
    y = torch.randint(0, 3, (10,))
    clippers = [PerExampleClipper(m) for m in models]
    want = [_linear_reference(m, loss, x, y, 0.2, [(0, 10)])[0][0] for m in models]
    got = [c(loss, x, y, clip=0.2)[0] for c in clippers]
    for g, w in zip(got, want):
        assert np.array_equal(g, w)
    assert len({id(c._slots(torch.float32)[0]) for c in clippers}) == 1
    rows = clippers[0].iter_segments(loss, x, y, [(0, 4), (4, 10)], clip=0.2)
    first = next(rows)[0].copy()
    clippers[1](loss, x, y, clip=0.2)  # between two spans of another model's rows
    second = next(rows)[0]
    ref = _linear_reference(models[0], loss, x, y, 0.2, [(0, 4), (4, 10)])
    assert np.array_equal(first, ref[0][0]) and np.array_equal(second, ref[1][0])


def test_overflowing_norms_give_torch_s_numbers_without_warnings():
    """Inputs whose squared norms overflow float32: the same infinities and NaNs as the
    written-out torch operations, and no numpy warning (torch gives none)."""
    import warnings

    from learningchain.privacy.clipping import PerExampleClipper

    torch.manual_seed(8)
    spec = model_spec("mlp", 12, 3, hidden=[5])
    model = build_model(spec)
    loss = loss_fn(spec)
    x = torch.randn(9, 12)
    x[2] *= 1e25  # ||x_2||^2 overflows
    x[5] = 0.0
    y = torch.randint(0, 3, (9,))
    for clip in (0.5, float("inf")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            (g, st), = PerExampleClipper(model).iter_segments(loss, x, y, [(0, 9)], clip=clip)
            want = _linear_reference(model, loss, x, y, clip, [(0, 9)])[0]
        np.testing.assert_array_equal(g, want[0])
        assert st.clipped == want[1]
