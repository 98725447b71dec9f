"""A permissioned chain with a per-member budget: holders stop at their budget, and
every honest node refuses a block (or a message) that would take a member past it."""

import logging
from fractions import Fraction

import numpy as np
import pytest

from learningchain.errors import InvalidBlock, InvalidMessage
from learningchain.holder import DataHolder
from learningchain.network.simulation import InProcessNetwork, Miner
from learningchain.node import Node, SQLiteStore, VerdictCache
from learningchain.node.verify import replay_last, verify_chain
from learningchain.protocol import Block, build_block
from learningchain.protocol.consensus import block_work, solve_pow

from ..helpers import genesis_for, make_keys, message_for, mine_block, small_params

EPS, BUDGET = 0.1, 0.3  # three messages each: 0.1 + 0.1 + 0.1 is over 0.3 in floats, not in the chain's rule


def _chain(n=4, **over):
    keys = make_keys(n, seed=21)
    base = dict(members=tuple("0x" + k.address.hex() for k in keys), max_messages=n, holders=n, difficulty=0,
                mechanism="l2-laplace", epsilon=EPS, budget=BUDGET)
    base.update(over)
    params = small_params(**base)
    return keys, params, genesis_for(params)


def _round(nodes, keys, rng):
    """Every member sends a message on the head; the first node mines; all accept."""
    head = nodes[0].head
    msgs = [message_for(k, nodes[0].params, head, rng.normal(size=head.model.size)) for k in keys]
    for node in nodes[1:]:
        for m in msgs:
            node.on_message(m)
    block = mine_block(nodes[0], msgs)
    for node in nodes:
        node.on_block(block)
    return block


def _recount(node, params):
    """Each identity's spend on the node's canonical chain, counted from scratch."""
    out = {}
    for h in node.canonical_hashes()[1:]:
        for m in node.block(h).messages:
            n, eps = out.get(bytes(m.identity), (0, Fraction(0)))
            out[bytes(m.identity)] = (n + 1, eps + Fraction(str(params.epsilon)))
    return out


def test_every_honest_node_refuses_a_block_with_an_over_budget_message(tmp_path):
    keys, params, genesis = _chain()
    shared = VerdictCache()
    nodes = [Node(genesis, store=SQLiteStore(tmp_path / "a.sqlite"), name="a"), Node(genesis, name="b"),
             Node(genesis, name="c", verdicts=shared), Node(genesis, name="d", verdicts=shared)]
    rng = np.random.default_rng(3)
    for _ in range(3):
        _round(nodes, keys, rng)
    for node in nodes:
        assert node.spend_at(node.head_hash) == _recount(node, params)
        assert node.spend_at(node.head_hash)[bytes(keys[0].address)] == (3, Fraction(3, 10))
    head = nodes[0].head
    # a fourth message from member 0: the mempool refuses it...
    spent = message_for(keys[0], params, head, rng.normal(size=params.dim))
    for node in nodes:
        with pytest.raises(InvalidMessage) as exc:
            node.on_message(spent)
        assert exc.value.reason == "over-budget"
    # ...and a miner that includes it anyway writes a block no honest node accepts
    blk = build_block(head, [spent], params, genesis_hash=genesis.hash, miner=b"\x07" * 20,
                      timestamp=head.header.timestamp + 1000, difficulty=0)
    blk = Block(solve_pow(blk.header), blk.messages, blk.selection, blk.model)
    for node in nodes:
        with pytest.raises(InvalidBlock) as exc:
            node.on_block(blk)
        assert exc.value.reason == "over-budget"
        assert node.head_hash == head.hash
    nodes[0].store.close()
    # a node reopening its store recounts the spend from the blocks and still refuses it
    again = Node(genesis, store=SQLiteStore(tmp_path / "a.sqlite"))
    assert again.spend_at(again.head_hash) == _recount(again, params)
    with pytest.raises(InvalidBlock, match="over-budget"):
        again.on_block(blk)
    again.store.close()
    assert verify_chain(tmp_path / "a.sqlite").ok
    assert verify_chain(tmp_path / "a.sqlite", last=1).ok
    assert replay_last(nodes[1], nodes[1].head_hash, 3) == (True, None, "")
    # written into a store behind the nodes' backs, the block is found by chain verify
    store = SQLiteStore(tmp_path / "a.sqlite")
    store.add(blk, again.work[head.hash] + block_work(blk.header, params), head=blk.hash)
    store.close()
    for last in (None, 1):
        report = verify_chain(tmp_path / "a.sqlite", last=last)
        assert not report.ok and report.first_bad_height == 4 and "over-budget" in report.error


def test_a_block_within_the_budget_of_every_sender_is_accepted_beside_a_spent_one():
    keys, params, genesis = _chain(budget=0.2)
    node = Node(genesis)
    rng = np.random.default_rng(4)
    _round([node], keys, rng)
    _round([node], keys[:2], rng)  # members 0 and 1 have spent 0.2, members 2 and 3 0.1
    head = node.head
    fresh = [message_for(k, params, head, rng.normal(size=params.dim)) for k in keys[2:]]
    block = mine_block(node, fresh)
    assert node.on_block(block).new_head
    assert node.spend_at(block.hash)[bytes(keys[2].address)] == (2, Fraction(1, 5))


def _holders(params, keys, rng):
    holders = []
    for k, key in enumerate(keys):
        x = rng.normal(size=(10, 4))
        y = (x[:, 0] > 0).astype(np.int64)
        h = DataHolder(k, x, y, params, rng=np.random.default_rng(100 + k))
        h.key, h.identities = key, [key.address]
        holders.append(h)
    return holders


def test_holders_stop_at_their_budget_and_say_so_once(caplog):
    keys, params, genesis = _chain()
    holders = _holders(params, keys, np.random.default_rng(5))
    net = InProcessNetwork(genesis, holders, [Miner(Node(genesis), 1.0)], rng=np.random.default_rng(6))
    with caplog.at_level(logging.WARNING, logger="learningchain.holder"):
        for _ in range(3):
            assert net.step().head_changed
        for _ in range(3):  # the head stands: holders are asked again and again
            net._sent_for = None
            with pytest.raises(InvalidBlock, match="too-few-messages"):
                net.step()
    assert net.messages_rejected == {}  # no honest node ever saw an over-budget message
    assert [h.sent for h in holders] == [3] * 4
    assert all(h.spent == Fraction(3, 10) for h in holders)
    stops = [r.getMessage() for r in caplog.records if "stops sending" in r.getMessage()]
    assert len(stops) == 4 and "over its budget of 0.3" in stops[0]
    spend = net.reference.spend_at(net.head.hash)
    assert {bytes(k.address): (3, Fraction(3, 10)) for k in keys} == spend
