"""A fuzzer over what a peer can send: frames after the handshake, and the
handshake's own records. Valid frames (a real block, real messages, a hello, sync
requests and answers) are mutated by Hypothesis: bytes flipped, cut, inserted,
spliced across kinds. Every input must be refused or handled; no exception other
than a decode or protocol error may escape the node's frame handler, the node's
chain and store stay as they were, and the node still serves an honest peer.

``LC_FUZZ_EXAMPLES`` sets the number of inputs (10,000 by default, as CI runs it).
"""

import asyncio
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from learningchain.errors import DecodeError, LearningChainError
from learningchain.network import wire
from learningchain.network.secure import verify_auth
from learningchain.network.wire import Hello, Kind
from learningchain.node.verify import verify_chain

from .netkit import RawPeer, forged_round, small_conf, start, wait_until

EXAMPLES = int(os.environ.get("LC_FUZZ_EXAMPLES", "10000"))


def _mutations(seeds):
    """A seed frame, then up to four edits: flip, cut, insert, or splice another seed."""
    edit = st.tuples(st.sampled_from(("flip", "cut", "insert", "splice", "set")), st.integers(0, 1 << 30),
                     st.binary(min_size=1, max_size=16))
    return st.tuples(st.sampled_from(seeds), st.lists(edit, max_size=4), st.integers(0, len(seeds) - 1))


def _apply(seeds, seed, edits, other):
    kind, data = seed
    data = bytearray(data)
    for op, pos, blob in edits:
        at = pos % (len(data) + 1)
        if op == "flip" and data:
            data[at % len(data)] ^= blob[0] or 1
        elif op == "cut":
            data = data[:at]
        elif op == "insert":
            data[at:at] = blob
        elif op == "splice":
            data = data[:at] + bytearray(seeds[other][1][at:])
        elif op == "set" and data:
            data[at % len(data)] = blob[0]
        if op == "flip" and len(blob) > 1:
            kind = blob[1] if blob[1] in Kind._value2member_map_ else kind
    return kind, bytes(data)


def test_mutated_frames_and_handshakes_never_crash_the_node_nor_change_its_chain(tmp_path):
    conf = small_conf(rounds=3, max_misbehaviour=10 ** 9, stop_height=2)

    async def main():
        a = await start(conf, tmp_path, "a", holder_indices="0-3")
        try:
            await wait_until(lambda: a.node.height >= 2, 60, "a two-block chain")
            await asyncio.sleep(0.5)
            msgs, block = forged_round(a)
            head, height = a.node.head_hash, a.node.height
            hello = Hello(wire.PROTOCOL_VERSION, a.genesis.hash, b"\x05" * 20, "127.0.0.1", 1, 3, head, 1 << 20,
                          "fuzz", b"\x01" * 32)
            seeds = [
                (Kind.BLOCK, block.encode()),
                (Kind.MESSAGE, msgs[0].encode()),
                (Kind.MESSAGES, wire.encode_messages([m.encode() for m in msgs])),
                (Kind.SYNC_BLOCK, wire.encode_sync_block(1, block.encode())),
                (Kind.BLOCKS_END, wire.encode_blocks_end(1, 1, True)),
                (Kind.GET_BLOCKS, wire.encode_get_blocks(2, [a.genesis.hash], 16)),
                (Kind.GET_BLOCK, wire.encode_get_block(3, head)),
                (Kind.PEERS, wire.encode_peers([("127.0.0.1", 9), ("example.org", 30333)])),
                (Kind.PING, wire.encode_ping(7)),
                (Kind.HELLO, wire.encode_hello(hello)),
                (Kind.AUTH, b"\x00" * 65),
            ]
            evil = await RawPeer.connect(a, node_id=b"\x66" * 20)
            await wait_until(lambda: evil.node_id in a.transport.peers, 10, "the fuzzing peer to connect")
            peer = a.transport.peers[evil.node_id]
            escaped = []
            count = [0]

            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(_mutations(seeds))
            def fuzz(case):
                seed, edits, other = case
                kind, payload = _apply(seeds, seed, edits, other)
                count[0] += 1
                peer.requests.setdefault(1, 16)  # keep sync answers solicited now and then
                try:
                    a.transport._dispatch(peer, kind, payload)
                except (DecodeError, LearningChainError):
                    pass
                except Exception as exc:  # what the read loop would log as an internal error
                    escaped.append((kind, payload[:64].hex(), repr(exc)))
                # the handshake's records: decode or refuse, never crash
                try:
                    h = wire.decode_hello(payload)
                    assert len(h.nonce) == 32 and len(h.genesis) == 32 and len(h.node_id) == 20
                except DecodeError:
                    pass
                assert not verify_auth(payload, b"\x05" * 20, a.genesis.hash, b"\x00" * 32, b"\x01" * 32,
                                       b"\x02" * 32, 0)

            fuzz()
            for _ in range(20):  # let the serving tasks the fuzz started run out
                await asyncio.sleep(0.05)
            evil.close()
            # an edit that left the forged block intact (it is valid) may extend the chain by it; nothing else may
            assert a.node.head_hash in (head, block.hash) and a.node.height in (height, height + 1)
            final = a.node.head_hash
            b = await start(conf, tmp_path, "b", role="relay", peers=[a.transport.advertise])
            try:
                await wait_until(lambda: b.node.head_hash == final, 30, "an honest peer to sync from the fuzzed node")
            finally:
                await b.stop()
            return escaped, count[0]
        finally:
            await a.stop()

    escaped, count = asyncio.run(main())
    assert count >= min(EXAMPLES, 1000)
    assert escaped == []
    assert verify_chain(tmp_path / "a").ok
