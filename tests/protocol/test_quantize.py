import numpy as np
import pytest

from learningchain.errors import InvalidMessage
from learningchain.protocol.quantize import check_unit, max_exact_messages, squared_norm, unit_limit, unit_norm_bounds


def test_bounds_are_the_stated_relative_tolerance():
    lo, hi = unit_norm_bounds(20, 10)
    assert lo == (1023 * 2**10) ** 2 and hi == (1025 * 2**10) ** 2


def test_vectors_outside_the_tolerance_are_refused():
    q = np.full(4, int(2**20 * 1.01 / 2), dtype=np.int32)  # norm 1.01, every component small
    with pytest.raises(InvalidMessage, match="norm 1.01"):
        check_unit(q, 20, 10)
    with pytest.raises(InvalidMessage):
        check_unit(np.zeros(3, dtype=np.int32), 20, 10)


def test_huge_components_are_refused_before_they_can_overflow():
    q = np.array([2**31 - 1, 2**31 - 1, 0], dtype=np.int32)
    with pytest.raises(InvalidMessage, match="component"):
        check_unit(q, 20, 10)


@pytest.mark.parametrize("dtype", [np.int32, np.int16])
def test_the_most_negative_entry_is_refused_without_wrapping(dtype):
    low = np.iinfo(dtype).min  # -low does not fit the dtype: the bound is checked on Python ints
    q = np.zeros(8, dtype=dtype)
    q[3] = low
    with pytest.raises(InvalidMessage, match="component"):
        check_unit(q, 14 if dtype == np.int16 else 20, 10)


def test_squared_norm_is_exact():
    q = np.array([2**20, -3, 5], dtype=np.int32)
    assert squared_norm(q) == 2**40 + 9 + 25


def test_exactness_bound_keeps_sum_dot_products_below_2_53():
    n = max_exact_messages(20, 10)
    _, hi = unit_norm_bounds(20, 10)
    assert n * hi < 2**53 <= (n + 1) * hi


def _python_sq(q) -> int:
    return sum(int(x) * int(x) for x in q.tolist())


@pytest.mark.parametrize("dtype", [np.int32, np.int16])
def test_squared_norm_is_exact_for_every_integer_vector(dtype):
    """Python ints are the reference: extreme entries and lengths whose sum of squares
    is far beyond int64 (2**31 squared, thousands of times)."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(3)
    cases = [np.full(5000, info.min, dtype), np.full(5000, info.max, dtype),
             rng.integers(info.min, info.max, 20000, endpoint=True).astype(dtype),
             rng.integers(-2**21, 2**21, 20000).astype(dtype) if dtype == np.int32 else np.zeros(3, dtype),
             np.array([info.min, info.max, -1, 0, 1], dtype), np.zeros(0, dtype)]
    for q in cases:
        assert squared_norm(q) == _python_sq(q)
        m = max(int(q.max()), -int(q.min())) if q.size else 0
        assert squared_norm(q, max_abs=m) == _python_sq(q)


@pytest.mark.parametrize("bits", [8, 14, 20, 21, 24, 26])
def test_squared_norm_is_exact_at_every_accepted_scale_and_the_largest_dimension(bits):
    """Every component at the unit bound (the largest a vector that passes the component
    check can have), signs alternating, at params.MAX_DIM entries."""
    from learningchain.protocol.params import MAX_DIM
    limit = unit_limit(bits, 4)  # the loosest tolerance: the largest bound
    q = np.full(MAX_DIM, limit, dtype=np.int32)
    q[::2] = -limit
    assert squared_norm(q) == MAX_DIM * limit * limit
    q[7] = 3
    assert squared_norm(q) == (MAX_DIM - 1) * limit * limit + 9


def _wrapping_vector(bits, tol, dim):
    """Components within the unit bound whose sum of squares is 2**64 + 2**(2 bits): in
    int64 it wraps to exactly the unit norm. The true norm is about 2**32 / 2**bits units."""
    import math
    limit = unit_limit(bits, tol)
    target = (1 << 64) + (1 << (2 * bits))
    k = target // (limit * limit)
    c = math.isqrt(target - k * limit * limit)
    assert k + 1 <= dim
    q = np.zeros(dim, dtype=np.int32)
    q[:k], q[k] = -limit, -c
    return q, k * limit * limit + c * c


def test_a_sum_of_squares_beyond_int64_is_not_taken_for_a_unit_norm():
    bits, tol, dim = 24, 10, 1 << 16
    q, true_sq = _wrapping_vector(bits, tol, dim)
    lo, hi = unit_norm_bounds(bits, tol)
    assert lo <= true_sq - (1 << 64) <= hi  # what a wrapping int64 sum would see
    assert squared_norm(q) == true_sq == _python_sq(q)
    with pytest.raises(InvalidMessage, match="not-unit"):
        check_unit(q, bits, tol)


def test_a_node_refuses_a_message_whose_norm_wraps_int64():
    """The whole path: a chain whose genesis accepts quant_bits=24 at d=2**16, a signed
    message with the crafted vector, validate_message and Node.on_message."""
    from learningchain.node import Node
    from learningchain.protocol import sign_message, validate_message

    from ..helpers import genesis_for, make_keys, small_params
    bits, tol, dim = 24, 10, 1 << 16
    params = small_params(dim=dim, quant_bits=bits, norm_tol_bits=tol,
                          max_messages=min(16, max_exact_messages(bits, tol)), difficulty=2)
    genesis = genesis_for(params)
    q, _ = _wrapping_vector(bits, tol, dim)
    msg = sign_message(make_keys(1, seed=666)[0], round=0, base=genesis.hash, norm=1.0, q=q)
    with pytest.raises(InvalidMessage, match="not-unit"):
        validate_message(msg, params, round=0, base=genesis.hash)
    node = Node(genesis)
    with pytest.raises(InvalidMessage, match="not-unit"):
        node.on_message(msg)
    assert node.mempool.count(genesis.hash) == 0
    assert msg.sq_norm == _python_sq(q)


def test_validate_message_keeps_the_exact_sq_norm():
    from learningchain.protocol import validate_message

    from ..helpers import genesis_for, make_keys, message_for, small_params
    params = small_params()
    genesis = genesis_for(params)
    msg = message_for(make_keys(1)[0], params, genesis, [1.0, -2.0, 0.5, 3.0, 0.1])
    assert "sq_norm" not in msg.__dict__
    validate_message(msg, params, round=0, base=genesis.hash)
    assert msg.__dict__["sq_norm"] == _python_sq(msg.q)
