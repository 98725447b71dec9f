"""The node's record of verified messages (shared through the verdict cache): it skips
a second signature check of the same bytes, holds only messages the node admitted or
found in a valid block, and is bounded."""

import numpy as np

from learningchain.node import Node, VerdictCache
from learningchain.node.actions import MessageRefused
from learningchain.node.policy import NETWORK_RULES
from learningchain.node.records import VerifiedMessages

from ..helpers import genesis_for, honest_vectors, make_keys, message_for, small_params


def test_messages_the_pool_refuses_leave_no_trace():
    """A flood of valid messages past the pool's room for one base: each is refused
    (mempool-full, not penalised) and none is remembered as verified, in the node's own
    record or in the verdict cache it shares."""
    params = small_params(max_messages=8)
    genesis = genesis_for(params)
    cache = VerdictCache()
    node = Node(genesis, rules=NETWORK_RULES, verdicts=cache)
    flood = [message_for(k, params, genesis, np.ones(params.dim)) for k in make_keys(200, seed=11)]
    refused = []
    for m in flood:
        refused += [a for a in node.policy.on_messages([(m, m.encode())], "peer-1", 0)
                    if isinstance(a, MessageRefused)]
    assert len(refused) == len(flood) - 8 and {a.reason for a in refused} == {"mempool-full"}
    admitted = {m.hash for m in node.mempool.for_base(genesis.hash)}
    assert len(admitted) == 8
    assert set(node._verified) == admitted and set(cache.messages) == admitted


def test_work_sharing_is_kept(monkeypatch):
    """A message one node admitted is not checked again by a node sharing its verdict
    cache, nor by either when a block carries it."""
    import learningchain.node.node as node_module
    import learningchain.protocol.transition as transition

    params = small_params()
    genesis = genesis_for(params)
    cache = VerdictCache()
    a, b = Node(genesis, verdicts=cache, name="a"), Node(genesis, verdicts=cache, name="b")
    msgs = [message_for(k, params, genesis, v)
            for k, v in zip(make_keys(4, seed=3), honest_vectors(params, 4, np.random.default_rng(3)))]
    for m in msgs:
        a.on_message(m)
    calls = []
    for module in (node_module, transition):
        real = module.validate_message
        monkeypatch.setattr(module, "validate_message",
                            lambda msg, *args, _real=real, **kw: (calls.append(msg.hash), _real(msg, *args, **kw)))
    for m in msgs:
        b.on_message(m)
    block = a.seal(a.template(timestamp=genesis.header.timestamp + 1000))
    cache.blocks.clear()  # no verdict on the block itself: each node validates it
    assert a.on_block(block).new_head
    cache.blocks.clear()
    assert b.on_block(block).new_head
    assert calls == []


def test_the_record_is_bounded_least_recently_used_first():
    seen = VerifiedMessages(limit=3)
    hashes = [bytes([i]) * 32 for i in range(5)]
    for h in hashes[:3]:
        seen.add(h)
    assert hashes[0] in seen  # a look-up keeps it
    seen |= {hashes[3]}
    assert list(seen) == [hashes[2], hashes[0], hashes[3]]  # the oldest unused, hashes[1], went
    seen.update(hashes[4:])
    assert list(seen) == [hashes[0], hashes[3], hashes[4]]


def test_a_node_bounds_its_record_to_what_its_pool_can_use():
    """At least twice the messages the pool can hold, and no more than the larger of that
    and the default bound, however many messages come."""
    params = small_params(max_messages=8)
    genesis = genesis_for(params)
    node = Node(genesis, verdicts=VerdictCache(messages=VerifiedMessages(limit=1)))
    limit = 2 * node.mempool.max_bases * params.max_messages
    assert node._verified.limit == limit
    for base_round in range(limit // 8 + 4):  # more admitted messages than the limit, over many blocks
        node._verified.update(bytes([base_round % 256, base_round // 256, i]) * 8 + b"\0" * 8 for i in range(8))
    assert len(node._verified) == limit
