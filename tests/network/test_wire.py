"""The wire format: every record round-trips, and bad bytes are refused with what was wrong."""

import numpy as np
import pytest

from learningchain.errors import DecodeError
from learningchain.network import wire
from learningchain.network.wire import Hello, Kind

from ..helpers import genesis_for, make_keys, message_for, small_params


def test_hello_round_trips_with_a_large_work_value():
    h = Hello(wire.PROTOCOL_VERSION, b"\x01" * 32, b"\x02" * 20, "10.0.0.7", 30333, 12345, b"\x03" * 32,
              2**200 + 17, "learningchain/both")
    assert wire.decode_hello(wire.encode_hello(h)) == h


@pytest.mark.parametrize("mutate, match", [
    (lambda raw: raw + b"\x00", "trailing"),
    (lambda raw: raw[:-3], "truncated"),
])
def test_hello_with_extra_or_missing_bytes_is_refused(mutate, match):
    h = Hello(1, b"\x01" * 32, b"\x02" * 20, "127.0.0.1", 1, 0, b"\x00" * 32, 0)
    with pytest.raises(DecodeError, match=match):
        wire.decode_hello(mutate(wire.encode_hello(h)))


def test_hello_host_must_be_a_printable_ascii_name():
    h = Hello(1, b"\x01" * 32, b"\x02" * 20, "bad host", 1, 0, b"\x00" * 32, 0)
    with pytest.raises(DecodeError, match="not a host name"):
        wire.decode_hello(wire.encode_hello(h))


def test_peer_lists_are_bounded_and_checked():
    addrs = [("127.0.0.1", 1000 + i) for i in range(5)]
    assert wire.decode_peers(wire.encode_peers(addrs)) == addrs
    too_many = (70).to_bytes(4, "little")
    with pytest.raises(DecodeError, match="exceed the limit"):
        wire.decode_peers(too_many)
    zero_port = (1).to_bytes(4, "little") + (1).to_bytes(4, "little") + b"a" + (0).to_bytes(4, "little")
    with pytest.raises(DecodeError, match="out of range"):
        wire.decode_peers(zero_port)


def test_sync_requests_round_trip_and_locators_are_bounded():
    loc = [bytes([i]) * 32 for i in range(10)]
    assert wire.decode_get_blocks(wire.encode_get_blocks(7, loc, 256)) == (7, loc, 256)
    assert wire.decode_blocks_end(wire.encode_blocks_end(7, 3, True)) == (7, 3, True)
    assert wire.decode_get_block(wire.encode_get_block(9, b"\x05" * 32)) == (9, b"\x05" * 32)
    with pytest.raises(DecodeError, match="locator"):
        wire.decode_get_blocks(wire.encode_get_blocks(1, [b"\x00" * 32] * 65, 1))
    with pytest.raises(DecodeError, match="locator"):
        wire.decode_get_blocks(wire.encode_get_blocks(1, [], 1))
    with pytest.raises(DecodeError, match="flag"):
        wire.decode_blocks_end((1).to_bytes(4, "little") * 2 + b"\x02")
    assert wire.decode_pruned(wire.encode_pruned(11, 1 << 40)) == (11, 1 << 40)
    with pytest.raises(DecodeError, match="height 2"):
        wire.decode_pruned(wire.encode_pruned(11, 1))  # nothing below height 2 can be pruned
    with pytest.raises(DecodeError):
        wire.decode_pruned(wire.encode_pruned(11, 5) + b"\x00")


def test_item_ids_are_the_consensus_hashes():
    params = small_params()
    genesis = genesis_for(params)
    key = make_keys(1)[0]
    msg = message_for(key, params, genesis, np.ones(params.dim))
    assert wire.message_hash_of(msg.encode()) == msg.hash
    assert wire.block_hash_of(genesis.encode()) == genesis.hash
    with pytest.raises(DecodeError):
        wire.block_hash_of(b"\xff\xff\xff\xff")


def test_frames_carry_length_then_kind():
    frame = wire.encode_frame(Kind.PING, wire.encode_ping(5))
    assert int.from_bytes(frame[:4], "little") == len(frame) - 4
    assert frame[4] == Kind.PING and wire.decode_ping(frame[5:]) == 5


def test_message_batches_round_trip_and_are_bounded():
    raws = [b"\x01" * 10, b"", b"\x02" * 300]
    assert wire.decode_messages(wire.encode_messages(raws)) == raws
    with pytest.raises(DecodeError, match="1..4096"):
        wire.decode_messages(wire.encode_messages([]))
    with pytest.raises(DecodeError, match="truncated"):
        wire.decode_messages(wire.encode_messages(raws)[:-1])
