"""A signed message's digest, encoding and id are computed in one pass over its body
and equal those recomputed from its fields."""

import numpy as np

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
