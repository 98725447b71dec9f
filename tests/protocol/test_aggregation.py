"""l-nearest (Eq. 14-16) against a slow float reference written separately."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learningchain.errors import ConfigError
from learningchain.protocol.aggregation import Batch, aggregate, compute_cosine_ranking, compute_l_nearest
from learningchain.protocol.quantize import check_unit, quantize_unit

from ..helpers import small_params

BITS = 20


def make_batch(vectors, rng=None, keys=None):
    q = np.stack([quantize_unit(v / np.linalg.norm(v), BITS) for v in vectors])
    norms = np.array([float(np.linalg.norm(v)) for v in vectors])
    if keys is None:
        keys = tuple(bytes([i]) * 32 for i in range(len(vectors)))
    return Batch(q, norms, tuple(keys), BITS)


def reference_l_nearest(batch, l, m):
    """The paper's formulas in plain Python floats, one message at a time."""
    units = [[int(x) / 2**BITS for x in row] for row in batch.q]
    d = len(units[0])
    vs = [sum(u[i] for u in units) for i in range(d)]  # Eq. 14
    nvs = math.sqrt(sum(x * x for x in vs))
    cos = []
    for k, u in enumerate(units):  # Eq. 15
        nu = math.sqrt(sum(x * x for x in u))
        dot = sum(a * b for a, b in zip(vs, u))
        cos.append(dot / (nvs * nu) if nvs > 0 else 0.0)
    order = sorted(range(len(units)), key=lambda k: (-cos[k], batch.keys[k]))
    chosen = sorted(order[: min(l, len(units))])
    grad = [sum(batch.norms[k] * units[k][i] for k in chosen) / (len(chosen) * m) for i in range(d)]  # Eq. 16
    return tuple(chosen), np.array(grad)


@pytest.mark.parametrize("seed", range(8))
def test_l_nearest_matches_the_float_reference(seed):
    rng = np.random.default_rng(seed)
    k, d = int(rng.integers(3, 40)), int(rng.integers(2, 60))
    honest = [np.ones(d) + rng.normal(scale=0.8, size=d) for _ in range(k)]
    byz = [rng.normal(scale=200, size=d) for _ in range(k // 3)]
    batch = make_batch(honest + byz)
    params = small_params(dim=d, holders=len(honest + byz), batch_size=7,
                          model={"kind": "logistic", "inputs": d - 1, "classes": 2})
    got = aggregate(batch, params)
    want_sel, want_grad = reference_l_nearest(batch, params.l, params.batch_size)
    assert got.selection == want_sel
    np.testing.assert_allclose(got.gradient, want_grad, rtol=1e-12, atol=1e-15)


def test_default_l_is_half_the_holders_rounded_up():
    assert small_params(holders=7).l == 4
    assert small_params(holders=30).l == 15
    assert small_params(holders=30, aggregator_options={"l": 9}).l == 9


def test_gaussian_byzantine_vectors_are_not_selected():
    rng = np.random.default_rng(0)
    honest = [np.ones(10) + 0.1 * rng.normal(size=10) for _ in range(20)]
    byz = [rng.normal(scale=200, size=10) for _ in range(9)]
    batch = make_batch(honest + byz)
    chosen = compute_l_nearest(batch, 15)
    assert all(i < 20 for i in chosen)


def test_ties_break_toward_the_lower_message_hash():
    v = np.array([1.0, 2.0, 3.0])
    keys = [b"\x09" * 32, b"\x01" * 32, b"\x05" * 32]
    batch = make_batch([v, v, v], keys=keys)
    assert compute_cosine_ranking(batch) == [1, 2, 0]
    assert compute_l_nearest(batch, 2) == (1, 2)


def test_exactly_tied_cosines_break_by_hash_after_the_nearest():
    # Integer cosine keys: the mirror images a and b tie exactly, the axis
    # vector is strictly nearer the sum than both.
    base = np.array([2**BITS, 0, 0], dtype=np.int32)
    a = np.array([2**BITS - 1, 1448, 0], dtype=np.int32)
    b = np.array([2**BITS - 1, 0, 1448], dtype=np.int32)
    q = np.stack([base, a, b])
    batch = Batch(q, np.ones(3), (b"\x03" * 32, b"\x02" * 32, b"\x01" * 32), BITS)
    ranking = compute_cosine_ranking(batch)
    assert ranking[0] == 0
    # a and b are mirror images: exactly tied, so the lower hash (b) comes first
    assert ranking[1:] == [2, 1]


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 25), st.integers(1, 30), st.integers(0, 2**32 - 1))
def test_selection_does_not_depend_on_row_order(k, d, seed):
    rng = np.random.default_rng(seed)
    vecs = [rng.normal(size=d) + 0.5 for _ in range(k)]
    keys = [bytes(rng.integers(0, 256, 32, dtype=np.uint8)) for _ in range(k)]
    batch = make_batch(vecs, keys=keys)
    perm = rng.permutation(k)
    shuffled = Batch(batch.q[perm], batch.norms[perm], tuple(batch.keys[i] for i in perm), BITS)
    l = max(1, k // 2)
    pick = {batch.keys[i] for i in compute_l_nearest(batch, l)}
    pick2 = {shuffled.keys[i] for i in compute_l_nearest(shuffled, l)}
    assert pick == pick2


def test_mean_rule_selects_everything():
    rng = np.random.default_rng(2)
    batch = make_batch([rng.normal(size=4) for _ in range(5)])
    params = small_params(dim=4, aggregator="mean", model={"kind": "logistic", "inputs": 3, "classes": 2})
    agg = aggregate(batch, params)
    assert agg.selection == (0, 1, 2, 3, 4)
    want = sum(batch.norms[i] * batch.q[i] / 2**BITS for i in range(5)) / (5 * params.batch_size)
    np.testing.assert_allclose(agg.gradient, want, rtol=1e-12)


def test_unknown_rule_and_option_are_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match="known: .*l-nearest"):
        small_params(aggregator="nope")
    with pytest.raises(ConfigError, match="has no option 'k'"):
        small_params(aggregator_options={"k": 3})
    with pytest.raises(ConfigError, match="must be int"):
        small_params(aggregator_options={"l": 2.5})


def test_quantised_unit_vectors_pass_the_unit_check():
    rng = np.random.default_rng(11)
    for d in (1, 10, 7850):
        v = rng.normal(size=d)
        q = quantize_unit(v / np.linalg.norm(v), BITS)
        check_unit(q, BITS, 10)


def _qf_terms(batch):
    """The cosine terms from a whole float64 copy of the batch (the old path), as exact ints."""
    qf = batch.q.astype(np.float64)
    v = np.ones(batch.n) @ qf
    return [int(x) for x in qf @ v]


@pytest.mark.parametrize("chunked", [True, False])
@pytest.mark.parametrize("dtype, bits", [(np.int32, 24), (np.int32, 20), (np.int16, 14)])
def test_l_nearest_makes_no_float_copy_of_a_large_batch_and_its_terms_are_exact(monkeypatch, dtype, bits, chunked):
    # aligned rows at a scale whose 11 messages stay within max_exact_messages; a large
    # batch (here: any) is converted 3 rows at a time, a small one whole
    from learningchain.protocol.aggregation import exact

    monkeypatch.setattr(exact, "_ROW_CHUNK_BYTES", 8 * 3 * 257)  # 3 rows of 257 at a time, then the rest
    monkeypatch.setattr(exact, "_WHOLE_COPY_ENTRIES", 0 if chunked else 10**9)
    rng = np.random.default_rng(5)
    d, n = 257, 11
    units = rng.normal(size=(n, d)) + 3.0
    q = np.stack([quantize_unit(u / np.linalg.norm(u), bits) for u in units]).astype(dtype)
    batch = Batch(q, np.linspace(0.5, 2.0, n), tuple(bytes([i]) * 32 for i in range(n)), bits)
    a, n2 = exact._cosine_terms(batch)  # ||q_k||^2 computed too: the batch carries none
    assert ("qf" not in batch.__dict__) == chunked  # no (n, d) float64 copy of a large batch
    ints = [[int(x) for x in row] for row in q]
    vs = [sum(col) for col in zip(*ints)]
    want = [sum(x * y for x, y in zip(row, vs)) for row in ints]  # Python integers: exact
    assert [int(x) for x in a] == want == _qf_terms(batch)
    assert [int(x) for x in n2] == [sum(x * x for x in row) for row in ints]
    params = small_params(dim=d, holders=n, batch_size=7, quant_bits=bits, max_messages=n,
                          model={"kind": "logistic", "inputs": d - 1, "classes": 2})
    got = aggregate(batch, params)
    assert ("qf" not in batch.__dict__) == chunked
    # the same bits as the old path's rows of the float64 copy
    qf = q.astype(np.float64)
    acc = np.zeros(d)
    for i in got.selection:
        acc += qf[i] * (float(batch.norms[i]) * batch.scale)
    np.testing.assert_array_equal(got.gradient, acc / float(len(got.selection) * params.batch_size))
