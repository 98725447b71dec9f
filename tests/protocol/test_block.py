"""Blocks: encoding, and validation by recomputation refusing every forged part."""

import dataclasses

import numpy as np
import pytest

from learningchain.errors import DecodeError, InvalidBlock
from learningchain.node import Node
from learningchain.protocol import Block, decode_block, merkle_root, model_hash, validate_block
from learningchain.protocol.block import Header, selection_hash
from learningchain.protocol.consensus import solve_pow
from learningchain.protocol.transition import apply_update, make_batch
from learningchain.protocol.aggregation import aggregate

from ..helpers import genesis_for, honest_vectors, make_keys, message_for, mine_block, small_params


@pytest.fixture
def chain():
    params = small_params()
    genesis = genesis_for(params)
    node = Node(genesis)
    keys = make_keys(6)
    rng = np.random.default_rng(0)
    msgs = [message_for(k, params, genesis, v) for k, v in zip(keys, honest_vectors(params, 6, rng))]
    block = mine_block(node, msgs)
    return params, genesis, node, block


def validate(block, parent, params, genesis):
    headers = {genesis.hash: genesis.header}
    return validate_block(block, parent, params, genesis_hash=genesis.hash, ancestor=headers.__getitem__)


def reseal(header: Header) -> Header:
    return solve_pow(header.with_seal(b""))


def test_mined_block_is_valid_and_round_trips(chain):
    params, genesis, node, block = chain
    validate(block, genesis, params, genesis)
    back = decode_block(block.encode(), max_dim=params.dim, max_messages=params.max_messages)
    assert back == block and back.hash == block.hash
    assert list(back.selection) == list(block.selection)


def test_block_model_is_the_l_nearest_update(chain):
    params, genesis, _, block = chain
    agg = aggregate(make_batch(block.messages, params), params)
    assert agg.selection == block.selection and len(block.selection) == params.l
    np.testing.assert_array_equal(block.model, apply_update(genesis.model, agg.gradient, params))
    # descent: the model moved against the mean selected gradient
    step = block.model - genesis.model
    assert np.dot(step, agg.gradient) < 0


def resealed_block(block, **header_changes):
    header = dataclasses.replace(block.header, seal=b"", **header_changes)
    return Block(reseal(header), block.messages, block.selection, block.model)


def test_wrong_model_with_consistent_hash_is_refused(chain):
    params, genesis, _, block = chain
    model = block.model.copy()
    model[0] += 1e-9
    forged = Block(reseal(dataclasses.replace(block.header, model_hash=model_hash(model), seal=b"")),
                   block.messages, block.selection, model)
    with pytest.raises(InvalidBlock) as info:
        validate(forged, genesis, params, genesis)
    assert info.value.reason == "bad-model" and info.value.height == 1


def test_wrong_selection_is_refused(chain):
    params, genesis, _, block = chain
    sel = tuple(sorted(set(range(len(block.messages))) - set(block.selection)))[: len(block.selection)]
    forged = Block(reseal(dataclasses.replace(block.header, selection_hash=selection_hash(sel), seal=b"")),
                   block.messages, sel, block.model)
    with pytest.raises(InvalidBlock) as info:
        validate(forged, genesis, params, genesis)
    assert info.value.reason == "bad-selection"


def test_body_that_does_not_match_the_header_is_refused(chain):
    params, genesis, _, block = chain
    with pytest.raises(InvalidBlock, match="bad-messages-root"):
        validate(Block(block.header, block.messages[:-1], block.selection, block.model), genesis, params, genesis)
    model = block.model.copy()
    model[1] = 7.0
    with pytest.raises(InvalidBlock, match="bad-model-hash"):
        validate(Block(block.header, block.messages, block.selection, model), genesis, params, genesis)


def test_insufficient_proof_of_work_is_refused(chain):
    params, genesis, _, block = chain
    nonce = int.from_bytes(block.header.seal, "little")
    for other in range(nonce + 1, nonce + 200):
        candidate = block.header.with_seal(other.to_bytes(8, "little"))
        try:
            from learningchain.protocol.consensus import check_pow

            check_pow(candidate)
        except InvalidBlock:
            bad = Block(candidate, block.messages, block.selection, block.model)
            with pytest.raises(InvalidBlock) as info:
                validate(bad, genesis, params, genesis)
            assert info.value.reason == "bad-pow"
            return
    pytest.fail("no failing nonce found")


@pytest.mark.parametrize("change,reason", [
    ({"height": 2}, "bad-height"),
    ({"parent": b"\x01" * 32}, "bad-parent"),
    ({"timestamp": 0}, "bad-timestamp"),
    ({"difficulty": 3}, "bad-difficulty"),
    ({"genesis": b"\x02" * 32}, "wrong-chain"),
    ({"params_hash": b"\x03" * 32}, "wrong-params"),
])
def test_bad_header_fields_are_refused(chain, change, reason):
    params, genesis, _, block = chain
    with pytest.raises(InvalidBlock) as info:
        validate(resealed_block(block, **change), genesis, params, genesis)
    assert info.value.reason == reason


def test_duplicate_or_unordered_messages_are_refused(chain):
    params, genesis, _, block = chain
    msgs = (block.messages[1], block.messages[0]) + block.messages[2:]
    header = dataclasses.replace(block.header, messages_root=merkle_root([m.hash for m in msgs]), seal=b"")
    with pytest.raises(InvalidBlock, match="non-canonical-order"):
        validate(Block(reseal(header), msgs, block.selection, block.model), genesis, params, genesis)


def test_message_for_another_round_inside_a_block_is_refused(chain):
    params, genesis, node, block = chain
    node.on_block(block)
    keys = make_keys(2, seed=99)
    stale = message_for(keys[0], params, genesis, np.ones(params.dim))  # computed at genesis, not block 1
    fresh = message_for(keys[1], params, block, np.ones(params.dim))
    from learningchain.protocol import build_block

    child = build_block(block, [stale, fresh], params, genesis_hash=genesis.hash, miner=b"\x00" * 20,
                        timestamp=block.header.timestamp + 1, difficulty=params.difficulty)
    child = Block(solve_pow(child.header), child.messages, child.selection, child.model)
    headers = {genesis.hash: genesis.header, block.hash: block.header}
    with pytest.raises(InvalidBlock, match="bad-message") as info:
        validate_block(child, block, params, genesis_hash=genesis.hash, ancestor=headers.__getitem__)
    assert "round" in str(info.value)


@pytest.mark.parametrize("cut", [0, 5, 100, -1])
def test_truncated_block_bytes_are_refused(chain, cut):
    params, _, _, block = chain
    with pytest.raises(DecodeError):
        decode_block(block.encode()[:cut], max_dim=params.dim, max_messages=params.max_messages)


def test_merkle_root_depends_on_count_and_order():
    a, b, c = (bytes([i]) * 32 for i in (1, 2, 3))
    roots = {merkle_root([]), merkle_root([a]), merkle_root([a, b]), merkle_root([b, a]), merkle_root([a, b, c]),
             merkle_root([a, b, c, c])}
    assert len(roots) == 6


def test_validate_block_reads_verified_and_returns_what_it_checked(chain):
    params, genesis, _, block = chain
    headers = {genesis.hash: genesis.header}
    hashes = {m.hash for m in block.messages}
    verified = set()
    result = validate_block(block, genesis, params, genesis_hash=genesis.hash, ancestor=headers.__getitem__,
                            verified=verified)
    assert verified == set()  # the caller's set is left alone
    assert result.checked == hashes
    assert result.selection == block.selection
    agg = aggregate(make_batch(block.messages, params), params)
    assert np.array_equal(result.gradient, agg.gradient)
    first = block.messages[0].hash
    known = frozenset({first})
    again = validate_block(block, genesis, params, genesis_hash=genesis.hash, ancestor=headers.__getitem__,
                           verified=known)
    assert again.checked == hashes - {first} and known == {first}


def test_a_refused_block_leaves_verified_unchanged(chain):
    params, genesis, _, block = chain
    headers = {genesis.hash: genesis.header}
    model = block.model + 1.0
    forged = Block(reseal(dataclasses.replace(block.header, model_hash=model_hash(model), seal=b"")),
                   block.messages, block.selection, model)
    verified = set()
    with pytest.raises(InvalidBlock):
        validate_block(forged, genesis, params, genesis_hash=genesis.hash, ancestor=headers.__getitem__,
                       verified=verified)
    assert verified == set()


def _reference_root(hashes):
    """The tree of merkle_root's docstring, written out recursively (no memo)."""
    from learningchain.crypto import keccak256

    def up(nodes):
        if len(nodes) <= 1:
            return nodes[0] if nodes else bytes(32)
        pairs = [keccak256(b"\x01" + nodes[i] + nodes[i + 1]) for i in range(0, len(nodes) - 1, 2)]
        return up(pairs + ([nodes[-1]] if len(nodes) % 2 else []))

    top = up([keccak256(b"\x00" + h) for h in hashes])
    return keccak256(b"\x02" + len(hashes).to_bytes(4, "little") + top)


def test_merkle_root_matches_the_tree_for_every_list_even_when_remembered():
    rng = np.random.default_rng(7)
    lists = [[rng.bytes(32) for _ in range(n)] for n in (0, 1, 2, 3, 7, 8, 33, 100)]
    lists.append(lists[-1][:-1] + [bytes(32)])  # one leaf changed
    lists.append(list(reversed(lists[-2])))
    for _ in range(3):  # again and again: answers from the memo must be the same
        for hashes in lists:
            assert merkle_root(hashes) == _reference_root(hashes)
            assert merkle_root(list(hashes)) == merkle_root(tuple(hashes))
