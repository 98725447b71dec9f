"""The memory pool: admit, de-duplicate, one message per identity and base block,
per-base counts and bounds."""

from __future__ import annotations

import numpy as np
import pytest

from learningchain.crypto import PrivateKey
from learningchain.errors import InvalidMessage
from learningchain.node.mempool import Mempool
from learningchain.protocol.message import sign_message

BASE_A, BASE_B = b"\xaa" * 32, b"\xbb" * 32


def key(i: int) -> PrivateKey:
    return PrivateKey(bytes([i + 1]) * 32)


def msg(i: int, base: bytes = BASE_A, norm: float = 1.0):
    q = np.zeros(4, dtype=np.int32)
    q[i % 4] = 1 << 20
    return sign_message(key(i), round=1, base=base, norm=norm, q=q)


def test_admitted_message_is_seen_and_listed_for_its_base():
    pool = Mempool()
    m = msg(0)
    assert m.hash not in pool and not pool.seen(m.hash)
    pool.add(m)
    assert m.hash in pool and pool.seen(m.hash)
    assert pool.for_base(BASE_A) == [m]
    assert pool.for_base(BASE_B) == [] and pool.count(BASE_B) == 0


def test_the_same_message_twice_is_kept_once():
    pool = Mempool()
    m = msg(0)
    pool.add(m)
    pool.add(m)
    pool.add(msg(0))  # an equal copy (same bytes, same id)
    assert pool.count(BASE_A) == 1


def test_one_message_per_identity_and_base():
    pool = Mempool()
    pool.add(msg(0))
    other = msg(0, norm=2.0)  # same key, same base, different message
    with pytest.raises(InvalidMessage) as info:
        pool.add(other)
    assert info.value.reason == "duplicate-identity"
    assert pool.count(BASE_A) == 1 and other.hash not in pool
    pool.add(msg(0, base=BASE_B))  # the same identity on another base is fine
    assert pool.count(BASE_B) == 1


def test_counts_are_per_base():
    pool = Mempool()
    for i in range(3):
        pool.add(msg(i))
    for i in range(5):
        pool.add(msg(10 + i, base=BASE_B))
    assert (pool.count(BASE_A), pool.count(BASE_B)) == (3, 5)
    assert {m.identity for m in pool.for_base(BASE_A)} == {key(i).address for i in range(3)}


def test_a_full_base_refuses_more_messages():
    pool = Mempool(max_per_base=2)
    pool.add(msg(0))
    pool.add(msg(1))
    with pytest.raises(InvalidMessage) as info:
        pool.add(msg(2))
    assert info.value.reason == "mempool-full"
    pool.add(msg(2, base=BASE_B))  # the bound is per base
    assert (pool.count(BASE_A), pool.count(BASE_B)) == (2, 1)


def test_the_oldest_base_is_dropped_beyond_max_bases():
    pool = Mempool(max_bases=2)
    bases = [bytes([i]) * 32 for i in range(3)]
    for i, b in enumerate(bases):
        pool.add(msg(i, base=b))
    assert pool.count(bases[0]) == 0 and pool.count(bases[1]) == pool.count(bases[2]) == 1
    assert msg(0, base=bases[0]).hash in pool  # still remembered as seen


def test_drop_base_forgets_the_messages_but_not_that_they_were_seen():
    pool = Mempool()
    m = msg(0)
    pool.add(m)
    pool.drop_base(BASE_A)
    assert pool.count(BASE_A) == 0 and m.hash in pool
    pool.drop_base(BASE_B)  # unknown base: nothing to do


def test_seen_set_is_bounded_and_drops_the_oldest():
    pool = Mempool(max_seen=4)
    hashes = [bytes([i]) * 32 for i in range(5)]
    for h in hashes:
        pool.mark_seen(h)
    assert hashes[0] not in pool and hashes[-1] in pool
    assert sum(h in pool for h in hashes) <= 4
