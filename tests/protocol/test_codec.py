"""The canonical encoding: every value round-trips, and the strict reader refuses
every byte string that is not exactly one encoded value."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learningchain.crypto import PrivateKey
from learningchain.errors import DecodeError
from learningchain.protocol.block import Block, Header, decode_block, decode_header, encoded_size
from learningchain.protocol.codec import (
    HEADER_MAX,
    MAX_SEAL,
    MESSAGE_FIXED_SIZE,
    Reader,
    Writer,
    message_size,
)
from learningchain.protocol.message import decode_message, message_id_of, sign_message
from learningchain.types import Address, Hash32

KEY = PrivateKey(bytes(range(1, 33)))

finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 255), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1),
       st.integers(-(2**63), 2**63 - 1), finite, st.binary(max_size=64), st.binary(min_size=7, max_size=7))
def test_scalars_and_byte_strings_round_trip(u8, u32, u64, i64, f64, var, fixed):
    raw = Writer().u8(u8).u32(u32).u64(u64).i64(i64).f64(f64).var(var).fixed(fixed, 7).bytes()
    r = Reader(raw)
    got = (r.u8(), r.u32(), r.u64(), r.i64(), r.f64(), r.var(64), r.fixed(7))
    r.finish()
    assert got[:4] == (u8, u32, u64, i64)
    assert struct.pack("<d", got[4]) == struct.pack("<d", f64)  # bit for bit, -0.0 included
    assert got[5:] == (var, fixed)
    assert len(raw) == 1 + 4 + 8 + 8 + 8 + 4 + len(var) + 7


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["int32", "uint32", "float64"]), st.integers(0, 40), st.integers(0, 2**32 - 1))
def test_arrays_round_trip_little_endian(dtype, n, seed):
    rng = np.random.default_rng(seed)
    if dtype == "float64":
        values = rng.normal(size=n) * 1e3
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=n, endpoint=True).astype(dtype)
    raw = Writer().array(values, dtype).bytes()
    assert raw[:4] == n.to_bytes(4, "little")
    assert raw[4:] == np.asarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    r = Reader(raw)
    back = r.array(dtype, n)
    r.finish()
    assert back.dtype == np.dtype(dtype) and back.tobytes() == np.asarray(values, dtype=dtype).tobytes()


def test_reader_refuses_truncation_trailing_bytes_and_oversize():
    raw = Writer().u32(7).var(b"abc").bytes()
    r = Reader(raw[:-1])
    r.u32()
    with pytest.raises(DecodeError, match="truncated"):
        r.var(16)
    r = Reader(raw + b"\x00")
    assert (r.u32(), r.var(16)) == (7, b"abc")
    with pytest.raises(DecodeError, match="trailing"):
        r.finish()
    r = Reader(raw)
    r.u32()
    with pytest.raises(DecodeError, match="exceeds the limit"):
        r.var(2)
    with pytest.raises(DecodeError, match="limit is 2"):
        Reader(Writer().array(np.arange(3), "int32").bytes()).array("int32", 2)
    with pytest.raises(DecodeError, match="expected bytes"):
        Reader("text")


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_reader_refuses_non_finite_floats_unless_asked(value):
    raw = Writer().f64(value).bytes()
    with pytest.raises(DecodeError, match="not finite"):
        Reader(raw).f64()
    assert struct.pack("<d", Reader(raw).f64(finite=False)) == struct.pack("<d", value)


def test_writer_refuses_a_fixed_field_of_the_wrong_size():
    with pytest.raises(ValueError):
        Writer().fixed(b"\x00" * 19, 20)


# -- records -----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 64), st.integers(0, 2**64 - 1), st.binary(min_size=32, max_size=32),
       st.floats(min_value=1e-300, max_value=1e300), st.integers(0, 2**32 - 1))
def test_message_round_trips_and_its_id_is_that_of_its_bytes(d, round_, base, norm, seed):
    q = np.random.default_rng(seed).integers(-(2**31), 2**31 - 1, size=d, dtype=np.int64).astype(np.int32)
    msg = sign_message(KEY, round=round_, base=base, norm=norm, q=q)
    raw = msg.encode()
    assert len(raw) == message_size(d) == MESSAGE_FIXED_SIZE + 4 * d
    back = decode_message(raw, max_dim=d)
    assert back == msg and back.encode() == raw
    assert back.hash == msg.hash == message_id_of(raw)
    assert back.signing_digest == msg.signing_digest
    assert (back.identity, back.round, back.base, back.norm) == (KEY.address, round_, base, norm)
    assert back.q.tobytes() == q.tobytes()


def test_message_decoding_is_strict():
    msg = sign_message(KEY, round=1, base=b"\x01" * 32, norm=2.0, q=np.arange(4, dtype=np.int32))
    raw = msg.encode()
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode_message(raw, max_dim=3)
    with pytest.raises(DecodeError):
        decode_message(raw[:-1], max_dim=4)
    with pytest.raises(DecodeError, match="trailing"):
        decode_message(raw[:-65] + b"\x00" * 66, max_dim=5)
    with pytest.raises(DecodeError, match="unknown version"):
        decode_message(b"\x03" + raw[1:], max_dim=4)
    with pytest.raises(DecodeError, match="trailing"):  # int32 entries read as a compact message's int16
        decode_message(b"\x02" + raw[1:], max_dim=4)
    bad_norm = raw[:61] + struct.pack("<d", math.nan) + raw[69:]
    with pytest.raises(DecodeError, match="norm is not finite"):
        decode_message(bad_norm, max_dim=4)
    with pytest.raises(DecodeError, match="shorter than the fixed part"):
        message_id_of(raw[: MESSAGE_FIXED_SIZE - 1])


def test_records_are_immutable():
    msg = sign_message(KEY, round=1, base=b"\x01" * 32, norm=2.0, q=np.arange(4, dtype=np.int32))
    with pytest.raises(Exception):
        msg.norm = 3.0
    with pytest.raises(ValueError):
        msg.q[0] = 7  # the gradient is a read-only array
    assert not hasattr(msg, "_cache")
    header = _header(seal=b"\x00" * 8)
    with pytest.raises(Exception):
        header.height = 2


def _header(**over) -> Header:
    fields = dict(height=3, parent=Hash32(b"\x02" * 32), genesis=Hash32(b"\x03" * 32), timestamp=123456,
                  params_hash=Hash32(b"\x04" * 32), messages_root=Hash32(b"\x05" * 32),
                  selection_hash=Hash32(b"\x06" * 32), model_hash=Hash32(b"\x07" * 32),
                  miner=Address(b"\x08" * 20), difficulty=9, seal=b"")
    fields.update(over)
    return Header(**fields)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 255), st.binary(max_size=MAX_SEAL))
def test_header_round_trips_and_the_seal_is_left_out_of_the_seal_hash(height, timestamp, difficulty, seal):
    header = _header(height=height, timestamp=timestamp, difficulty=difficulty, seal=seal)
    raw = header.encode()
    assert len(raw) <= HEADER_MAX
    back = decode_header(raw)
    assert back == header and back.hash == header.hash and back.encode() == raw
    assert header.with_seal(b"other").seal_hash == header.seal_hash
    assert header.with_seal(b"other").hash != header.hash


def test_header_decoding_refuses_an_oversize_seal_and_trailing_bytes():
    with pytest.raises(DecodeError, match="seal"):
        decode_header(_header(seal=b"\x00" * (MAX_SEAL + 1)).encode())
    with pytest.raises(DecodeError, match="trailing"):
        decode_header(_header().encode() + b"\x00")


def test_block_round_trips_and_encoded_size_is_its_length():
    msgs = tuple(sorted((sign_message(PrivateKey(bytes([i + 1]) * 32), round=2, base=b"\x02" * 32, norm=1.5 + i,
                                      q=np.arange(5, dtype=np.int32) * (i + 1)) for i in range(3)),
                        key=lambda m: m.hash))
    block = Block(_header(seal=b"\x01" * 8), msgs, (0, 2), np.linspace(-1, 1, 5))
    raw = block.encode()
    assert encoded_size(block) == len(raw)
    back = decode_block(raw, max_dim=5, max_messages=3)
    assert back == block and back.hash == block.hash
    assert back.selection == (0, 2) and back.model.tobytes() == block.model.tobytes()
    with pytest.raises(DecodeError, match="exceed the limit"):
        decode_block(raw, max_dim=5, max_messages=2)
    with pytest.raises(DecodeError):
        decode_block(raw, max_dim=4, max_messages=3)
    genesis = Block(_header(height=0), (), (), np.zeros(5), b'{"a":1}')
    assert encoded_size(genesis) == len(genesis.encode())


def test_a_compact_message_carries_int16_entries_and_round_trips():
    q = np.array([-32768, -1, 0, 1, 32767, 12345], dtype=np.int16)
    msg = sign_message(KEY, round=3, base=b"\x07" * 32, norm=1.5, q=q)
    raw = msg.encode()
    assert raw[0] == 2 and msg.width == 16 and msg.q.dtype == np.int16
    assert len(raw) == MESSAGE_FIXED_SIZE + 2 * len(q)
    back = decode_message(raw, max_dim=len(q))
    assert back == msg and back.encode() == raw and back.hash == msg.hash == message_id_of(raw)
    assert back.q.dtype == np.int16 and back.q.tolist() == q.tolist() and back.width == 16
    wide = sign_message(KEY, round=3, base=b"\x07" * 32, norm=1.5, q=q.astype(np.int32))
    assert wide.width == 32 and wide.hash != msg.hash  # the width is part of what is signed
    with pytest.raises(DecodeError, match="truncated"):  # int16 entries read as int32 ones
        decode_message(b"\x01" + raw[1:], max_dim=len(q))
