"""Proof of work (seal, retarget, difficulty range) and proof of authority (turns,
seal, weight), rule by rule on hand-built headers."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from learningchain.crypto import PrivateKey
from learningchain.errors import ConfigError, InvalidBlock
from learningchain.protocol.block import Header
from learningchain.protocol.consensus import (
    authority_rank,
    authority_weight,
    check_authority,
    check_pow,
    difficulty_range,
    expected_difficulty,
    in_turn_authority,
    pow_target,
    pow_value,
    seal_authority,
    solve_pow,
)
from learningchain.protocol.params import parse_address
from learningchain.types import ZERO_ADDRESS, ZERO_HASH, Hash32

from ..helpers import small_params

RETARGET = {"interval_ms": 1000, "window": 4, "min_bits": 3, "max_bits": 9}


def header(height: int, parent: bytes = ZERO_HASH, *, timestamp: int = 0, difficulty: int = 4,
           miner: bytes = ZERO_ADDRESS) -> Header:
    return Header(height=height, parent=Hash32(parent), genesis=ZERO_HASH, timestamp=timestamp,
                  params_hash=ZERO_HASH, messages_root=ZERO_HASH, selection_hash=ZERO_HASH,
                  model_hash=ZERO_HASH, miner=miner, difficulty=difficulty)


def chain_of(timestamps, difficulty: int = 6) -> dict:
    """Headers 0..n with the given timestamps; the map hash -> header, and the tip."""
    by_hash, parent = {}, ZERO_HASH
    tip = None
    for h, ts in enumerate(timestamps):
        tip = header(h, parent, timestamp=ts, difficulty=difficulty)
        by_hash[tip.hash] = tip
        parent = tip.hash
    return by_hash, tip


# -- proof of work ---------------------------------------------------------------------


def test_pow_value_is_sha256_of_seal_hash_and_little_endian_nonce():
    seal_hash = bytes(range(32))
    want = int.from_bytes(hashlib.sha256(seal_hash + (5).to_bytes(8, "little")).digest(), "big")
    assert pow_value(seal_hash, 5) == want
    assert pow_target(0) == 2**256 and pow_target(12) == 2**244


def test_solved_seal_passes_and_a_failing_nonce_is_refused():
    h = header(1, difficulty=8)
    sealed = solve_pow(h)
    check_pow(sealed)
    assert sealed.seal_hash == h.seal_hash  # the seal is left out of what it proves
    nonce = next(n for n in range(10_000) if pow_value(h.seal_hash, n) >= pow_target(8))
    with pytest.raises(InvalidBlock) as info:
        check_pow(h.with_seal(nonce.to_bytes(8, "little")))
    assert info.value.reason == "bad-pow"


def test_pow_seal_must_be_an_8_byte_nonce():
    with pytest.raises(InvalidBlock) as info:
        check_pow(header(1, difficulty=0).with_seal(b"\x00" * 7))
    assert info.value.reason == "bad-seal"


def test_solve_pow_gives_up_after_max_tries():
    assert solve_pow(header(1, difficulty=40), max_tries=50) is None


def test_fixed_difficulty_without_retarget():
    params = small_params(difficulty=7)
    by_hash, tip = chain_of([0, 1, 2, 3, 4], difficulty=7)
    assert expected_difficulty(params, tip, by_hash.__getitem__) == 7


@pytest.mark.parametrize("interval,want", [
    (100, 7),    # a window four times too fast: one bit up
    (1000, 6),   # on target: unchanged
    (1400, 6),   # 1.4x the target is inside the 2/3 .. 3/2 dead band
    (5000, 5),   # far too slow: one bit down
    (650, 7),    # span 2600 < 2/3 of 4000: up
    (675, 6),    # span 2700 > 2/3 of 4000: unchanged
    (1500, 6),   # span 6000, exactly 3/2 of 4000: unchanged
    (1501, 5),   # span 6004 > 3/2 of 4000: down
])
def test_retarget_moves_one_bit_after_a_full_window(interval, want):
    params = small_params(difficulty=6, retarget=RETARGET)
    by_hash, tip = chain_of([i * interval for i in range(5)])  # heights 0..4, window 4
    assert expected_difficulty(params, tip, by_hash.__getitem__) == want


def test_retarget_keeps_the_parent_difficulty_inside_a_window():
    params = small_params(difficulty=6, retarget=RETARGET)
    by_hash, tip = chain_of([i * 10 for i in range(4)], difficulty=8)  # tip at height 3: mid-window
    assert expected_difficulty(params, tip, by_hash.__getitem__) == 8


def test_retarget_after_genesis_is_the_genesis_difficulty():
    params = small_params(difficulty=6, retarget=RETARGET)
    by_hash, tip = chain_of([0], difficulty=6)
    assert expected_difficulty(params, tip, by_hash.__getitem__) == 6


def test_retarget_is_clamped_to_min_and_max_bits():
    params = small_params(difficulty=6, retarget=RETARGET)
    by_hash, tip = chain_of([i for i in range(5)], difficulty=9)  # fast, already at max_bits
    assert expected_difficulty(params, tip, by_hash.__getitem__) == 9
    by_hash, tip = chain_of([i * 10**6 for i in range(5)], difficulty=3)  # slow, at min_bits
    assert expected_difficulty(params, tip, by_hash.__getitem__) == 3


def test_retarget_measures_exactly_one_window():
    """The span is from the block `window` before the parent: an older slow block does not count."""
    params = small_params(difficulty=6, retarget=RETARGET)
    stamps = [0, 10**6] + [10**6 + 100 * i for i in range(1, 8)]  # heights 0..8, slow gap before height 1
    by_hash, tip = chain_of(stamps)
    assert tip.height == 8
    assert expected_difficulty(params, tip, by_hash.__getitem__) == 7


def test_difficulty_range():
    assert difficulty_range(small_params(difficulty=6)) == (6, 6)
    assert difficulty_range(small_params(difficulty=6, retarget=RETARGET)) == (3, 9)
    assert difficulty_range(small_params(difficulty=12, retarget=RETARGET)) == (3, 12)


# -- proof of authority ------------------------------------------------------------------


@pytest.fixture
def authorities():
    rng = np.random.default_rng(3)
    keys = [PrivateKey.generate(rng) for _ in range(3)]
    # one listed without its 0x prefix: both spellings name the same address
    listed = ("0x" + keys[0].address.hex(), keys[1].address.hex(), "0x" + keys[2].address.hex())
    params = small_params(consensus="poa", authorities=listed, difficulty=0)
    return keys, params


def test_authorities_take_turns_by_height(authorities):
    keys, params = authorities
    assert params.authority_addresses == tuple(k.address for k in keys)
    for h in range(7):
        assert in_turn_authority(params, h) == keys[h % 3].address
        assert authority_rank(params, keys[h % 3].address, h) == 0
        assert authority_rank(params, keys[(h + 1) % 3].address, h) == 1
        assert authority_rank(params, keys[(h + 2) % 3].address, h) == 2
        assert [authority_weight(params, k.address, h) for k in keys] == [2 if i == h % 3 else 1 for i in range(3)]


def test_in_turn_block_states_weight_2_and_out_of_turn_weight_1(authorities):
    keys, params = authorities
    check_authority(seal_authority(header(4, difficulty=2, miner=keys[1].address), keys[1]), params)
    check_authority(seal_authority(header(4, difficulty=1, miner=keys[0].address), keys[0]), params)
    for key, weight in ((keys[1], 1), (keys[0], 2)):  # the other weight is refused
        with pytest.raises(InvalidBlock) as info:
            check_authority(seal_authority(header(4, difficulty=weight, miner=key.address), key), params)
        assert info.value.reason == "bad-difficulty"


def test_seal_by_a_key_outside_the_authorities_is_refused(authorities):
    _, params = authorities
    outsider = PrivateKey.generate(np.random.default_rng(99))
    with pytest.raises(InvalidBlock) as info:
        check_authority(seal_authority(header(1, difficulty=1, miner=outsider.address), outsider), params)
    assert info.value.reason == "not-authority"


def test_authority_seal_must_name_its_signer_as_miner(authorities):
    keys, params = authorities
    with pytest.raises(InvalidBlock) as info:
        check_authority(seal_authority(header(1, difficulty=2, miner=keys[0].address), keys[1]), params)
    assert info.value.reason == "bad-seal"


def test_a_seal_that_is_not_a_signature_is_refused(authorities):
    keys, params = authorities
    with pytest.raises(InvalidBlock) as info:
        check_authority(header(1, difficulty=2, miner=keys[1].address).with_seal(b"\x01" * 10), params)
    assert info.value.reason == "bad-seal"
    # 65 bytes that recover some other key: not one of the authorities
    with pytest.raises(InvalidBlock) as info:
        check_authority(header(1, difficulty=2, miner=keys[1].address).with_seal(b"\x01" * 65), params)
    assert info.value.reason in ("bad-seal", "not-authority")


def test_parse_address_accepts_both_spellings_and_names_what_is_wrong():
    raw = bytes(range(20))
    assert parse_address("0x" + raw.hex()) == raw == parse_address(raw.hex())
    with pytest.raises(ConfigError, match="is not hex"):
        parse_address("0xzz")
    with pytest.raises(ConfigError, match="has 19 bytes"):
        parse_address("0x" + raw[:19].hex())
    with pytest.raises(ConfigError, match="0x-hex string"):
        parse_address(1234)
    with pytest.raises(ConfigError, match="^authority"):
        parse_address("0x12", what="authority")
