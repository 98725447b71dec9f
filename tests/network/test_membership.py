"""Permissioned membership: genesis lists the enrolled holders' identities, nodes
refuse messages from any other key (and blocks carrying them), and a chain
without members keeps the paper's open membership and its genesis hash."""

import asyncio

import numpy as np
import pytest

from learningchain.crypto import PrivateKey
from learningchain.errors import ConfigError, InvalidBlock, InvalidMessage
from learningchain.network.daemon import load_or_create_key
from learningchain.network.wire import Kind
from learningchain.node.node import Node
from learningchain.protocol import build_block
from learningchain.protocol.consensus import solve_pow
from learningchain.protocol.message import validate_message
from learningchain.protocol import Block, ProtocolParams
from learningchain.protocol.transition import validate_block

from ..helpers import genesis_for, make_keys, message_for, small_params
from .netkit import RawPeer, small_conf, start, wait_until


def _params(members=()):
    return small_params(members=tuple(members), difficulty=0)


def test_open_membership_keeps_its_genesis_encoding_and_enrolled_membership_is_committed():
    open_ = _params()
    assert b"members" not in open_.encode()  # chains made before membership keep their genesis hashes
    keys = make_keys(3)
    closed = _params("0x" + k.address.hex() for k in keys)
    assert ProtocolParams.decode(closed.encode()) == closed
    assert closed.encode() != open_.encode()
    with pytest.raises(ConfigError, match="listed twice"):
        _params(["0x" + keys[0].address.hex()] * 2)
    with pytest.raises(ConfigError, match="not a 0x-hex"):
        _params(["0x1234"])


def test_a_message_or_block_from_a_key_that_is_not_enrolled_is_refused():
    keys = make_keys(5, seed=3)
    members, outsider = keys[:4], keys[4]
    params = _params("0x" + k.address.hex() for k in members)
    genesis = genesis_for(params)
    rng = np.random.default_rng(0)
    inside = message_for(members[0], params, genesis, rng.normal(size=params.dim))
    validate_message(inside, params, round=0, base=genesis.hash)
    sybil = message_for(outsider, params, genesis, 1e6 * rng.normal(size=params.dim))
    with pytest.raises(InvalidMessage) as exc:
        validate_message(sybil, params, round=0, base=genesis.hash)
    assert exc.value.reason == "not-enrolled"
    # a block carrying it is invalid on every node (the rule is in genesis)
    blk = build_block(genesis, [inside, sybil], params, genesis_hash=genesis.hash, miner=b"\x01" * 20,
                      timestamp=2000, difficulty=0)
    blk = Block(solve_pow(blk.header), blk.messages, blk.selection, blk.model)
    with pytest.raises(InvalidBlock, match="not an enrolled holder"):
        validate_block(blk, genesis, params, genesis_hash=genesis.hash, ancestor=lambda h: genesis.header)
    node = Node(genesis)
    with pytest.raises(InvalidMessage):
        node.on_message(sybil)
    # open membership: the same message is fine
    validate_message(sybil, _params(), round=0, base=genesis.hash)


def test_in_a_permissioned_network_no_sybil_message_reaches_a_block(tmp_path):
    """24 validly signed messages of norm 1e6 from fresh keys (the open network's
    Sybil takeover) are refused, cost their sender a ban, and never reach a block."""
    members = tuple("0x" + load_or_create_key(tmp_path / "a" / f"holder-{k}.key").address.hex() for k in range(4))
    conf = small_conf(rounds=6, members=members, max_misbehaviour=100, stop_height=0)
    assert conf.network.members == members

    async def main():
        a = await start(conf, tmp_path, "a", holder_indices="0-3")
        try:
            assert a.params.max_messages == 4 and a.params.members == members
            evil = await RawPeer.connect(a, node_id=b"\x51" * 20)
            await asyncio.sleep(0.3)
            rng = np.random.default_rng(1)
            for key in make_keys(24, seed=11):
                msg = message_for(key, a.params, a.node.head, 1e6 * rng.normal(size=a.params.dim))
                evil.send(Kind.MESSAGE, msg.encode())
            await evil.writer.drain()
            await wait_until(lambda: a.transport.refusals.get("not-enrolled", 0) >= 10, 10, "refusals")
            a.stop_height = 6
            await wait_until(lambda: a.node.height >= 6, 60, "six blocks")
            senders = set()
            h = a.node.head_hash
            while h != a.genesis.hash:
                b = a.node.block(h)
                senders |= {m.identity for m in b.messages}
                h = b.parent
            return senders, a.transport.banned(evil.node_id)
        finally:
            await a.stop()

    senders, banned = asyncio.run(main())
    assert senders and {"0x" + s.hex() for s in senders} <= set(members)
    assert banned  # 10 points per refused message, 100 to a ban


def test_a_node_refuses_to_host_a_holder_whose_key_is_not_enrolled(tmp_path):
    other = "0x" + PrivateKey.generate().address.hex()
    conf = small_conf(rounds=2, members=(other, other[:-1] + ("0" if other[-1] != "0" else "1")))
    with pytest.raises(ConfigError, match="not among the chain's enrolled members"):
        asyncio.run(start(conf, tmp_path, "a", holder_indices="0"))
