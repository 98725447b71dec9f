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


def msg(i: int, base: bytes = BASE_A, norm: float = 1.0, round: int = 1):
    q = np.zeros(4, dtype=np.int32)
    q[i % 4] = 1 << 20
    return sign_message(key(i), round=round, base=base, norm=norm, q=q)


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


def test_beyond_max_bases_the_base_farthest_from_the_head_goes():
    """Groups are ranked by distance from the head, not by arrival: a newcomer farther
    away than every group held is refused, a nearer one displaces the farthest."""
    pool = Mempool(max_bases=2)
    head, parent, grandparent, sibling = (bytes([i]) * 32 for i in range(1, 5))
    pool.set_head(head, 10)
    pool.add(msg(0, base=head, round=10))
    pool.add(msg(1, base=parent, round=9))
    older = msg(2, base=grandparent, round=8)
    with pytest.raises(InvalidMessage) as info:
        pool.add(older)
    assert info.value.reason == "mempool-full" and older.hash not in pool
    pool.add(msg(3, base=sibling, round=10))  # a competing tip: nearer than the parent
    assert pool.count(head) == 1 and pool.count(sibling) == 1 and pool.count(parent) == 0
    # the dropped message is forgotten: sent again, it is judged again (here: still the farthest)
    assert msg(1, base=parent, round=9).hash not in pool


def test_the_heads_group_is_never_dropped_for_another():
    pool = Mempool(max_bases=1)
    head, other = b"\x01" * 32, b"\x02" * 32
    pool.set_head(head, 5)
    pool.add(msg(0, base=head, round=5))
    for r in (4, 5, 6):  # older, a competing tip, one above the head: none displaces it
        with pytest.raises(InvalidMessage, match="mempool-full"):
            pool.add(msg(r, base=other, round=r))
    assert pool.count(head) == 1


def test_the_heads_group_displaces_the_others_when_the_head_moves():
    pool = Mempool(max_bases=2)
    bases = [bytes([i + 1]) * 32 for i in range(4)]
    for h, base in enumerate(bases):
        pool.set_head(base, h)
        pool.add(msg(h, base=base, round=h))
    assert [pool.count(b) for b in bases] == [0, 0, 1, 1]


def test_a_base_too_far_from_the_head_is_refused_and_its_group_dropped():
    pool = Mempool(max_depth=2)
    bases = [bytes([i + 1]) * 32 for i in range(8)]
    pool.set_head(bases[5], 5)
    for h in (3, 4, 5):
        pool.add(msg(h, base=bases[h], round=h))
    for h in (2, 0, 7 + 1):
        with pytest.raises(InvalidMessage) as info:
            pool.add(msg(h, base=bases[h % 8], round=h))
        assert info.value.reason == "stale-base"
    carried = msg(4, base=bases[4], round=4)
    pool.mark_seen(carried.hash)  # a block carried it: seen for good
    pool.set_head(bases[7], 7)  # heights 3 and 4 fall more than 2 behind
    assert pool.count(bases[3]) == pool.count(bases[4]) == 0 and pool.count(bases[5]) == 1
    assert msg(3, base=bases[3], round=3).hash not in pool  # an entry only: forgotten
    assert carried.hash in pool
    pool.set_head(bases[5], 5)  # back (a reorganisation): the forgotten message is admitted again
    pool.add(msg(3, base=bases[3], round=3))
    assert pool.count(bases[3]) == 1


def test_a_copy_keeps_the_head_and_the_ranks():
    pool = Mempool(max_bases=2)
    head, parent, sibling = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
    pool.set_head(head, 3)
    pool.add(msg(0, base=head, round=3))
    pool.add(msg(1, base=parent, round=2))
    twin = pool.copy()
    twin.add(msg(2, base=sibling, round=3))
    assert twin.count(parent) == 0 and pool.count(parent) == 1 and twin.count(head) == 1
    assert msg(1, base=parent, round=2).hash in pool and msg(1, base=parent, round=2).hash not in twin


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


# -- a node's pool against a Byzantine holder -----------------------------------------------

def _chain(n):
    from learningchain.node import Node

    from ..helpers import genesis_for, honest_vectors, make_keys, message_for, mine_block, small_params
    params = small_params()
    genesis = genesis_for(params)
    node = Node(genesis)
    rng = np.random.default_rng(1)
    blocks = [genesis]
    for r in range(n):
        msgs = [message_for(k, params, node.head, v)
                for k, v in zip(make_keys(3, seed=100 + r), honest_vectors(params, 3, rng))]
        block = mine_block(node, msgs)
        node.on_block(block)
        blocks.append(block)
    return node, blocks, params, rng


def test_messages_for_old_blocks_cannot_push_the_current_rounds_out():
    """One holder signs a valid message for each of 16 older blocks: the node refuses
    those too far behind its head (a refusal an honest relay can cause: not penalised),
    keeps every honest message of the current round, and its miner builds on them."""
    from learningchain.node.actions import Admitted, MessageRefused

    from ..helpers import honest_vectors, make_keys, message_for
    node, blocks, params, rng = _chain(17)
    head = node.head
    honest = [message_for(k, params, head, v)
              for k, v in zip(make_keys(6, seed=999), honest_vectors(params, 6, rng))]
    for m in honest:
        node.on_message(m)
    attacker = make_keys(1, seed=4242)[0]
    outcomes = []
    for old in blocks[:16]:
        m = message_for(attacker, params, old, np.ones(params.dim))
        outcomes += node.policy.on_messages([(m, m.encode())], "peer-1", 0)
    refused = [a for a in outcomes if isinstance(a, MessageRefused)]
    assert refused and {a.reason for a in refused} == {"stale-base"} and not any(a.penalise for a in refused)
    assert all(isinstance(a, Admitted) for a in outcomes if a not in refused)
    assert len(refused) == 17 - node.mempool.max_depth  # heights 0 .. 17 - max_depth - 1
    assert node.mempool.count(head.hash) == len(honest)
    block = node.template(timestamp=head.header.timestamp + 1000)
    assert {m.hash for m in block.messages} == {m.hash for m in honest}


def test_a_full_pool_keeps_the_heads_group_and_hears_a_resent_message():
    """With room for two groups: late messages for the head's parent, the head's own,
    then one for a competing tip (a sibling of the head). The parent's group goes (the
    farthest), the head's stays; the late messages, forgotten with their group (no block
    carried them), are judged again when sent again instead of ignored as already seen."""
    from ..helpers import honest_vectors, make_keys, message_for
    from .test_node import grow
    node, blocks, params, rng = _chain(4)
    head, parent = blocks[-1], blocks[-2]
    from learningchain.protocol.forkchoice import is_heavier
    work = node.work[head.hash]
    sibling = next(b for b in (grow(node, parent, seed) for seed in range(700, 800))
                   if not is_heavier(work, b.hash, work, head.hash))  # equal work: loses the tie
    assert node.on_block(sibling).status == "accepted" and node.head_hash == head.hash
    node.mempool.max_bases = 2
    late = [message_for(k, params, parent, v) for k, v in zip(make_keys(2, seed=50), honest_vectors(params, 2, rng))]
    for m in late:
        node.on_message(m)
    honest = [message_for(k, params, head, v) for k, v in zip(make_keys(3, seed=52), honest_vectors(params, 3, rng))]
    for m in honest:
        node.on_message(m)
    assert node.mempool.count(parent.hash) == len(head.messages) + 2 and node.mempool.count(head.hash) == 3
    node.on_message(message_for(make_keys(1, seed=51)[0], params, sibling, np.ones(params.dim)))
    assert node.mempool.count(sibling.hash) == 1 and node.mempool.count(parent.hash) == 0
    assert node.mempool.count(head.hash) == 3
    assert not any(m.hash in node.mempool for m in late)  # forgotten with their group
    assert all(m.hash in node.mempool for m in head.messages)  # a block carried these: still seen
    with pytest.raises(InvalidMessage, match="mempool-full"):  # judged again, not silently ignored
        node.on_message(late[0])
    for old in blocks[1:3]:  # older blocks: no room either
        with pytest.raises(InvalidMessage, match="mempool-full"):
            node.on_message(message_for(make_keys(1, seed=60)[0], params, old, np.ones(params.dim)))
    assert node.mempool.count(head.hash) == 3
    node.mempool.max_bases = 3
    node.on_message(late[0])  # room again: the resent message is admitted
    assert node.mempool.count(parent.hash) == 1 and late[0].hash in node.mempool
