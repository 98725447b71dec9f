"""The holder's side of the protocol, Eq. 6 and 9-13, against independent references:
the gradient of the summed loss (a hand-computed logistic gradient), clipping,
the noise law, normalisation and quantisation, and the signature."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from learningchain.crypto import recover_address
from learningchain.errors import ConfigError, InvalidMessage
from learningchain.holder import DataHolder, encode_vector, mechanism_for_round
from learningchain.privacy import GaussianMechanism, L2LaplaceMechanism, NoNoise
from learningchain.protocol.message import validate_message
from learningchain.protocol.quantize import check_unit, quantize_unit, squared_norm, unit_norm_bounds

from .helpers import genesis_for, small_params

INPUTS = 4  # small_params: binary logistic regression on 4 inputs, d = 5 (weights then bias)


def data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, INPUTS))
    y = (rng.random(n) < 0.5).astype(np.int64)
    return x, y


def logistic_gradients(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-example gradients of the logistic loss log(1 + e^z) - y z, z = w[:4] . x + w[4],
    by hand: (sigmoid(z) - y) * (x, 1)."""
    z = x @ w[:INPUTS] + w[INPUTS]
    r = 1.0 / (1.0 + np.exp(-z)) - y
    return np.hstack([x * r[:, None], r[:, None]])


def holder(params, x, y, seed=1, **kw) -> DataHolder:
    return DataHolder(0, x, y, params, rng=np.random.default_rng(seed), dtype=torch.float64, **kw)


def test_local_gradient_is_the_gradient_of_the_summed_loss():
    params = small_params(clip=1e9, batch_size=16)  # all 12 examples, clipping never binds
    x, y = data(12)
    base = genesis_for(params)
    grad, clipped, examples = holder(params, x, y).local_gradient(base)
    want = logistic_gradients(base.model, x, y).sum(axis=0)
    assert (clipped, examples) == (0, 12)
    np.testing.assert_allclose(grad, want, rtol=1e-12, atol=1e-12)


def test_per_example_clipping_scales_each_gradient_to_at_most_g():
    clip = 0.3
    params = small_params(clip=clip, batch_size=16)
    x, y = data(12, seed=2)
    base = genesis_for(params)
    grad, clipped, _ = holder(params, x, y).local_gradient(base)
    per = logistic_gradients(base.model, x, y)
    norms = np.linalg.norm(per, axis=1)
    want = (per / np.maximum(1.0, norms / clip)[:, None]).sum(axis=0)
    np.testing.assert_allclose(grad, want, rtol=1e-10, atol=1e-12)
    assert clipped == int(np.sum(norms > clip)) > 0
    assert np.linalg.norm(grad) <= 12 * clip * (1 + 1e-12)  # sensitivity bound behind Appendix A


def test_total_clipping_bounds_the_summed_gradient_by_g():
    params = small_params(clip=0.3, clip_mode="total", batch_size=16)
    x, y = data(12, seed=3)
    base = genesis_for(params)
    grad, _, _ = holder(params, x, y).local_gradient(base)
    plain = logistic_gradients(base.model, x, y).sum(axis=0)
    np.testing.assert_allclose(grad, plain * (0.3 / np.linalg.norm(plain)), rtol=1e-10)
    assert np.linalg.norm(grad) == pytest.approx(0.3, rel=1e-12)


def test_mechanism_for_round_follows_the_chain_parameters():
    assert isinstance(mechanism_for_round(small_params(), 1), NoNoise)
    lap = mechanism_for_round(small_params(mechanism="l2-laplace", epsilon=2.0, clip=0.5, rounds=10,
                                           schedule="uniform"), 3)
    assert isinstance(lap, L2LaplaceMechanism)
    assert lap.sensitivity == 1.0 and lap.epsilon == pytest.approx(0.2)  # 2G and eps/T
    gauss = mechanism_for_round(small_params(mechanism="gaussian", epsilon=1.0, delta=1e-5, clip=0.5,
                                             noise_multiplier=1.5), 7)
    assert isinstance(gauss, GaussianMechanism) and gauss.sigma == pytest.approx(1.5)  # z * 2G


def test_l2_laplace_noise_radius_is_gamma_d_2g_over_eps():
    """Eq. 10: density ~ exp(-eps ||rho|| / 2G), so ||rho|| ~ Gamma(d, 2G / eps)."""
    eps, clip = 0.5, 0.4
    params = small_params(mechanism="l2-laplace", epsilon=eps, clip=clip)
    x, y = data(4)
    h = holder(params, x, y, seed=11)
    base = genesis_for(params)
    radii = [np.linalg.norm(h.privatize(np.zeros(params.dim), base)) for _ in range(3000)]
    result = stats.kstest(radii, stats.gamma(a=params.dim, scale=2 * clip / eps).cdf)
    assert result.pvalue > 1e-3
    # a wrong scale (sensitivity G instead of 2G) is told apart
    assert stats.kstest(radii, stats.gamma(a=params.dim, scale=clip / eps).cdf).pvalue < 1e-6


def test_gaussian_noise_is_iid_normal_with_sigma_z_times_2g():
    params = small_params(mechanism="gaussian", epsilon=1.0, delta=1e-5, clip=0.25, noise_multiplier=2.0)
    x, y = data(4)
    h = holder(params, x, y, seed=12)
    base = genesis_for(params)
    noise = np.concatenate([h.privatize(np.zeros(params.dim), base) for _ in range(1000)])
    assert stats.kstest(noise, stats.norm(scale=1.0).cdf).pvalue > 1e-3


def test_encode_vector_normalises_and_quantises_within_the_unit_tolerance():
    params = small_params()
    rng = np.random.default_rng(4)
    bits = params.quant_bits
    lo, hi = unit_norm_bounds(bits, params.norm_tol_bits)
    for scale in (1e-6, 1.0, 1e6):
        v = rng.normal(size=params.dim) * scale
        norm, q = encode_vector(v, params)
        assert norm == pytest.approx(math.sqrt(sum(float(a) ** 2 for a in v)), rel=1e-15)  # Eq. 11
        u = v / norm  # Eq. 12
        assert q.dtype == np.int32
        assert np.max(np.abs(q / 2.0**bits - u)) <= 2.0 ** -(bits + 1)  # round to nearest
        assert lo <= squared_norm(q) <= hi


def test_encode_vector_quantises_exactly_as_the_unit_vector_formula():
    """The one-copy scaling v / (||v|| 2**-bits) equals (v / ||v||) * 2**bits bit for bit
    before rounding, so q is quantize_unit(v / ||v||) exactly: at every scale whose norm
    is finite and positive, with components spread over 300 orders of magnitude, and at
    d = 1,000,000."""
    rng = np.random.default_rng(11)
    for dim, scales in ((1000, (1e-160, 1e-150, 1e-6, 1.0, 1e6, 1e150)), (1_000_000, (1.0,))):
        params = small_params(dim=dim)
        bits = params.quant_bits
        cases = [rng.normal(size=dim) * scale for scale in scales]
        if dim == 1000:
            cases.append(rng.normal(size=dim) * np.logspace(-150, 150, dim))
        for v in cases:
            norm, q = encode_vector(v, params)
            assert norm == float(np.sqrt(np.dot(v, v)))
            plain = (v / norm) * 2.0**bits
            assert np.array_equal(v / (norm / 2.0**bits), plain)  # the identity the fast path rests on
            expected = quantize_unit(v / norm, bits)
            assert q.dtype == expected.dtype and np.array_equal(q, expected)


def test_encode_vector_refuses_exactly_what_check_unit_refuses():
    """The holder's own check of q (on the rounded floats) gives check_unit's verdict:
    coarse quantisation (8 bits) of many components leaves ||q|| outside a tight
    tolerance for some vectors and inside it for others."""
    rng = np.random.default_rng(5)
    verdicts = []
    for dim, bits, tol in ((20_000, 8, 6), (20_000, 8, 8), (3, 8, 8), (1000, 20, 10), (400, 10, 4)):
        params = small_params(dim=dim, quant_bits=bits, norm_tol_bits=tol)
        for trial in range(6):
            v = rng.normal(size=dim) if trial % 2 else rng.uniform(-1, 1, size=dim) ** 3
            norm = float(np.sqrt(np.dot(v, v)))
            q = quantize_unit(v / norm, bits)
            try:
                check_unit(q, bits, tol)
                want = None
            except InvalidMessage as exc:
                want = exc.reason
            try:
                _, got_q = encode_vector(v, params)
                got = None
                assert np.array_equal(got_q, q)
            except InvalidMessage as exc:
                got = exc.reason
            assert got == want, (dim, bits, tol, trial)
            verdicts.append(want)
    assert None in verdicts and "not-unit" in verdicts  # both verdicts were exercised


def test_encode_vector_refuses_what_cannot_be_normalised():
    params = small_params()
    with pytest.raises(InvalidMessage):
        encode_vector(np.zeros(params.dim), params)
    with pytest.raises(InvalidMessage):
        encode_vector(np.full(params.dim, np.nan), params)
    with pytest.raises(ConfigError):
        encode_vector(np.ones(params.dim + 1), params)


def test_message_carries_the_noised_gradient_and_is_signed_by_the_holder():
    params = small_params(mechanism="l2-laplace", epsilon=1.0, clip=0.5)
    x, y = data(8)
    base = genesis_for(params)
    h = holder(params, x, y, seed=5)
    report = h.make_message(base)
    msg = report.message
    noisy = report.honest_gradient
    assert (msg.round, msg.base) == (base.height, base.hash)  # Eq. 13 plus the base block
    assert msg.norm == pytest.approx(np.linalg.norm(noisy), rel=1e-15)
    np.testing.assert_allclose(msg.q / 2.0**params.quant_bits, noisy / msg.norm, atol=2.0**-params.quant_bits)
    assert recover_address(msg.signing_digest, msg.signature) == h.key.address == msg.identity
    validate_message(msg, params, round=base.height, base=base.hash)


def test_fresh_identity_signs_each_round_with_a_new_key():
    params = small_params()
    x, y = data(8)
    base = genesis_for(params)
    h = holder(params, x, y, seed=6, fresh_identity=True)
    a, b = h.make_message(base).message, h.make_message(base).message
    assert a.identity != b.identity and h.identities[-2:] == [a.identity, b.identity]
    fixed = holder(params, x, y, seed=6)
    assert fixed.make_message(base).message.identity == fixed.make_message(base).message.identity


def test_fixed_sampling_draws_m_distinct_examples():
    params = small_params(batch_size=5)
    x, y = data(20)
    h = holder(params, x, y, seed=8)
    idx = h.batch_indices()
    assert len(idx) == 5 and len(set(idx.tolist())) == 5
    assert holder(small_params(batch_size=50), x, y).batch_indices() is None  # m >= N: all the data
