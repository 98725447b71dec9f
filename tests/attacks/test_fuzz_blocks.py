"""No bytes crash a node: every bad block is refused with a clear error, the store unchanged."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from learningchain.errors import DecodeError, InvalidBlock
from learningchain.node import Node

from ..helpers import genesis_for, honest_vectors, make_keys, message_for, small_params

PARAMS = small_params()
GENESIS = genesis_for(PARAMS)
_node = Node(GENESIS)
_keys = make_keys(4)
_msgs = [message_for(k, PARAMS, GENESIS, v) for k, v in zip(_keys, honest_vectors(PARAMS, 4, np.random.default_rng(0)))]
for _m in _msgs:
    _node.on_message(_m)
VALID = _node.seal(_node.template(timestamp=5000))
RAW = VALID.encode()


def refuses_cleanly(raw: bytes) -> None:
    node = Node(GENESIS)
    before = (node.head_hash, dict(node.headers))
    try:
        out = node.on_block(raw)
    except (DecodeError, InvalidBlock) as exc:
        assert str(exc)
    else:
        if raw != RAW:  # a mutation that still decodes to an acceptable block must be the same block
            assert out.status in ("accepted", "orphan", "known")
            if out.status == "accepted":
                assert node.store.get(out.block_hash).encode() == raw
            return
    after = (node.head_hash, dict(node.headers))
    assert before == after and node.store.get(VALID.hash) is None or raw == RAW


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes_never_crash_a_node(raw):
    refuses_cleanly(raw)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(RAW) - 1), st.integers(1, 255)), min_size=1, max_size=4))
def test_mutated_valid_blocks_are_refused_or_identical(flips):
    raw = bytearray(RAW)
    for pos, x in flips:
        raw[pos] ^= x
    refuses_cleanly(bytes(raw))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(RAW)), st.binary(min_size=1, max_size=40))
def test_truncated_or_extended_blocks_are_refused(cut, extra):
    refuses_cleanly(RAW[:cut])
    refuses_cleanly(RAW + extra)


def test_the_valid_block_itself_is_accepted():
    assert Node(GENESIS).on_block(RAW).status == "accepted"
