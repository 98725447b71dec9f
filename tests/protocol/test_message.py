"""Messages: canonical encoding, strict decoding and validation with clear errors."""

import struct

import numpy as np
import pytest

from learningchain.crypto import PrivateKey
from learningchain.errors import DecodeError, InvalidMessage
from learningchain.node import Node
from learningchain.protocol import decode_message, sign_message, validate_message
from learningchain.protocol.message import Message

from ..helpers import genesis_for, make_keys, message_for, small_params


@pytest.fixture
def setup():
    params = small_params()
    genesis = genesis_for(params)
    keys = make_keys(3)
    msg = message_for(keys[0], params, genesis, [1.0, -2.0, 0.5, 3.0, 0.1])
    return params, genesis, keys, msg


def test_encode_decode_round_trip_is_byte_exact(setup):
    params, genesis, _, msg = setup
    raw = msg.encode()
    back = decode_message(raw, max_dim=params.dim)
    assert back == msg and back.encode() == raw and back.hash == msg.hash
    assert np.array_equal(back.q, msg.q) and back.norm == msg.norm


def test_valid_message_passes(setup):
    params, genesis, _, msg = setup
    validate_message(msg, params, round=0, base=genesis.hash)


@pytest.mark.parametrize("cut", [0, 1, 20, 60, -1])
def test_truncated_message_is_refused(setup, cut):
    params, _, _, msg = setup
    raw = msg.encode()[:cut]
    with pytest.raises(DecodeError, match="truncated|expected"):
        decode_message(raw, max_dim=params.dim)


def test_trailing_bytes_are_refused(setup):
    params, _, _, msg = setup
    with pytest.raises(DecodeError, match="trailing"):
        decode_message(msg.encode() + b"\x00", max_dim=params.dim + 10)


def test_unknown_version_is_refused(setup):
    params, _, _, msg = setup
    with pytest.raises(DecodeError, match="version 9"):
        decode_message(b"\x09" + msg.encode()[1:], max_dim=params.dim)


def test_oversized_message_is_refused_before_parsing(setup):
    params, _, _, msg = setup
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode_message(msg.encode() + b"\x00" * 10_000, max_dim=params.dim)


def test_wrong_shape_is_refused(setup):
    params, genesis, keys, _ = setup
    other = small_params(dim=3, model={"kind": "logistic", "inputs": 2, "classes": 2})
    short = message_for(keys[1], other, genesis, [1.0, 2.0, 3.0])
    decoded = decode_message(short.encode(), max_dim=params.dim)
    with pytest.raises(InvalidMessage, match="3 entries, the model has 5") as info:
        validate_message(decoded, params)
    assert info.value.reason == "wrong-shape"
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode_message(msg_with_dim(keys[1], genesis, 9), max_dim=3)


def msg_with_dim(key, genesis, d):
    v = np.zeros(d)
    v[0] = 1
    q = (v * 2**20).astype(np.int32)
    return sign_message(key, round=0, base=genesis.hash, norm=1.0, q=q).encode()


def test_nan_norm_is_refused_at_decoding(setup):
    params, _, _, msg = setup
    raw = bytearray(msg.encode())
    raw[61:69] = struct.pack("<d", float("nan"))
    with pytest.raises(DecodeError, match="norm is not finite"):
        decode_message(bytes(raw), max_dim=params.dim)


def test_unsigned_message_is_refused(setup):
    params, genesis, _, msg = setup
    unsigned = Message(msg.identity, msg.round, msg.base, msg.norm, msg.q, b"\x00" * 65)
    with pytest.raises(InvalidMessage) as info:
        validate_message(unsigned, params)
    assert info.value.reason == "bad-signature"


def test_tampered_gradient_breaks_the_signature(setup):
    params, genesis, _, msg = setup
    q = msg.q.copy()
    q[0], q[1] = msg.q[1], msg.q[0]  # still a unit vector
    forged = Message(msg.identity, msg.round, msg.base, msg.norm, q, msg.signature)
    with pytest.raises(InvalidMessage, match="claims identity") as info:
        validate_message(forged, params)
    assert info.value.reason == "bad-signature"


def test_message_signed_by_another_key_is_refused(setup):
    params, genesis, keys, msg = setup
    by_other = sign_message(keys[1], round=msg.round, base=msg.base, norm=msg.norm, q=msg.q)
    stolen = Message(keys[0].address, msg.round, msg.base, msg.norm, msg.q, by_other.signature)
    with pytest.raises(InvalidMessage, match="signed by"):
        validate_message(stolen, params)


def test_non_unit_vector_is_refused(setup):
    params, genesis, keys, _ = setup
    q = np.array([2**21, 0, 0, 0, 0], dtype=np.int32)
    msg = sign_message(keys[0], round=0, base=genesis.hash, norm=1.0, q=q)
    with pytest.raises(InvalidMessage) as info:
        validate_message(msg, params)
    assert info.value.reason == "not-unit"


def test_wrong_round_is_refused(setup):
    params, genesis, keys, _ = setup
    msg = sign_message(keys[0], round=5, base=genesis.hash, norm=1.0, q=np.array([2**20, 0, 0, 0, 0], np.int32))
    with pytest.raises(InvalidMessage, match="round 5, expected round 0") as info:
        validate_message(msg, params, round=0, base=genesis.hash)
    assert info.value.reason == "wrong-round"
    node = Node(genesis)
    with pytest.raises(InvalidMessage, match="round 5"):
        node.on_message(msg)


def test_message_for_unknown_block_is_refused_by_a_node(setup):
    params, genesis, keys, _ = setup
    msg = sign_message(keys[0], round=0, base=b"\x11" * 32, norm=1.0, q=np.array([2**20, 0, 0, 0, 0], np.int32))
    with pytest.raises(InvalidMessage, match="unknown here") as info:
        Node(genesis).on_message(msg)
    assert info.value.reason == "unknown-base"


def test_replayed_message_is_admitted_once_and_a_second_one_from_the_same_identity_refused(setup):
    params, genesis, keys, msg = setup
    node = Node(genesis)
    node.on_message(msg.encode())
    node.on_message(msg.encode())  # the same bytes again: a no-op
    assert node.mempool.count(genesis.hash) == 1
    second = message_for(keys[0], params, genesis, [0.0, 1.0, 0.0, 0.0, 0.0])
    with pytest.raises(InvalidMessage, match="already sent") as info:
        node.on_message(second)
    assert info.value.reason == "duplicate-identity"


def test_replay_of_an_old_round_is_refused_after_the_chain_moves(setup):
    from ..helpers import mine_block

    params, genesis, keys, msg = setup
    node = Node(genesis)
    block = mine_block(node, [msg])
    node.on_block(block)
    assert node.height == 1
    fresh = Node(genesis)
    fresh.on_block(block)
    replay = Message(msg.identity, 1, block.hash, msg.norm, msg.q, msg.signature)  # relabelled for round 1
    with pytest.raises(InvalidMessage) as info:
        fresh.on_message(replay)
    assert info.value.reason == "bad-signature"


def test_garbage_bytes_to_a_node_raise_decode_error_and_count(setup):
    params, genesis, _, _ = setup
    node = Node(genesis)
    with pytest.raises(DecodeError):
        node.on_message(b"\x01\x02garbage")
    with pytest.raises(DecodeError):
        node.on_message("not bytes")
    assert node.rejected_messages["malformed"] == 2


def test_holder_cannot_sign_a_zero_or_infinite_norm():
    key = PrivateKey.generate(np.random.default_rng(1))
    for bad in (0.0, float("inf"), float("nan")):
        with pytest.raises(InvalidMessage):
            sign_message(key, round=0, base=b"\x00" * 32, norm=bad, q=np.zeros(2, np.int32))


def test_a_norm_beyond_the_chain_limit_is_refused(setup):
    params, genesis, keys, _ = setup
    q = np.array([2**20, 0, 0, 0, 0], np.int32)
    huge = sign_message(keys[0], round=0, base=genesis.hash, norm=1e300, q=q)
    with pytest.raises(InvalidMessage, match="exceeds the chain's limit") as info:
        validate_message(huge, params)
    assert info.value.reason == "bad-norm"
