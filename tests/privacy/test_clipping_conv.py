"""Clipping of convolutions: per-example gradients as the weight gradient of a grouped
convolution, ghost norms where they are cheaper, each against the slow obvious version
(one backward pass per example)."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from learningchain.privacy import clipped_gradient_sum
from learningchain.privacy.clipping import PerExampleClipper, _conv_per_example, _use_ghost


def _conv_per_example_unfold(conv, a, d):
    """Per-example weight gradients of a one-group, zero-padded convolution from its
    unfolded inputs: the obvious reference, (B, O, C*kh*kw)."""
    cols = F.unfold(a, conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride)
    return torch.einsum("bop,bkp->bok", d.reshape(d.shape[0], d.shape[1], -1), cols)


class ConvNet(nn.Module):
    """Convolutions of several shapes: a large map (per-example gradients), stride,
    dilation and uneven padding, and small maps with many channels (ghost norms)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 3, 3, stride=2, padding=(1, 0), dilation=(1, 2))  # 4x2 maps
        self.c3 = nn.Conv2d(3, 24, 3, padding=(1, 2), bias=False)  # 2x3 maps: ghost
        self.c4 = nn.Conv2d(24, 32, 2)  # 1x2 maps: ghost
        self.fc = nn.Linear(32 * 1 * 2, 3)

    def forward(self, x):
        x = x.reshape(-1, 2, 8, 8)
        x = torch.tanh(self.c1(x))
        x = torch.tanh(self.c2(x))
        x = F.max_pool2d(x, 2, ceil_mode=True)
        x = torch.tanh(self.c3(x))
        x = torch.tanh(self.c4(x))
        return self.fc(x.flatten(1))


def _loss(out, y):
    return F.cross_entropy(out, y, reduction="none")


def _slow_clipped_sum(model, x, y, clip):
    params = list(model.parameters())
    total = None
    norms = []
    for i in range(x.shape[0]):
        g = torch.autograd.grad(_loss(model(x[i:i + 1]), y[i:i + 1]).sum(), params)
        flat = torch.cat([t.reshape(-1) for t in g]).double()
        norm = float(flat.norm())
        norms.append(norm)
        flat = flat / max(1.0, norm / clip)
        total = flat if total is None else total + flat
    return total.numpy(), norms


def test_the_net_takes_both_paths():
    model = ConvNet()
    clipper = PerExampleClipper(model)
    assert clipper.supported
    shapes = {"c1": (8, 8), "c2": (4, 2), "c3": (2, 3), "c4": (1, 2)}
    taken = {name: _use_ghost(getattr(model, name), torch.zeros(1, 1, *shapes[name])) for name in shapes}
    assert taken == {"c1": False, "c2": False, "c3": True, "c4": True}


@pytest.mark.parametrize("clip", [0.05, 1.0, 1e6])
def test_clipped_sum_of_convolutions_matches_one_backward_per_example(clip):
    torch.manual_seed(1)
    model = ConvNet().double()
    x = torch.randn(7, 128, dtype=torch.float64)
    y = torch.randint(0, 3, (7,))
    got, stats = clipped_gradient_sum(model, _loss, x, y, clip=clip)
    want, norms = _slow_clipped_sum(model, x, y, clip)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert stats.clipped == sum(n > clip for n in norms)
    assert stats.mean_norm == pytest.approx(np.mean(norms), rel=1e-9)


def test_segments_of_convolutions_match_separate_calls():
    torch.manual_seed(2)
    model = ConvNet().double()
    x = torch.randn(9, 128, dtype=torch.float64)
    y = torch.randint(0, 3, (9,))
    spans = [(0, 4), (4, 5), (5, 9)]
    grads, _ = PerExampleClipper(model).segments(_loss, x, y, spans, clip=0.1)
    for row, (lo, hi) in enumerate(spans):
        want, _ = _slow_clipped_sum(model, x[lo:hi], y[lo:hi], 0.1)
        np.testing.assert_allclose(grads[row], want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("stride,dilation,padding", [(1, 1, 2), (2, 1, 1), (1, 2, (0, 3)), (3, (2, 1), (1, 2))])
def test_grouped_per_example_gradients_equal_the_unfolded_ones(stride, dilation, padding):
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 5, (3, 2), stride=stride, dilation=dilation, padding=padding).double()
    a = torch.randn(4, 3, 11, 9, dtype=torch.float64)
    d = torch.randn_like(conv(a))
    grouped = _conv_per_example(conv, a, d)
    assert grouped.shape == (4, 5, 3 * 3 * 2)
    torch.testing.assert_close(grouped, _conv_per_example_unfold(conv, a, d), rtol=1e-10, atol=1e-10)
    # and each is the weight gradient of its own example
    for i in range(4):
        w = torch.nn.grad.conv2d_weight(a[i:i + 1], conv.weight.shape, d[i:i + 1], stride=conv.stride,
                                        padding=conv.padding, dilation=conv.dilation)
        torch.testing.assert_close(grouped[i].reshape(conv.weight.shape), w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("options", [
    dict(padding=1, padding_mode="reflect"),
    dict(padding=(2, 1), padding_mode="circular"),
    dict(padding=1, padding_mode="replicate"),
    dict(padding=1, groups=2),
    dict(padding="same", dilation=2),
    dict(padding="valid", stride=2, groups=2),
])
def test_clipped_sum_of_other_paddings_and_groups_matches_one_backward_per_example(options):
    """Padding modes other than zeros, "same"/"valid" padding and grouped convolutions:
    per-example gradients of the layer as its forward computes it."""
    torch.manual_seed(4)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(2, 4, 3, **options)
            self.fc = nn.Linear(4 * self.c(torch.zeros(1, 2, 8, 8)).shape[2:].numel(), 3)

        def forward(self, x):
            return self.fc(torch.tanh(self.c(x.reshape(-1, 2, 8, 8))).flatten(1))

    model = Net().double()
    x = torch.randn(5, 128, dtype=torch.float64)
    y = torch.randint(0, 3, (5,))
    for clip in (0.1, 1e6):
        got, stats = clipped_gradient_sum(model, _loss, x, y, clip=clip)
        want, norms = _slow_clipped_sum(model, x, y, clip)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        assert stats.clipped == sum(n > clip for n in norms)
