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
