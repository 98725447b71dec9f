"""The node's gossip policy, in-process: what it decides for a losing block, an orphan,
an unseen-message block, a forged body and a sync answer, and how it bounds its pools."""

import dataclasses

import numpy as np
import pytest

from learningchain.node import NETWORK_RULES, Node
from learningchain.node.actions import (Accepted, Admitted, ContinueSync, Deferred, Expired, FetchBlock, Held,
                                        MessageRefused, NewHead, Orphan, Parked, Refused, SyncDone, SyncFailed)
from learningchain.node.records import block_size
from learningchain.protocol import Block, build_block
from learningchain.protocol.consensus import solve_pow

from ..helpers import genesis_for, honest_vectors, make_keys, message_for, small_params


def kinds(actions):
    return [type(a).__name__ for a in actions]


def round_on(node, parent, seed, *, ts_offset=1000, n=6):
    """Fresh holders' messages on ``parent`` and a valid sealed block of them."""
    params = node.params
    keys = make_keys(n, seed=seed)
    rng = np.random.default_rng(seed)
    msgs = [message_for(k, params, parent, v) for k, v in zip(keys, honest_vectors(params, n, rng))]
    blk = build_block(parent, msgs, params, genesis_hash=node.genesis_hash, miner=b"\x00" * 20,
                      timestamp=parent.header.timestamp + ts_offset, difficulty=node.next_difficulty(parent.header))
    return msgs, Block(solve_pow(blk.header), blk.messages, blk.selection, blk.model)


def grow(node, parent, seed, **kw):
    return round_on(node, parent, seed, **kw)[1]


@pytest.fixture
def genesis():
    return genesis_for(small_params())


def network_node(genesis, **over):
    return Node(genesis, rules=dataclasses.replace(NETWORK_RULES, **over))


def siblings(genesis, count, first_seed=1):
    """``count`` valid blocks on genesis, lowest hash (the one that wins a tie) first."""
    probe = Node(genesis)
    return sorted((grow(probe, genesis, first_seed + i) for i in range(count)), key=lambda b: b.hash)


def test_a_block_that_loses_the_fork_choice_is_deferred_and_promoted_when_its_branch_becomes_heavier(genesis):
    node = network_node(genesis)
    winner, loser = siblings(genesis, 2)
    assert kinds(node.policy.on_block(winner, "p", 0)) == ["Accepted", "NewHead"]
    out = node.policy.on_block(loser, "q", 1)
    assert out == [Deferred(loser.hash, "q")]
    assert loser.hash in node.policy.deferred and loser.hash not in node.headers  # not validated yet
    assert node.policy.knows_block(loser.hash)

    child = grow(Node(genesis), loser, 9)  # makes the loser's branch the heavier one
    out = node.policy.on_block(child, "r", 2)
    assert kinds(out) == ["Accepted", "Accepted", "NewHead"]
    assert [a.block_hash for a in out if isinstance(a, Accepted)] == [loser.hash, child.hash]
    assert out[0].source == "q"  # the loser is relayed as coming from whoever sent it
    assert node.head_hash == child.hash and not node.policy.deferred


def test_the_plain_rules_validate_a_losing_block_at_once(genesis):
    node = Node(genesis)  # the in-process simulation's rules
    winner, loser = siblings(genesis, 2)
    node.policy.on_block(winner, "p", 0)
    out = node.policy.on_block(loser, "p", 1)
    assert kinds(out) == ["Accepted"] and loser.hash in node.headers and node.head_hash == winner.hash


def test_an_orphan_asks_for_its_parent_and_is_connected_when_the_parent_arrives(genesis):
    node = network_node(genesis)
    b1 = grow(node, genesis, 1)
    b2 = grow(node, b1, 2)
    assert node.policy.on_block(b2, "p", 0) == [Orphan(b2.hash, b1.hash, "p")]
    assert b2.hash in node.orphans and not node.policy.knows_block(b1.hash)
    out = node.policy.on_block(b1, "q", 1)
    assert kinds(out) == ["Accepted", "Accepted", "NewHead"]
    assert [a.block_hash for a in out[:2]] == [b1.hash, b2.hash] and all(a.relay for a in out[:2])
    assert out[2] == NewHead(b2.hash, False) and not node.orphans
    # the policy's sync answer asks for the parents still missing
    b4 = grow(node, grow(node, b2, 3), 4)
    node.policy.on_block(b4, "p", 2)
    assert node.policy.on_sync_end(current=False, more=False, delivered=0, new=0, claimed=0, peer_work=None,
                                   peer_head=None) == [FetchBlock(b4.parent)]


def test_an_unseen_message_block_is_parked_then_accepted_once_its_messages_arrive(genesis):
    node = network_node(genesis, park_unseen=True, unseen_grace_ms=500)
    msgs, block = round_on(node, genesis, 1)
    out = node.policy.on_block(block, "p", 1000)
    assert kinds(out) == ["Parked"] and out[0].deadline_ms == 1500 and node.head_hash == genesis.hash
    out = node.policy.on_messages([(m, m.encode()) for m in msgs[:-1]], "q", 1100)
    assert kinds(out) == ["Admitted"] * (len(msgs) - 1) and block.hash in node.policy.parked
    out = node.policy.on_messages([(msgs[-1], b"raw")], "q", 1200)
    assert kinds(out) == ["Admitted", "Accepted", "NewHead"]
    assert out[0] == Admitted(msgs[-1].hash, "q", b"raw") and out[1].source == "p"
    assert node.head_hash == block.hash and not node.policy.parked


def test_an_unseen_message_block_expires_and_stays_followable_as_history(genesis):
    node = network_node(genesis, park_unseen=True, unseen_grace_ms=500)
    _, block = round_on(node, genesis, 1)
    node.policy.on_block(block, "p", 1000)
    assert node.policy.expire(1499) == []
    assert node.policy.expire(1500) == [Expired(block.hash, block.height, "p")]
    assert not node.policy.parked and not node.policy.knows_block(block.hash)
    out = node.policy.on_block(block, "p", 1600, synced=True)  # fetched as history: no wait
    assert kinds(out) == ["Accepted", "NewHead"] and not out[0].relay


def test_under_wait_an_orphan_whose_messages_came_before_its_parent_is_connected(genesis):
    node = network_node(genesis, park_unseen=True)
    p_msgs, p = round_on(node, genesis, 1)
    z_msgs, z = round_on(node, p, 2)
    assert kinds(node.policy.on_block(z, "a", 0)) == ["Orphan"]
    assert kinds(node.policy.on_messages([(m, None) for m in z_msgs], "b", 1)) == ["Held"] * len(z_msgs)
    node.policy.on_messages([(m, None) for m in p_msgs], "b", 2)
    out = node.policy.on_block(p, "c", 3)
    assert kinds(out) == ["Parked", "Accepted"] + ["Admitted"] * len(z_msgs) + ["Accepted", "NewHead"]
    assert out[0].block_hash == z.hash and out[-1] == NewHead(z.hash, False)
    assert node.head_hash == z.hash and not node.policy.parked


def test_the_plain_rules_refuse_an_unseen_message_block_when_the_node_checks(genesis):
    node = Node(genesis, check_unseen=True)
    _, block = round_on(node, genesis, 1)
    (refused,) = node.policy.on_block(block, "p", 0)
    assert refused.reason == "unseen-message" and not refused.final and not refused.penalise


def test_a_mutated_body_never_poisons_the_header_hash(genesis):
    node = network_node(genesis)
    block = grow(node, genesis, 1)
    model = block.model.copy()
    model[0] += 1.0
    forged = Block(block.header, block.messages, block.selection, model)
    (refused,) = node.policy.on_block(forged, "evil", 0)
    assert isinstance(refused, Refused) and refused.reason == "bad-model-hash"
    assert refused.penalise and not refused.final
    assert not node.policy.knows_block(block.hash) and block.hash not in node.rejected
    assert kinds(node.policy.on_block(block, "honest", 1)) == ["Accepted", "NewHead"]

    # a losing sibling: its forged copy is refused, never put off; the real one is
    winner, loser = sorted([block, grow(Node(genesis), genesis, 2)], key=lambda b: b.hash)
    if node.head_hash != winner.hash:
        node = network_node(genesis)
        node.policy.on_block(winner, "honest", 2)
    bad = loser.model.copy()
    bad[-1] -= 1.0
    out = node.policy.on_block(Block(loser.header, loser.messages, loser.selection, bad), "evil", 3)
    assert kinds(out) == ["Refused"] and not out[0].final and loser.hash not in node.policy.deferred
    assert node.policy.on_block(loser, "honest", 4) == [Deferred(loser.hash, "honest")]


def test_a_block_whose_body_matches_but_breaks_a_rule_is_refused_for_good(genesis):
    node = network_node(genesis)
    params = node.params
    keys = make_keys(6, seed=3)
    rng = np.random.default_rng(3)
    msgs = [message_for(k, params, genesis, v) for k, v in zip(keys, honest_vectors(params, 6, rng))]
    blk = build_block(genesis, msgs, params, genesis_hash=node.genesis_hash, miner=b"\x00" * 20,
                      timestamp=genesis.header.timestamp + 1000, difficulty=node.next_difficulty(genesis.header))
    wrong = dataclasses.replace(blk.header, timestamp=genesis.header.timestamp - 1)
    bad = Block(solve_pow(wrong), blk.messages, blk.selection, blk.model)
    (refused,) = node.policy.on_block(bad, "p", 0)
    assert refused.final and refused.penalise and node.policy.knows_block(bad.hash)


def test_messages_for_an_unknown_block_are_held_until_it_comes(genesis):
    node = network_node(genesis)
    msgs, block = round_on(node, genesis, 1)
    child_msgs, _ = round_on(node, block, 2)
    out = node.policy.on_messages([(m, None) for m in child_msgs], "p", 0)
    assert kinds(out) == ["Held"] * len(child_msgs) and out[0] == Held(child_msgs[0].hash, block.hash, "p")
    node.policy.on_messages([(m, None) for m in msgs], "p", 1)
    out = node.policy.on_block(block, "q", 2)
    assert kinds(out) == ["Accepted"] + ["Admitted"] * len(child_msgs) + ["NewHead"]
    assert node.mempool.count(block.hash) == len(child_msgs)
    plain = Node(genesis)
    (refused,) = plain.policy.on_messages([(child_msgs[0], None)], "p", 0)
    assert isinstance(refused, MessageRefused) and refused.reason == "unknown-base" and not refused.penalise


def test_a_sync_answer_continues_only_on_delivered_blocks(genesis):
    node = network_node(genesis)
    policy = node.policy
    end = dict(current=True, claimed=5, peer_work=None, peer_head=None)
    assert policy.on_sync_end(more=True, delivered=5, new=2, **end) == [ContinueSync()]
    (failed,) = policy.on_sync_end(more=True, delivered=5, new=0, **end)
    assert isinstance(failed, SyncFailed) and "delivered 5 (0 new" in failed.why
    assert policy.on_sync_end(more=False, delivered=0, new=0, **end) == [SyncDone()]
    end.update(peer_work=node.head_work + 1, peer_head=b"\x01" * 32)
    (short,) = policy.on_sync_end(more=False, delivered=0, new=0, **end)
    assert isinstance(short, SyncFailed) and "without the chain of work" in short.why


def test_each_source_keeps_only_its_share_of_the_deferred_pool(genesis):
    blocks = siblings(genesis, 11)
    head, losers = blocks[0], blocks[1:]
    size = block_size(head)
    node = network_node(genesis, max_deferred_bytes=8 * size)
    node.policy.on_block(head, "a", 0)
    for b in losers[:2]:
        assert node.policy.on_block(b, "other", 1) == [Deferred(b.hash, "other")]
    for b in losers[2:]:
        node.policy.on_block(b, "evil", 2)
    deferred = node.policy.deferred
    assert len(deferred) == 4 and node.policy.deferred_bytes <= 8 * size
    assert all(b.hash in deferred for b in losers[:2])  # the flood did not push them out
    assert [h for h in deferred if h not in {b.hash for b in losers[:2]}] == [b.hash for b in losers[-2:]]


def test_each_source_keeps_only_its_share_of_the_orphan_pool(genesis):
    import os

    template = grow(Node(genesis), genesis, 1)
    size = block_size(template)

    def orphan():
        header = dataclasses.replace(template.header, parent=os.urandom(32), seal=b"")
        return Block(solve_pow(header), template.messages, template.selection, template.model)

    node = network_node(genesis)
    node.max_orphan_bytes = 8 * size
    theirs = [orphan() for _ in range(2)]
    for b in theirs:
        assert kinds(node.policy.on_block(b, "other", 0)) == ["Orphan"]
    flood = [orphan() for _ in range(8)]
    for b in flood:
        node.policy.on_block(b, "evil", 1)
    assert len(node.orphans) == 4 and node.orphan_bytes <= 8 * size
    assert all(b.hash in node.orphans for b in theirs)
    assert all(b.hash in node.orphans for b in flood[-2:])
    plain = Node(genesis, max_orphan_bytes=8 * size)  # no per-source share: the newest 8 of anyone's
    for b in theirs + flood:
        plain.policy.on_block(b, "evil", 0)
    assert len(plain.orphans) == 8


def test_the_parked_pool_is_bounded_by_count(genesis):
    node = network_node(genesis, park_unseen=True, max_parked=3)
    blocks = siblings(genesis, 5)
    for i, b in enumerate(blocks):
        assert isinstance(node.policy.on_block(b, "p", i)[0], Parked)
    assert list(node.policy.parked) == [b.hash for b in blocks[-3:]]


def test_a_block_stamped_too_far_ahead_of_the_clock_is_refused_until_the_clock_reaches_it(genesis):
    # One block stamped far ahead would pin every descendant's timestamp (a child may not
    # precede its parent) and, under retargeting, raise the difficulty every window.
    node = network_node(genesis)
    wall = genesis.header.timestamp + 1000
    ahead = grow(node, genesis, 1, ts_offset=1000 + NETWORK_RULES.max_future_ms + 1)
    out = node.policy.on_block(ahead, "p", 0, wall_ms=wall)
    assert out == [Refused(ahead.hash, 1, "p", "future-timestamp", out[0].detail, False, False)]
    assert "ms ahead of this node's clock" in out[0].detail
    assert ahead.hash not in node.headers and not node.policy.knows_block(ahead.hash)
    # also when it comes as history, and not a node's own block (its clock made it)
    assert kinds(node.policy.on_block(ahead, "p", 0, synced=True, wall_ms=wall)) == ["Refused"]
    # a block at the bound is taken; the far one once the clock has come within the bound
    edge = grow(node, genesis, 2, ts_offset=1000 + NETWORK_RULES.max_future_ms)
    assert kinds(node.policy.on_block(edge, "p", 1, wall_ms=wall)) == ["Accepted", "NewHead"]
    assert "Accepted" in kinds(node.policy.on_block(ahead, "p", 2, synced=True, wall_ms=wall + 1))
    # the simulation's rules compare no clock
    plain = Node(genesis)
    assert "Accepted" in kinds(plain.policy.on_block(ahead, "p", 0, wall_ms=wall))
