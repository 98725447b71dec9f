"""What a node refuses, with a logged reason, while it keeps serving honest peers:
malformed frames, oversized frames, bad signatures, unknown message types,
floods, silence in the handshake, unsolicited answers, and blocks whose
messages it never saw (under the "wait" policy)."""

import asyncio
import logging

from learningchain.network.wire import Kind, encode_blocks_end, encode_frame, encode_ping, encode_sync_block

from .netkit import RawPeer, errors_in, forged_round, same_head, small_conf, start, wait_until


def _tamper_signature(msg) -> bytes:
    raw = bytearray(msg.encode())
    raw[-30] ^= 0x01  # inside s: the signature no longer recovers the claimed identity
    return bytes(raw)


def test_hostile_frames_are_refused_and_honest_peers_are_still_served(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="learningchain.net")
    # stop_height 0 holds the honest round back until the attacks are in
    conf = small_conf(rounds=6, collect_ms=200, rate_frames=100.0, burst_frames=200, max_frame_bytes=1 << 16,
                      max_misbehaviour=1000, stop_height=0)

    async def main():
        a = await start(conf, tmp_path, "a", holder_indices="0,1")
        b = await start(conf, tmp_path, "b", holder_indices="2,3", peers=[a.transport.advertise])
        try:
            await wait_until(lambda: len(a.transport.peers) == 1, 10)
            msgs, block = forged_round(a)

            evil = await RawPeer.connect(a, node_id=b"\x01" * 20)
            await asyncio.sleep(0.2)
            evil.send(Kind.MESSAGE, b"\x01\x02\x03")  # malformed record
            evil.send_raw((0).to_bytes(4, "little"))  # empty frame: no kind byte
            evil.send(99, b"hello?")  # unknown type
            evil.send(Kind.MESSAGE, _tamper_signature(msgs[0]))  # bad signature
            evil.send(Kind.SYNC_BLOCK, encode_sync_block(77, block.encode()))  # an answer nobody asked for
            evil.send(Kind.BLOCKS_END, encode_blocks_end(78, 0, False))
            await wait_until(lambda: all(a.transport.refusals.get(r, 0) >= 1 for r in
                                         ("malformed", "unknown-type", "bad-signature", "unsolicited")),
                             10, "the four refusals")
            assert a.node.mempool.count(a.node.head_hash) == 0 and a.node.height == 0
            assert evil.node_id in a.transport.peers  # penalised, not yet banned

            big = await RawPeer.connect(a, node_id=b"\x02" * 20)
            await asyncio.sleep(0.2)
            big.send_raw((1 << 20).to_bytes(4, "little") + b"\x10" + b"\x00" * 1000)  # oversized
            assert await big.closed_by_peer()
            assert a.transport.refusals.get("oversized") == 1

            flood = await RawPeer.connect(a, node_id=b"\x03" * 20)
            await asyncio.sleep(0.2)
            for i in range(1000):
                flood.send(Kind.PING, encode_ping(i))
            assert await flood.closed_by_peer()
            assert a.transport.refusals.get("flooding") == 1
            again = await RawPeer.connect(a, node_id=b"\x03" * 20)  # banned for ban_seconds
            assert "banned" in " ".join(errors_in(await again.frames(2.0)))

            mute = await RawPeer.connect(a, hello=False)
            mute.send(Kind.PING, encode_ping(1))  # anything but a hello first
            assert "expected hello" in " ".join(errors_in(await mute.frames(2.0)))

            foreign = await RawPeer.connect(a, genesis=b"\x09" * 32, node_id=b"\x04" * 20)
            assert any("wrong-genesis" in e for e in errors_in(await foreign.frames(2.0)))

            # the honest pair carries on: a full round gossiped and mined, and b follows a
            a.stop_height = b.stop_height = 6
            await wait_until(lambda: same_head([a, b], 6), 60, "the honest nodes to finish")
            assert b.node.rejected_by_reason == {} or set(b.node.rejected_by_reason) <= {"unseen-message"}
            for p in (evil, big, flood, again, mute, foreign):
                p.close()
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(main())
    log = caplog.text
    for reason in ("malformed", "unknown-type", "bad-signature", "oversized", "flooding", "no-hello",
                   "wrong-genesis", "unsolicited"):
        assert f"({reason})" in log, reason


def test_misbehaviour_adds_up_to_a_ban(tmp_path):
    conf = small_conf(rounds=1, max_misbehaviour=30, ban_seconds=30.0)

    async def main():
        a = await start(conf, tmp_path, "a", role="relay")
        try:
            evil = await RawPeer.connect(a, node_id=b"\x05" * 20)
            await asyncio.sleep(0.2)
            for _ in range(3):
                evil.send(99)  # 10 points each
            assert await evil.closed_by_peer()
            assert a.transport.banned(evil.node_id)
            back = await RawPeer.connect(a, node_id=b"\x05" * 20)
            assert "banned" in " ".join(errors_in(await back.frames(2.0)))
        finally:
            await a.stop()

    asyncio.run(main())


def test_under_the_wait_policy_a_block_waits_for_its_messages(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="learningchain.net")
    conf = small_conf(rounds=1, stop_height=0, unseen="wait", unseen_grace_ms=600)

    async def main():
        a = await start(conf, tmp_path, "a", role="relay")
        try:
            msgs, block = forged_round(a, seed=5)
            miner = await RawPeer.connect(a, node_id=b"\x06" * 20)
            await asyncio.sleep(0.2)
            miner.send(Kind.BLOCK, block.encode())  # the block overtakes its messages
            await wait_until(lambda: block.hash in a.parked, 5, "the block to be held")
            assert a.node.height == 0
            for m in msgs:
                miner.send(Kind.MESSAGE, m.encode())
            await wait_until(lambda: a.node.head_hash == block.hash, 5, "the block once its messages came")

            msgs2, block2 = forged_round(a, seed=6)  # messages never broadcast at all
            miner.send(Kind.BLOCK, block2.encode())
            await wait_until(lambda: a.transport.refusals.get("unseen-message", 0) == 1, 5, "the grace to expire")
            assert a.node.head_hash == block.hash and not a.parked
            # it stays followable: fetched as history (e.g. when the network builds on it) it is accepted
            assert a.handle_block(block2, None, synced=True)
            assert a.node.head_hash == block2.hash
            miner.close()
        finally:
            await a.stop()

    asyncio.run(main())
    assert "never broadcast to this node" in caplog.text


def test_forged_bodies_of_a_real_block_do_not_get_the_real_block_refused(tmp_path):
    from learningchain.protocol import Block

    conf = small_conf(rounds=2, stop_height=0, max_misbehaviour=1000)

    async def main():
        a = await start(conf, tmp_path, "a", role="relay")
        try:
            msgs, block = forged_round(a, seed=7)
            model = block.model.copy()
            model[0] += 1.0
            forged = [Block(block.header, block.messages, block.selection, model).encode(),  # wrong model
                      Block(block.header, block.messages[1:], (), block.model).encode(),  # a dropped message
                      block.encode()[:-11]]  # a truncated body
            evil = await RawPeer.connect(a, node_id=b"\x08" * 20)
            await asyncio.sleep(0.2)
            for raw in forged:
                evil.send(Kind.BLOCK, raw)
            await wait_until(lambda: sum(a.transport.refusals.get(r, 0) for r in
                                         ("bad-model-hash", "bad-messages-root", "malformed")) >= 3,
                             10, "the forged copies to be refused")
            assert block.hash not in a.seen and block.hash not in a.node.rejected and a.node.height == 0

            honest = await RawPeer.connect(a, node_id=b"\x09" * 20)
            await asyncio.sleep(0.2)
            honest.send(Kind.BLOCK, block.encode())
            await wait_until(lambda: a.node.head_hash == block.hash, 5, "the real block")
            _, child = forged_round(a, seed=8)
            honest.send(Kind.BLOCK, child.encode())
            await wait_until(lambda: a.node.head_hash == child.hash, 5, "the chain to go on")
            assert a.transport.banned(b"\x09" * 20) is False
            # a losing sibling of the head: forged copies are refused, the real one is still put off
            seed = 20
            while True:
                _, loser = forged_round(a, seed=seed, parent=block)
                if loser.hash > child.hash:
                    break
                seed += 1
            bad_model = loser.model.copy()
            bad_model[-1] -= 1.0
            evil.send(Kind.BLOCK, Block(loser.header, loser.messages, loser.selection, bad_model).encode())
            evil.send(Kind.BLOCK, loser.encode()[:-3])
            await wait_until(lambda: sum(a.transport.refusals.get(r, 0) for r in
                                         ("bad-model-hash", "bad-messages-root", "malformed")) >= 5,
                             10, "the forged copies of the loser")
            assert loser.hash not in a.deferred and loser.hash not in a.seen
            honest.send(Kind.BLOCK, loser.encode())
            await wait_until(lambda: loser.hash in a.deferred, 5, "the real loser to be put off")
            assert a.node.head_hash == child.hash
            evil.close()
            honest.close()
        finally:
            await a.stop()

    asyncio.run(main())


def test_junk_blocks_without_proof_of_work_take_no_room_and_the_pools_stay_within_their_bytes(tmp_path):
    import dataclasses
    import os

    from learningchain.protocol import Block
    from learningchain.protocol.consensus import pow_target, pow_value, solve_pow

    conf = small_conf(rounds=3, stop_height=0, max_misbehaviour=10 ** 9, rate_frames=10_000.0, burst_frames=10_000)

    def reparent(block, parent, *, solve):
        header = dataclasses.replace(block.header, parent=parent)
        if solve:
            header = solve_pow(dataclasses.replace(header, seal=b""))
        return Block(header, block.messages, block.selection, block.model)

    async def main():
        a = await start(conf, tmp_path, "a", role="relay")
        try:
            _, template = forged_round(a, seed=11)
            size = len(template.encode())
            evil = await RawPeer.connect(a, node_id=b"\x0a" * 20)
            await asyncio.sleep(0.2)
            junk = []
            while len(junk) < 40:  # unknown parents, seals that miss the target
                b = reparent(template, os.urandom(32), solve=False)
                if pow_value(b.header.seal_hash, int.from_bytes(b.header.seal, "little")) >= \
                        pow_target(b.header.difficulty):
                    junk.append(b)
            for b in junk:
                evil.send(Kind.BLOCK, b.encode())
            await wait_until(lambda: a.transport.refusals.get("bad-pow", 0) >= 40, 10, "the junk to be refused")
            assert not a.node.orphans and a.node.orphan_bytes == 0

            # orphans with real work: kept within the bound, and one peer within its share of it
            a.node.max_orphan_bytes = 8 * size  # a peer's share: a quarter, 2 blocks
            other = await RawPeer.connect(a, node_id=b"\x0b" * 20)
            await asyncio.sleep(0.2)
            theirs = [reparent(template, os.urandom(32), solve=True) for _ in range(2)]
            for b in theirs:
                other.send(Kind.BLOCK, b.encode())
            await wait_until(lambda: all(b.hash in a.node.orphans for b in theirs), 10, "the other peer's orphans")
            for _ in range(8):
                evil.send(Kind.BLOCK, reparent(template, os.urandom(32), solve=True).encode())
            await wait_until(lambda: len(a.node.orphans) == 4, 10, "the orphan pool to fill")
            await asyncio.sleep(0.3)
            assert len(a.node.orphans) == 4 and a.node.orphan_bytes <= 8 * size
            assert all(b.hash in a.node.orphans for b in theirs)  # evil's flood did not push them out

            a.policy.rules = dataclasses.replace(a.policy.rules, max_deferred_bytes=8 * size)
            evil.send(Kind.BLOCK, template.encode())  # the head at height 1
            await wait_until(lambda: a.node.head_hash == template.hash, 5, "the head")
            losers = []
            while len(losers) < 8:  # same work, a higher hash: each loses the fork choice and is put off
                b = reparent(template, template.parent, solve=False)
                b = Block(solve_pow(dataclasses.replace(b.header, timestamp=b.header.timestamp + len(losers) + 1 +
                                                        int.from_bytes(os.urandom(2), "little"), seal=b"")),
                          b.messages, b.selection, b.model)
                if b.hash > template.hash:
                    losers.append(b)
            for b in losers[:2]:
                other.send(Kind.BLOCK, b.encode())
            await wait_until(lambda: len(a.deferred) == 2, 5, "the other peer's deferred blocks")
            for b in losers[2:]:
                evil.send(Kind.BLOCK, b.encode())
            await wait_until(lambda: len(a.deferred) == 4, 5, "the deferred pool to fill")
            await asyncio.sleep(0.3)
            assert len(a.deferred) == 4 and a.deferred_bytes <= 8 * size
            assert all(b.hash in a.deferred for b in losers[:2])  # one peer's share only
            assert a.node.head_hash == template.hash
            evil.close()
            other.close()
        finally:
            await a.stop()

    asyncio.run(main())


def test_held_messages_are_checked_first_and_one_peer_cannot_push_out_the_others(tmp_path):
    """A message whose block has not arrived is held only once every check that needs no
    block passes (a bad signature costs its sender, as for any message); the held pool is
    bounded in bytes, and one peer's messages take at most a quarter of it, so a flood of
    validly signed messages naming made-up blocks does not push out an honest one."""
    import dataclasses
    import os
    from types import SimpleNamespace

    import numpy as np

    from ..helpers import make_keys, message_for

    conf = small_conf(rounds=3, stop_height=0, max_misbehaviour=1000, rate_frames=10_000.0, burst_frames=10_000)

    async def main():
        a = await start(conf, tmp_path, "a", role="relay")
        try:
            params = a.node.params
            _, blk = forged_round(a, seed=21)
            rng = np.random.default_rng(5)
            honest = message_for(make_keys(1, seed=3)[0], params, blk, rng.normal(size=params.dim))
            size = len(honest.encode())
            a.policy.rules = dataclasses.replace(a.policy.rules, max_held_bytes=8 * size)  # a share: 2
            friend = await RawPeer.connect(a, node_id=b"\x0c" * 20)
            evil = await RawPeer.connect(a, node_id=b"\x0d" * 20)
            await wait_until(lambda: len(a.transport.peers) == 2, 5, "both peers")
            friend.send(Kind.MESSAGE, honest.encode())
            await wait_until(lambda: a.policy.pending_count == 1, 5, "the honest message held")

            nowhere = SimpleNamespace(height=1, hash=os.urandom(32))  # a block nobody has
            forged = message_for(make_keys(1, seed=4)[0], params, nowhere, rng.normal(size=params.dim))
            evil.send(Kind.MESSAGE, _tamper_signature(forged))
            await wait_until(lambda: a.transport.refusals.get("bad-signature", 0) == 1, 5, "the bad signature")
            assert a.policy.pending_count == 1

            flood = [message_for(k, params, SimpleNamespace(height=1, hash=os.urandom(32)),
                                 rng.normal(size=params.dim)) for k in make_keys(12, seed=6)]
            for m in flood:
                evil.send(Kind.MESSAGE, m.encode())
            await wait_until(lambda: a.messages_received >= 2 + len(flood), 10, "the flood read")
            held = [m.hash for waiting in a.policy.pending.values() for m, _p, _s in waiting]
            score = a.transport.peers[evil.node_id].score
            assert honest.hash in held
            assert len(held) == 3 and a.policy.held_bytes <= 8 * size  # evil's share: its 2 newest
            assert score == 10  # the bad signature; validly signed messages cost nothing

            friend.send(Kind.BLOCK, blk.encode())  # the block arrives: its held message is admitted
            await wait_until(lambda: a.node.mempool.count(blk.hash) == 1, 5, "the held message admitted")
            assert a.policy.pending_count == 2
            friend.close()
            evil.close()
        finally:
            await a.stop()

    asyncio.run(main())


def test_an_oversized_handshake_frame_closes_the_connection_unread_and_bans_its_host(tmp_path, monkeypatch):
    """Before AUTH a frame may be a few KiB (MAX_HANDSHAKE_FRAME), not max_frame_bytes: a
    larger length prefix closes the connection without its body being read, and its
    host (off loopback: 127.0.0.2 is treated as a remote host here) is banned."""
    import ssl

    from learningchain.network import tcp
    from learningchain.network.wire import MAX_HANDSHAKE_FRAME

    monkeypatch.setattr(tcp, "_is_loopback", lambda host: host == "127.0.0.1")
    conf = small_conf(rounds=1, handshake_timeout_s=10.0, ban_seconds=30.0)

    async def main():
        a = await start(conf, tmp_path, "a", role="relay")
        try:
            hog = await RawPeer.connect(a, hello=False, local_host="127.0.0.2")
            hog.send_raw((1 << 20).to_bytes(4, "little") + b"\x01" + bytes(MAX_HANDSHAKE_FRAME))
            closed = await hog.closed_by_peer(timeout=3.0)  # well before handshake_timeout_s
            hog.close()
            refused = a.transport.refusals.get("oversized", 0)
            banned = a.transport.banned("127.0.0.2")
            try:
                again = await RawPeer.connect(a, node_id=b"\x0e" * 20, local_host="127.0.0.2")
                turned_away = not await again.frames(2.0) or await again.closed_by_peer(1.0)
                again.close()
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
                turned_away = True
            honest = await RawPeer.connect(a, node_id=b"\x0f" * 20)
            await wait_until(lambda: honest.node_id in a.transport.peers, 5, "an honest peer from elsewhere")
            honest.close()
            return closed, refused, banned, turned_away, a.transport.refusals.get("banned", 0)
        finally:
            await a.stop()

    closed, refused, banned, turned_away, refused_banned = asyncio.run(main())
    assert closed and refused == 1
    assert banned and turned_away and refused_banned >= 1


def test_pipelined_block_requests_are_answered_in_turn_and_only_a_flood_is_penalised(tmp_path):
    """A node keeps one GET_BLOCKS and up to MAX_OPEN_FETCHES GET_BLOCKs open at a peer
    (after a sync, the missing parents of its orphans), sent back to back: the peer
    answers them in order without a penalty. Far more requests than that at once is a
    flood: penalised, and banned once the points add up."""
    from learningchain.network.sync import MAX_OPEN_FETCHES
    from learningchain.network.wire import decode_blocks_end, encode_get_block, encode_get_blocks

    conf = small_conf(rounds=1, rate_frames=10_000.0, burst_frames=10_000)

    async def main():
        a = await start(conf, tmp_path, "a", role="relay")
        try:
            g = a.genesis.hash
            client = await RawPeer.connect(a, node_id=b"\x10" * 20)
            await wait_until(lambda: client.node_id in a.transport.peers, 5, "the client")
            raw = encode_frame(Kind.GET_BLOCKS, encode_get_blocks(1, [g], 16))
            raw += b"".join(encode_frame(Kind.GET_BLOCK, encode_get_block(2 + i, g)) for i in range(MAX_OPEN_FETCHES))
            client.send_raw(raw)  # one write: the node reads them all before it answers any
            frames = await client.frames(2.0)
            ends = [decode_blocks_end(p)[0] for k, p in frames if k == Kind.BLOCKS_END]
            honest = (ends, a.transport.peers[client.node_id].score, dict(a.transport.refusals))

            flood = await RawPeer.connect(a, node_id=b"\x11" * 20)
            await wait_until(lambda: flood.node_id in a.transport.peers, 5, "the flooder")
            flood.send_raw(b"".join(encode_frame(Kind.GET_BLOCK, encode_get_block(i, g)) for i in range(400)))
            closed = await flood.closed_by_peer()
            client.close()
            return honest, closed, a.transport.refusals.get("overlapping-request", 0), a.transport.banned(flood.node_id)
        finally:
            await a.stop()

    (ends, score, refusals), closed, overlapping, banned = asyncio.run(main())
    assert ends == list(range(1, 2 + MAX_OPEN_FETCHES))
    assert score == 0 and refusals == {}
    assert overlapping >= 1 and closed and banned


def test_a_block_stamped_far_ahead_of_the_clock_is_refused_unpenalised_and_the_chain_goes_on(tmp_path, caplog):
    # One block stamped far ahead pinned every descendant's timestamp (a child may not precede
    # its parent) and, under retargeting, raised the difficulty every window for ever.
    import time

    from learningchain.node.policy import MAX_FUTURE_MS

    conf = small_conf(rounds=2, stop_height=0)
    caplog.set_level(logging.INFO, logger="learningchain.net")

    def stamped(daemon, ts, seed):
        return forged_round(daemon, seed=seed, timestamp=ts)[1]

    async def main():
        a = await start(conf, tmp_path, "a", role="relay")
        try:
            peer = await RawPeer.connect(a, node_id=b"\x0a" * 20)
            await asyncio.sleep(0.2)
            ahead = stamped(a, int(time.time() * 1000) + MAX_FUTURE_MS + 60_000, 31)
            peer.send(Kind.BLOCK, ahead.encode())
            await wait_until(lambda: "ms ahead of this node's clock" in caplog.text, 10,
                             "the block from the future to be refused")
            assert a.node.height == 0 and ahead.hash not in a.seen and ahead.hash not in a.node.rejected
            assert a.transport.peers[peer.node_id].score == 0  # clocks differ: not the sender's fault
            now = stamped(a, int(time.time() * 1000), 32)
            peer.send(Kind.BLOCK, now.encode())
            await wait_until(lambda: a.node.head_hash == now.hash, 10, "a block of the present")
            peer.close()
        finally:
            await a.stop()

    asyncio.run(main())


def test_a_closed_peers_held_messages_go_with_it_and_pin_nothing(tmp_path):
    # Each held message kept its source Peer (and its set of up to 16,384 known hashes) alive
    # after the connection closed: fresh ids, one held message each and a burst of messages
    # the node had seen pinned 0.6 MiB a closed connection, far past the held pool's bound.
    import os
    from types import SimpleNamespace

    import numpy as np

    from learningchain.network.wire import encode_messages

    from ..helpers import make_keys, message_for

    conf = small_conf(rounds=3, stop_height=0)

    async def main():
        a = await start(conf, tmp_path, "a", role="relay")
        try:
            params, rng = a.node.params, np.random.default_rng(1)
            key = make_keys(1, seed=3)[0]
            seen = [message_for(key, params, a.node.head, rng.normal(size=params.dim)).encode() for _ in range(64)]
            closed = []
            for i in range(4):
                before = a.messages_received
                p = await RawPeer.connect(a, node_id=i.to_bytes(4, "big") + b"\xaa" * 16)
                nowhere = SimpleNamespace(height=1, hash=os.urandom(32))  # a block nobody has
                p.send(Kind.MESSAGE, message_for(key, params, nowhere, rng.normal(size=params.dim)).encode())
                p.send(Kind.MESSAGES, encode_messages(seen))
                await wait_until(lambda: a.messages_received >= before + 1 + len(seen), 30, "frames read")
                await wait_until(lambda: a.policy.pending_count == 1, 10, "its message held")
                peer = a.transport.peers[p.node_id]
                assert peer.score == 0 and len(peer.known._items) >= len(seen)
                p.close()
                await wait_until(lambda: p.node_id not in a.transport.peers, 10, "the peer closed")
                closed.append(peer)
            return a.policy.pending_count, a.policy.held_bytes, list(a.policy._held_by_source), closed
        finally:
            await a.stop()

    pending, held_bytes, sources, closed = asyncio.run(main())
    assert pending == 0 and held_bytes == 0 and not sources
    assert all(len(peer.known._items) == 0 for peer in closed)


def test_a_peer_banned_within_a_frame_of_messages_gets_no_check_for_the_rest_of_it(tmp_path):
    # Every message of a MESSAGES frame was judged (a signature recovery each) even after its
    # sender had been banned for the first bad ones.
    from learningchain.network.gossip import MESSAGE_SLICE
    from learningchain.network.wire import encode_messages

    from ..helpers import make_keys, message_for

    conf = small_conf(rounds=3, stop_height=0)

    async def main():
        import numpy as np

        a = await start(conf, tmp_path, "a", role="relay")
        try:
            params, rng = a.node.params, np.random.default_rng(9)
            judged = []
            on_message = a.node.on_message

            def counting(msg, *args, **kw):
                judged.append(msg.hash)
                return on_message(msg, *args, **kw)

            a.node.on_message = counting
            bad = [_tamper_signature(message_for(k, params, a.node.head, rng.normal(size=params.dim)))
                   for k in make_keys(4 * MESSAGE_SLICE, seed=8)]
            evil = await RawPeer.connect(a, node_id=b"\x0f" * 20)
            await wait_until(lambda: len(a.transport.peers) == 1, 5, "the peer")
            evil.send(Kind.MESSAGES, encode_messages(bad))
            await wait_until(lambda: a.transport.banned(evil.node_id), 10, "the ban")
            await asyncio.sleep(0.3)
            return len(judged), a.transport.refusals.get("bad-signature", 0)
        finally:
            await a.stop()

    judged, refused = asyncio.run(main())
    assert refused >= 1 and judged <= MESSAGE_SLICE < 4 * MESSAGE_SLICE
