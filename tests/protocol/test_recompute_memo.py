"""A block's recomputation is remembered by what determines it, never trusted from the block.

``transition._recompute`` keeps its last few results keyed by the parent block, the
messages' hashes and the parameters: a miner's node validating the block it built (or
the honest nodes of one simulation validating one block object) gets the result of the
same pure function instead of aggregating again. These tests check that the remembered
result is the recomputed one, that a forged block is still refused, and that nothing
else (other parameters, other messages) is served from it.
"""

import dataclasses

import numpy as np
import pytest

from learningchain.errors import InvalidBlock
from learningchain.node import Node
from learningchain.protocol import Block, model_hash, validate_block
from learningchain.protocol import transition
from learningchain.protocol.aggregation import aggregate
from learningchain.protocol.block import selection_hash
from learningchain.protocol.consensus import solve_pow
from learningchain.protocol.transition import apply_update, build_block, make_batch

from ..helpers import genesis_for, honest_vectors, make_keys, message_for, small_params


@pytest.fixture
def parts(monkeypatch):
    transition._RECOMPUTED.clear()
    calls = []
    real = transition.aggregate

    def counting(batch, params):
        calls.append(batch.keys)
        return real(batch, params)

    monkeypatch.setattr(transition, "aggregate", counting)
    params = small_params()
    genesis = genesis_for(params)
    keys = make_keys(6)
    msgs = [message_for(k, params, genesis, v)
            for k, v in zip(keys, honest_vectors(params, 6, np.random.default_rng(0)))]
    return params, genesis, msgs, calls


def _build(params, genesis, msgs):
    block = build_block(genesis, msgs, params, genesis_hash=genesis.hash, miner=b"\x01" * 20,
                        timestamp=2000, difficulty=params.difficulty)
    return Block(solve_pow(block.header), block.messages, block.selection, block.model)


def _validate(block, genesis, params):
    return validate_block(block, genesis, params, genesis_hash=genesis.hash,
                          ancestor={genesis.hash: genesis.header}.__getitem__)


def test_validating_a_built_block_aggregates_once_and_matches_a_fresh_computation(parts):
    params, genesis, msgs, calls = parts
    block = _build(params, genesis, msgs)
    result = _validate(block, genesis, params)
    assert len(calls) == 1  # the build's aggregation, remembered for the validation
    fresh = aggregate(make_batch(block.messages, params), params)
    assert result.aggregate.selection == fresh.selection == block.selection
    assert result.aggregate.gradient.tobytes() == fresh.gradient.tobytes()
    assert block.model.tobytes() == apply_update(genesis.model, fresh.gradient, params).tobytes()
    assert not result.aggregate.gradient.flags.writeable and not block.model.flags.writeable


def test_a_forged_block_on_the_same_parent_and_messages_is_still_refused(parts):
    params, genesis, msgs, calls = parts
    block = _build(params, genesis, msgs)
    model = block.model.copy()
    model[0] += 1e-9
    forged = Block(solve_pow(dataclasses.replace(block.header, model_hash=model_hash(model), seal=b"")),
                   block.messages, block.selection, model)
    with pytest.raises(InvalidBlock) as info:
        _validate(forged, genesis, params)
    assert info.value.reason == "bad-model"
    other = tuple(i for i in range(len(block.messages)) if i not in block.selection)[:len(block.selection)]
    reselected = Block(solve_pow(dataclasses.replace(block.header, selection_hash=selection_hash(other), seal=b"")),
                       block.messages, other, block.model)
    with pytest.raises(InvalidBlock) as info:
        _validate(reselected, genesis, params)
    assert info.value.reason == "bad-selection"
    assert len(calls) == 1


def test_other_parameters_or_messages_are_computed_afresh(parts):
    params, genesis, msgs, calls = parts
    first = _build(params, genesis, msgs)
    faster = dataclasses.replace(params, lr=params.lr * 2)
    second = _build(faster, genesis, msgs)
    assert len(calls) == 2 and second.model.tobytes() != first.model.tobytes()
    fewer = _build(params, genesis, msgs[:-1])
    assert len(calls) == 3 and fewer.model.tobytes() != first.model.tobytes()
    _validate(second, genesis, faster)  # remembered under its own parameters
    assert len(calls) == 3
    with pytest.raises(InvalidBlock) as info:  # never served under other parameters: computed afresh
        _validate(second, genesis, params)
    assert info.value.reason == "bad-model" and len(calls) == 4
    _validate(first, genesis, params)  # and remembered now
    assert len(calls) == 4


def test_a_node_validating_its_own_mined_block_agrees_with_one_that_did_not_build_it(parts):
    params, genesis, msgs, calls = parts
    miner = Node(genesis, miner=b"\x02" * 20)
    for m in msgs:
        miner.on_message(m)
    block = miner.seal(miner.template(timestamp=2000))
    assert miner.on_block(block).status == "accepted"
    transition._RECOMPUTED.clear()
    other = Node(genesis)
    assert other.on_block(block).status == "accepted" and other.head.hash == block.hash
    assert len(calls) == 2  # the template, then the other node's own aggregation


def test_a_parent_object_whose_model_is_not_the_one_its_hash_commits_to_shares_no_result(parts):
    """The parent's hash names its model only when the object is consistent: a Block
    carrying the real parent's header over another model (an unchecked copy) must neither
    get the real parent's remembered result nor leave its own for the real parent."""
    params, genesis, msgs, calls = parts
    wrong = Block(genesis.header, (), (), genesis.model + 1.0, genesis.params)
    assert wrong.hash == genesis.hash
    forged = _build(params, wrong, msgs)  # the rule applied to the wrong model
    with pytest.raises(InvalidBlock) as info:  # on the real parent, its model is not the rule's
        _validate(forged, genesis, params)
    assert info.value.reason == "bad-model" and len(calls) == 2
    honest = _build(params, genesis, msgs)
    assert honest.model.tobytes() != forged.model.tobytes()
    _validate(honest, genesis, params)
    assert len(calls) == 2  # remembered under the real parent's model now
    copy = Block(genesis.header, (), (), genesis.model.copy(), genesis.params)
    _validate(honest, copy, params)  # an equal model in another object is the same input
    assert len(calls) == 2


def test_parameters_that_compare_equal_but_encode_differently_are_computed_afresh(parts):
    params, genesis, msgs, calls = parts
    negative_zero = dataclasses.replace(params, lam=-0.0)
    assert negative_zero == params and negative_zero.encode() != params.encode()
    transition._recompute(genesis, msgs, params)
    transition._recompute(genesis, msgs, negative_zero)
    assert len(calls) == 2
    transition._recompute(genesis, msgs, dataclasses.replace(negative_zero))  # another object, the same encoding
    assert len(calls) == 2


def test_the_memory_holds_four_results_at_most(parts):
    params, genesis, msgs, calls = parts
    for k in range(2, len(msgs) + 1):
        transition._recompute(genesis, msgs[:k], params)
    assert len(transition._RECOMPUTED) == transition._RECOMPUTED_SIZE == 4
    assert len(calls) == len(msgs) - 1


def test_the_same_parameters_object_changed_in_place_is_computed_afresh(parts):
    params, genesis, msgs, calls = parts
    params = dataclasses.replace(params, aggregator_options={"l": 3})
    first = transition._recompute(genesis, msgs, params)
    params.aggregator_options["l"] = 2  # a frozen dataclass still holds a mutable dict
    second = transition._recompute(genesis, msgs, params)
    assert len(calls) == 2 and len(second[0].selection) == 2 != len(first[0].selection)
