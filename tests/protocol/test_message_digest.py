"""A signed message's digest, encoding and id are computed in one pass over its body
and equal those recomputed from its fields."""

import numpy as np
import pytest

from learningchain.crypto import PrivateKey, keccak256
from learningchain.protocol.message import Message, decode_message, sign_message


def test_the_digest_and_encoding_seeded_at_signing_are_those_of_the_fields():
    rng = np.random.default_rng(5)
    key = PrivateKey.generate(rng)
    q = rng.integers(-(1 << 20), 1 << 20, size=1000).astype(np.int32)
    msg = sign_message(key, round=7, base=b"\x11" * 32, norm=2.5, q=q)
    assert {"encoding", "signing_digest"} <= set(vars(msg))  # seeded, not recomputed
    fresh = Message(msg.identity, msg.round, msg.base, msg.norm, msg.q, msg.signature)  # nothing cached
    assert msg.encoding == fresh.encoding == fresh.body_bytes() + fresh.signature
    assert msg.signing_digest == fresh.signing_digest
    assert msg.signing_digest == keccak256(b"\x19LearningChain message v1\n" + fresh.body_bytes())
    assert msg.hash == fresh.hash == decode_message(msg.encoding, max_dim=1000).hash


def _buffer_of(arr):
    """The object at the bottom of a numpy view chain."""
    while isinstance(arr, np.ndarray) and arr.base is not None:
        arr = arr.base
    return arr


def test_a_message_keeps_its_gradient_once_as_a_view_into_its_encoding():
    rng = np.random.default_rng(6)
    key = PrivateKey.generate(rng)
    q = rng.integers(-(1 << 20), 1 << 20, size=999).astype(np.int32)
    signed = sign_message(key, round=3, base=b"\x22" * 32, norm=1.5, q=q)
    built = Message(signed.identity, signed.round, signed.base, signed.norm, q.astype(np.int64), signed.signature)
    decoded = decode_message(bytearray(signed.encoding), max_dim=999)
    for msg in (signed, built, decoded):
        assert _buffer_of(msg.q) is msg.encoding  # one copy of the gradient: the encoding's bytes
        assert np.shares_memory(msg.q, np.frombuffer(msg.encoding, np.uint8))
        assert msg.q.dtype == np.int32 and msg.q.shape == (999,) and not msg.q.flags.writeable
        assert np.array_equal(msg.q, q) and msg.dim == 999
        assert msg.encoding == signed.encoding and msg.hash == signed.hash
        assert msg.sq_norm == int(np.dot(q.astype(np.int64), q.astype(np.int64)))
    assert not np.shares_memory(signed.q, q)  # the caller's array is not kept (nor changed through)
    with pytest.raises(ValueError):
        signed.q[0] = 1


def test_a_message_with_an_empty_gradient_or_a_2d_array():
    key = PrivateKey.generate(np.random.default_rng(7))
    empty = sign_message(key, round=0, base=b"\x00" * 32, norm=1.0, q=np.zeros(0, np.int32))
    assert empty.dim == 0 and decode_message(empty.encoding, max_dim=1).encoding == empty.encoding
    with pytest.raises(ValueError, match="1-D"):
        Message(empty.identity, 0, empty.base, 1.0, np.zeros((2, 2), np.int32), empty.signature)
