"""Compact messages: a genesis with ``message_bits`` = 16 makes every message carry
int16 entries (scale 2^14), half the bytes to sign, send and store, with the same
exact consensus arithmetic (DESIGN.md section 3)."""

import dataclasses

import numpy as np
import pytest

from learningchain.config import TrainConfig
from learningchain.errors import ConfigError, InvalidBlock, InvalidMessage
from learningchain.experiments.train import run_training
from learningchain.holder import encode_vector
from learningchain.node import Node
from learningchain.node.verify import verify_chain
from learningchain.protocol import decode_block, validate_message
from learningchain.protocol.aggregation import aggregate
from learningchain.protocol.message import sign_message
from learningchain.protocol.quantize import entry_max, max_quant_bits, unit_limit
from learningchain.protocol.transition import make_batch

from ..helpers import genesis_for, honest_vectors, make_keys, message_for, mine_block, small_params


def compact_params(**over):
    return small_params(message_bits=16, quant_bits=14, **over)


def test_the_width_must_hold_the_unit_bound():
    with pytest.raises(ConfigError, match="message_bits=16 cannot hold the unit bound of quant_bits=20"):
        small_params(message_bits=16)
    with pytest.raises(ConfigError, match="message_bits must be one of"):
        small_params(message_bits=8)
    assert max_quant_bits(16) == 14
    for tol in range(4, 15):  # every tolerance at the largest scale fits, one more bit does not
        assert unit_limit(14, tol) <= entry_max(16) < unit_limit(15, min(tol, 15))
        compact_params(norm_tol_bits=tol)


def test_message_bits_is_in_genesis_only_when_it_is_not_the_default():
    assert "message_bits" not in small_params().to_dict()
    assert compact_params().to_dict()["message_bits"] == 16
    assert genesis_for(compact_params()).hash != genesis_for(small_params(quant_bits=14)).hash


def test_holders_encode_int16_and_a_compact_chain_validates_its_blocks():
    params = compact_params(dim=5)
    genesis = genesis_for(params)
    node = Node(genesis)
    keys = make_keys(6)
    vectors = honest_vectors(params, 6, np.random.default_rng(1))
    msgs = [message_for(k, params, genesis, v) for k, v in zip(keys, vectors)]
    assert all(m.q.dtype == np.int16 and m.width == 16 for m in msgs)
    block = mine_block(node, msgs)
    assert node.on_block(block).status == "accepted" and node.head.hash == block.hash
    back = decode_block(block.encode(), max_dim=params.dim, max_messages=params.max_messages)
    assert back == block and all(m.q.dtype == np.int16 for m in back.messages)
    other = Node(genesis)
    assert other.on_block(back).status == "accepted"
    # the 32-bit chain of the same parameters carries twice the gradient bytes
    wide = small_params(quant_bits=14)
    wide_msgs = [message_for(k, wide, genesis_for(wide), v) for k, v in zip(keys, vectors)]
    assert [len(m.encode()) - len(c.encode()) for m, c in zip(wide_msgs, msgs)] == [2 * params.dim] * 6


def test_a_message_of_the_other_width_is_refused():
    compact, wide = compact_params(), small_params(quant_bits=14)
    genesis = genesis_for(compact)
    key = make_keys(1)[0]
    norm, q = encode_vector(np.ones(compact.dim), compact)
    as32 = sign_message(key, round=0, base=genesis.hash, norm=norm, q=q.astype(np.int32))
    with pytest.raises(InvalidMessage, match="32-bit, the chain's messages carry 16-bit") as info:
        validate_message(as32, compact)
    assert info.value.reason == "wrong-width"
    as16 = sign_message(key, round=0, base=genesis.hash, norm=norm, q=q)
    with pytest.raises(InvalidMessage, match="wrong-width|16-bit"):
        validate_message(as16, wide)
    node = Node(genesis)
    with pytest.raises(InvalidMessage):
        node.on_message(as32)


def test_a_block_with_a_message_of_the_other_width_is_refused():
    params = compact_params()
    genesis = genesis_for(params)
    miner = Node(genesis, miner=b"\x01" * 20)
    keys = make_keys(6)
    msgs = [message_for(k, params, genesis, v)
            for k, v in zip(keys, honest_vectors(params, 6, np.random.default_rng(2)))]
    wide = sign_message(keys[0], round=0, base=genesis.hash, norm=msgs[0].norm, q=msgs[0].q.astype(np.int32))
    from learningchain.protocol.transition import build_block
    from learningchain.protocol.consensus import solve_pow
    from learningchain.protocol import Block
    block = build_block(genesis, [wide, *msgs[1:]], params, genesis_hash=genesis.hash, miner=b"\x01" * 20,
                        timestamp=2000, difficulty=params.difficulty)
    block = Block(solve_pow(block.header), block.messages, block.selection, block.model)
    with pytest.raises(InvalidBlock, match="wrong-width|32-bit") as info:
        miner.on_block(block)
    assert info.value.reason == "bad-message"


def test_the_rules_give_the_same_result_on_int16_and_on_the_same_integers_as_int32():
    rng = np.random.default_rng(3)
    for aggregator, options in [("l-nearest", {"l": 4}), ("krum", {"f": 2}), ("median", {}),
                                ("centered-clipping", {})]:
        params = compact_params(dim=40, holders=9, aggregator=aggregator, aggregator_options=options)
        genesis = genesis_for(params)
        msgs = [message_for(k, params, genesis, v) for k, v in
                zip(make_keys(9), honest_vectors(params, 9, rng, spread=1.0))]
        batch = make_batch(sorted(msgs, key=lambda m: m.hash), params)
        assert batch.q.dtype == np.int16
        wide = dataclasses.replace(batch, q=batch.q.astype(np.int32))
        a, b = aggregate(batch, params), aggregate(wide, params)
        assert a.selection == b.selection and a.gradient.tobytes() == b.gradient.tobytes(), aggregator


def test_a_compact_run_trains_and_verifies(tmp_path):
    cfg = TrainConfig(dataset="breast-cancer", holders=6, rounds=4, difficulty=2, progress=False,
                      message_bits=16, out=str(tmp_path / "run"))
    summary = run_training(cfg)
    assert summary["height"] == 4
    report = verify_chain(tmp_path / "run" / "chain.sqlite")
    assert report.ok, report.describe()
    from learningchain.node.store import SQLiteStore
    store = SQLiteStore(tmp_path / "run" / "chain.sqlite")
    try:
        head = store.get(store.head_hash())
        assert head.messages and all(m.width == 16 for m in head.messages)
    finally:
        store.close()


def test_the_ethereum_backend_refuses_compact_messages():
    from learningchain.cli.main import build_parser, train_config_from_args
    argv = ["train", "--backend", "ethereum", "--message-bits", "16"]
    with pytest.raises(ConfigError, match="^message_bits = 16 is not used by this run"):
        train_config_from_args(build_parser().parse_args(argv))
    from learningchain.ethereum.fixedpoint import FixedRule
    with pytest.raises(ConfigError, match="32-bit messages"):
        FixedRule.from_params(compact_params())


def test_genesis_refuses_a_compact_width_too_coarse_for_the_model_and_a_million_entries_fit():
    with pytest.raises(ConfigError, match="rounds a unit vector of d=3000000 entries"):
        compact_params(dim=3_000_000)
    params = compact_params(dim=1_068_810)  # the million-parameter MLP of docs/SCALE.md
    rng = np.random.default_rng(4)
    for vector in (rng.normal(size=params.dim), rng.standard_cauchy(size=params.dim)):
        norm, q = encode_vector(vector, params)  # raises InvalidMessage when the unit check fails
        assert q.dtype == np.int16 and abs(int(np.dot(q.astype(np.int64), q)) / 4.0**14 - 1) < 2.0**-10


def test_message_bits_must_be_an_integer():
    """16.0 equals 16 in every comparison the width takes part in, so a genesis writing
    "message_bits": 16.0 would run as a compact chain under another encoding of the
    same rules; the width is an integer, as quant_bits is."""
    for bad in (16.0, 32.0, True):
        with pytest.raises(ConfigError, match="message_bits must be one of"):
            small_params(message_bits=bad, quant_bits=14)
    raw = compact_params().encode()
    assert b'"message_bits":16' in raw
    from learningchain.protocol.params import ProtocolParams
    with pytest.raises(ConfigError, match="message_bits must be one of"):
        ProtocolParams.decode(raw.replace(b'"message_bits":16', b'"message_bits":16.0'))
    assert ProtocolParams.decode(raw).message_bits == 16
