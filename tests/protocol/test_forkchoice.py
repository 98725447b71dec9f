"""Fork choice: the heaviest chain, equal work to the lower hash, whatever the order
in which the tips are seen (consensus-specs style scenarios)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learningchain.protocol.block import Header
from learningchain.protocol.forkchoice import block_work, chain_work, choose_head, head_key, is_heavier
from learningchain.types import ZERO_ADDRESS, ZERO_HASH

from ..helpers import small_params

POW = small_params(difficulty=4)


def branch(base: Header, difficulties, *, salt: int = 0) -> list:
    """Headers on ``base`` with the given difficulties; ``salt`` makes sibling branches differ."""
    out, parent = [], base
    for d in difficulties:
        h = Header(height=parent.height + 1, parent=parent.hash, genesis=ZERO_HASH, timestamp=1000 + salt,
                   params_hash=ZERO_HASH, messages_root=ZERO_HASH, selection_hash=ZERO_HASH,
                   model_hash=ZERO_HASH, miner=ZERO_ADDRESS, difficulty=d)
        out.append(h)
        parent = h
    return out


GENESIS = Header(height=0, parent=ZERO_HASH, genesis=ZERO_HASH, timestamp=0, params_hash=ZERO_HASH,
                 messages_root=ZERO_HASH, selection_hash=ZERO_HASH, model_hash=ZERO_HASH,
                 miner=ZERO_ADDRESS, difficulty=4)


def tip(headers, params=POW):
    return chain_work(0, headers, params), headers[-1].hash


def test_genesis_weighs_nothing_and_a_pow_block_two_to_its_difficulty():
    assert block_work(GENESIS, POW) == 0
    assert [block_work(h, POW) for h in branch(GENESIS, [0, 4, 9])] == [1, 16, 512]


def test_authority_block_weighs_the_difficulty_it_states():
    poa = small_params(consensus="poa", authorities=("0x" + "11" * 20,), difficulty=0)
    assert [block_work(h, poa) for h in branch(GENESIS, [2, 1, 2])] == [2, 1, 2]


def test_chain_work_adds_to_its_base():
    headers = branch(GENESIS, [4, 5, 6])
    assert chain_work(0, headers, POW) == 16 + 32 + 64
    assert chain_work(16, headers[1:], POW) == chain_work(0, headers, POW)


def test_longer_chain_of_equal_blocks_wins():
    short, long_ = branch(GENESIS, [4, 4], salt=1), branch(GENESIS, [4, 4, 4], salt=2)
    assert choose_head([tip(short), tip(long_)]) == long_[-1].hash


def test_shorter_chain_but_heavier_weight():
    light = branch(GENESIS, [4, 4, 4], salt=1)  # 48
    heavy = branch(GENESIS, [5, 5], salt=2)  # 64
    assert choose_head([tip(light), tip(heavy)]) == heavy[-1].hash
    assert is_heavier(*tip(heavy), *tip(light)) and not is_heavier(*tip(light), *tip(heavy))


def test_in_turn_authority_chain_beats_a_longer_out_of_turn_one():
    poa = small_params(consensus="poa", authorities=("0x" + "11" * 20,), difficulty=0)
    in_turn = branch(GENESIS, [2, 2], salt=1)  # 4
    out_of_turn = branch(GENESIS, [1, 1, 1], salt=2)  # 3
    assert choose_head([tip(out_of_turn, poa), tip(in_turn, poa)]) == in_turn[-1].hash


def test_equal_work_goes_to_the_lower_hash_whatever_the_arrival_order():
    tips = [tip(branch(GENESIS, [4, 4], salt=s)) for s in range(4)]
    lowest = min(h for _, h in tips)
    for order in itertools.permutations(tips):
        assert choose_head(order) == lowest
        assert max(order, key=lambda t: head_key(*t))[1] == lowest


def test_a_tip_is_not_heavier_than_itself():
    work, h = tip(branch(GENESIS, [4]))
    assert not is_heavier(work, h, work, h)


def test_no_tips_is_an_error():
    with pytest.raises(ValueError):
        choose_head([])


hashes = st.binary(min_size=32, max_size=32)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), hashes), min_size=1, max_size=12))
def test_head_key_and_choose_head_agree_with_is_heavier(tips):
    best = max(tips, key=lambda t: head_key(*t))
    assert choose_head(tips) == best[1]
    assert not any(is_heavier(*t, *best) for t in tips)  # no tip beats the head


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**70), hashes, st.integers(0, 2**70), hashes)
def test_is_heavier_is_a_strict_order(wa, ha, wb, hb):
    if (wa, ha) != (wb, hb):
        assert is_heavier(wa, ha, wb, hb) != is_heavier(wb, hb, wa, ha)
    assert (head_key(wa, ha) > head_key(wb, hb)) == is_heavier(wa, ha, wb, hb)


def test_node_picks_the_same_head_as_choose_head():
    """The node's head among two competing children of genesis is the rule's choice."""
    import numpy as np

    from learningchain.node import Node

    from ..helpers import genesis_for, honest_vectors, make_keys, message_for, mine_block

    params = small_params()
    genesis = genesis_for(params)
    rng = np.random.default_rng(5)
    keys = make_keys(6)
    miners = [Node(genesis, miner=bytes([i + 1]) * 20) for i in range(2)]
    blocks = []
    for i, node in enumerate(miners):
        msgs = [message_for(k, params, genesis, v) for k, v in zip(keys[i * 3:i * 3 + 3],
                                                                  honest_vectors(params, 3, rng))]
        blocks.append(mine_block(node, msgs))
    want = choose_head([(block_work(b.header, params), b.hash) for b in blocks])
    for order in (blocks, blocks[::-1]):
        node = Node(genesis)
        for b in order:
            node.on_block(b)
        assert node.head_hash == want
