"""The fixed-point twin against exact rational arithmetic and the native float update."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learningchain.errors import ConfigError, InvalidMessage
from learningchain.ethereum import fixedpoint as fp
from learningchain.protocol.quantize import quantize_unit


@given(st.integers(-2**200, 2**200), st.integers(1, 2**120))
def test_rdiv_rounds_to_nearest_with_ties_away_from_zero(x, y):
    exact = Fraction(x, y)
    r = fp.rdiv(x, y)
    assert abs(exact - r) <= Fraction(1, 2)
    if abs(exact - r) == Fraction(1, 2):
        assert abs(r) > abs(exact)


@settings(max_examples=50)
@given(st.lists(st.integers(-2**31, 2**31 - 1), min_size=1, max_size=40))
def test_pack_then_unpack_is_the_identity(values):
    q = np.array(values, dtype=np.int32)
    packed = fp.pack_q(q)
    assert len(packed) == 32 * fp.words_for(len(values))
    assert np.array_equal(fp.unpack_q(packed, len(values)), q)


def test_packing_puts_lane_j_at_bits_32j_with_offset_2_31():
    q = np.array([1, -1, 0, 5, 7, 8, 9, 10, -3], dtype=np.int32)
    packed = fp.pack_q(q)
    word0 = int.from_bytes(packed[:32], "big")
    for j in range(8):
        assert (word0 >> (32 * j)) & 0xFFFFFFFF == int(q[j]) + 2**31
    word1 = int.from_bytes(packed[32:], "big")
    assert word1 & 0xFFFFFFFF == 2**31 - 3
    assert all((word1 >> (32 * j)) & 0xFFFFFFFF == 2**31 for j in range(1, 8))  # padding encodes 0
    with pytest.raises(ConfigError, match="padding"):
        fp.unpack_q(packed[:32] + b"\x01" + packed[33:], 9)  # the top lane of word 1 lies past d


def test_norms_outside_the_contract_range_are_refused():
    assert fp.encode_norm(1.0) == 2**32
    for bad in (0.0, 2.0**32, float("inf")):
        with pytest.raises((InvalidMessage, ConfigError)):
            fp.encode_norm(bad)


def test_tie_key_is_keccak_of_the_abi_encoding():
    from Crypto.Hash import keccak

    sender = bytes(range(20))
    want = keccak.new(digest_bits=256, data=(7).to_bytes(32, "big") + b"\0" * 12 + sender).digest()
    assert fp.tie_key(7, sender) == want


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 30), st.integers(1, 9), st.integers(1, 500),
       st.sampled_from([0.05, 0.5, 2.0]), st.sampled_from([0.0, 0.01, 1.0]))
def test_fixed_update_equals_exact_rational_update_up_to_its_roundings(seed, d, k, m, lr, lam):
    rng = np.random.default_rng(seed)
    q = np.stack([quantize_unit(v / np.linalg.norm(v), 20) for v in rng.normal(size=(k, d))])
    norms = [int(s) for s in rng.integers(1, 2**40, size=k)]
    sel = sorted(rng.choice(k, size=rng.integers(1, k + 1), replace=False).tolist())
    W = fp.encode_model(rng.normal(size=d) * 3)
    LR, LAM = fp.encode_rate(lr), fp.encode_rate(lam)
    got = fp.fixed_update(W, q, norms, sel, batch_size=m, lr=LR, lam=LAM, quant_bits=20)
    for i in range(d):
        A = sum(Fraction(norms[j]) * int(q[j, i]) for j in sel)
        g = A * 2**40 / (Fraction(2**52) * len(sel) * m)
        exact = W[i] - Fraction(LR, 2**32) * (g + Fraction(LAM, 2**32) * W[i])
        # g and decay are each within 1/2 of exact, their sum is scaled by LR / 2^32,
        # and the last division adds at most 1/2
        assert abs(got[i] - exact) <= Fraction(1, 2) + Fraction(LR, 2**32)
