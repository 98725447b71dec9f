"""A peer cannot use sync to stall a node: one that claims more work and then
stays silent, or answers every request with "more blocks follow" and none, is
penalised and never chosen again, and the node goes on mining meanwhile."""

import asyncio

import pytest

from learningchain.network.wire import Kind, decode_get_blocks, encode_blocks_end

from .netkit import RawPeer, small_conf, start, wait_until


async def _liar(daemon, node_id):
    """An authenticated peer whose hello claims a far heavier chain than anyone has."""
    return await RawPeer.connect(daemon, node_id=node_id, work=1 << 60, head=b"\x5a" * 32)


async def _count_requests(peer, seconds, answer=None, kind=Kind.BLOCKS_END):
    """Read frames for ``seconds``; count GET_BLOCKS and answer each with a ``kind`` frame of ``answer(request)``."""
    n = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        while (left := deadline - loop.time()) > 0:
            head = await asyncio.wait_for(peer.reader.readexactly(4), left)
            body = await asyncio.wait_for(peer.reader.readexactly(int.from_bytes(head, "little")), left)
            if body[0] == Kind.GET_BLOCKS:
                n += 1
                if answer is not None:
                    request, _locator, _limit = decode_get_blocks(body[1:])
                    peer.send(kind, answer(request))
                    await peer.writer.drain()
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        pass
    return n


@pytest.mark.parametrize("answer", [None, lambda r: encode_blocks_end(r, 1, True)], ids=["silent", "more-without-blocks"])
def test_a_stalling_sync_peer_is_asked_once_and_mining_goes_on(tmp_path, answer):
    """Silent: asked once, timed out, never asked again (before: every timeout).
    "More" with no block: asked once (before: thousands of times a second)."""
    conf = small_conf(rounds=40, sync_timeout_s=0.5, max_misbehaviour=1000)

    async def main():
        a = await start(conf, tmp_path, "a", holder_indices="0-3")
        try:
            await wait_until(lambda: a.node.height >= 1, 30, "a first block")
            liar = await _liar(a, b"\x61" * 20)
            h0 = a.node.height
            requests = await _count_requests(liar, 4.0, answer=answer)
            grown = a.node.height - h0
            refused = a.transport.refusals.get("sync-stall", 0)
            liar.close()
            return requests, grown, refused
        finally:
            await a.stop()

    requests, grown, refused = asyncio.run(main())
    assert requests == 1
    assert refused == 1
    assert grown >= 2  # mining went on while the sync was open


def test_a_pruned_peer_refusing_a_sync_is_not_penalised_nor_asked_again(tmp_path):
    """A peer that answers PRUNED (it holds the blocks asked for by header only) is a
    pruned node, not a staller: the sync ends without a penalty, and the node asks it
    no more while its height is below the blocks that peer holds whole."""
    from learningchain.network.wire import encode_pruned

    conf = small_conf(rounds=40, sync_timeout_s=0.5, max_misbehaviour=1000)

    async def main():
        a = await start(conf, tmp_path, "a", holder_indices="0-3")
        try:
            await wait_until(lambda: a.node.height >= 1, 30, "a first block")
            pruned = await _liar(a, b"\x62" * 20)
            h0 = a.node.height
            requests = await _count_requests(pruned, 3.0, answer=lambda r: encode_pruned(r, 1 << 40), kind=Kind.PRUNED)
            peer = next(p for p in a.transport.peers.values() if p.node_id == pruned.node_id)
            seen = (peer.holds_from, peer.sync_failed, peer.score, a.sync is None)
            grown = a.node.height - h0
            refusals = dict(a.transport.refusals)
            pruned.close()
            return requests, seen, grown, refusals
        finally:
            await a.stop()

    requests, (holds_from, failed, score, idle), grown, refusals = asyncio.run(main())
    assert requests == 1
    assert holds_from == 1 << 40 and not failed and score == 0 and idle
    assert refusals == {}, refusals
    assert grown >= 2


async def _answer_sync_with(peer, stop, answer, on_get_block=None):
    """Read frames until ``stop``; hand each GET_BLOCKS request id to ``answer`` (which sends),
    and each GET_BLOCK frame to ``on_get_block``."""
    try:
        while not stop.is_set():
            head = await peer.reader.readexactly(4)
            body = await peer.reader.readexactly(int.from_bytes(head, "little"))
            if body[0] == Kind.GET_BLOCKS:
                request, _locator, _limit = decode_get_blocks(body[1:])
                await answer(request)
            elif body[0] == Kind.GET_BLOCK and on_get_block is not None:
                on_get_block(body)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass


def test_a_peer_trickling_known_blocks_into_a_sync_is_timed_out_and_the_node_syncs_from_an_honest_peer(tmp_path):
    """A block the node already has is not progress: a peer that claims more work and then
    drips a known block (genesis) into its open request, more often than sync_timeout_s,
    is penalised as a stalled sync, and the node syncs from the honest heavier peer."""
    from learningchain.network.wire import encode_sync_block

    conf = small_conf(rounds=3, sync_timeout_s=1.0, max_misbehaviour=1000)

    async def main():
        a = await start(conf, tmp_path, "a", holder_indices="0-3")
        b = None
        try:
            await wait_until(lambda: a.node.height >= 3, 60, "a reaches height 3")
            b = await start(conf, tmp_path, "b", role="relay")
            liar = await _liar(b, b"\x63" * 20)
            stop = asyncio.Event()
            requests = []

            async def answer(request):
                requests.append(request)

            async def drip():
                while not stop.is_set():
                    await asyncio.sleep(0.25)
                    if requests:
                        liar.send(Kind.SYNC_BLOCK, encode_sync_block(requests[-1], b.genesis.encode()))

            tasks = [asyncio.get_running_loop().create_task(c) for c in
                     (_answer_sync_with(liar, stop, answer), drip())]
            await wait_until(lambda: b.sync is not None and b.sync.peer.node_id == liar.node_id, 5,
                             "b syncing from the liar")
            await b.transport.dial(*a.transport.advertise)
            await wait_until(lambda: b.node.head_hash == a.node.head_hash, 15, "b synced from a")
            peer = b.transport.peers[liar.node_id]
            seen = (peer.sync_failed, b.transport.refusals.get("sync-stall", 0), len(requests))
            stop.set()
            for t in tasks:
                t.cancel()
            liar.close()
            return seen
        finally:
            if b is not None:
                await b.stop()
            await a.stop()

    failed, stalls, requests = asyncio.run(main())
    assert failed and stalls == 1 and requests == 1


def test_orphans_do_not_keep_a_node_syncing_from_their_sender(tmp_path):
    """A peer that sends orphans and answers each sync at once with an empty end starts
    one sync, not one per orphan; its orphans' parents are asked for at most
    MAX_OPEN_FETCHES at a time; and the node syncs from an honest heavier peer."""
    import dataclasses
    import os

    from learningchain.network.sync import MAX_OPEN_FETCHES
    from learningchain.protocol import Block
    from learningchain.protocol.consensus import solve_pow

    from .netkit import forged_round

    conf = small_conf(rounds=3, sync_timeout_s=2.0, max_misbehaviour=1000)

    def orphan(template):
        header = dataclasses.replace(template.header, parent=os.urandom(32), seal=b"")
        return Block(solve_pow(header), template.messages, template.selection, template.model)

    async def main():
        a = await start(conf, tmp_path, "a", holder_indices="0-3")
        b = None
        try:
            await wait_until(lambda: a.node.height >= 3, 60, "a reaches height 3")
            b = await start(conf, tmp_path, "b", role="relay")
            _msgs, template = forged_round(b)
            m = await RawPeer.connect(b, node_id=b"\x64" * 20)
            await wait_until(lambda: len(b.transport.peers) == 1, 5, "m connected")
            stop = asyncio.Event()
            syncs, fetches = [], []

            async def end_at_once(request):  # every sync ended at once, with another orphan behind it
                syncs.append(request)
                m.send(Kind.BLOCKS_END, encode_blocks_end(request, 0, False))
                m.send(Kind.BLOCK, orphan(template).encode())

            task = asyncio.get_running_loop().create_task(_answer_sync_with(m, stop, end_at_once, fetches.append))
            for _ in range(12):
                m.send(Kind.BLOCK, orphan(template).encode())
                await asyncio.sleep(0.05)
            await wait_until(lambda: len(b.node.orphans) >= 8, 10, "orphans kept")
            await b.transport.dial(*a.transport.advertise)
            await wait_until(lambda: b.node.head_hash == a.node.head_hash, 15, "b synced from a")
            stop.set()
            task.cancel()
            m.close()
            return len(syncs), len(fetches)
        finally:
            if b is not None:
                await b.stop()
            await a.stop()

    syncs, fetches = asyncio.run(main())
    assert syncs == 1
    assert fetches <= MAX_OPEN_FETCHES


def test_a_sync_short_only_of_blocks_ahead_of_the_clock_does_not_blame_the_peer_and_is_retried(tmp_path):
    """A block a few seconds within the bound of one node's clock can be past it on another's:
    the node syncing from the first must not penalise it (clocks differ) but ask again once
    its clock has moved on."""
    import time

    from learningchain.network.daemon import NodeDaemon
    from learningchain.network.sync import SYNC_AHEAD_RETRY_S
    from learningchain.node.policy import MAX_FUTURE_MS

    from .netkit import forged_round

    skew = 3_000  # b's clock is 3 s behind a's
    conf = small_conf(rounds=3, stop_height=0)

    def stamped(daemon, ts, seed):
        return forged_round(daemon, seed=seed, timestamp=ts)[1]

    async def main():
        a = await start(conf, tmp_path, "a", role="relay")
        b = None
        try:
            miner = await RawPeer.connect(a, node_id=b"\x0e" * 20)
            await wait_until(lambda: len(a.transport.peers) == 1, 5, "the miner connected")
            ahead = stamped(a, int(time.time() * 1000) + MAX_FUTURE_MS - 1_000, 7)  # within a's bound
            miner.send(Kind.BLOCK, ahead.encode())
            await wait_until(lambda: a.node.head_hash == ahead.hash, 10, "a takes the block")
            b = NodeDaemon(conf, data_dir=tmp_path / "b", name="b", role="relay", peers=[a.transport.advertise])
            on_block = b.node.policy.on_block

            def skewed(*args, wall_ms=None, **kw):
                return on_block(*args, wall_ms=None if wall_ms is None else wall_ms - skew, **kw)

            b.node.policy.on_block = skewed
            await b.start()
            await wait_until(lambda: b.last_sync, 15, "b's first sync from a to end")
            first = dict(b.last_sync)
            peer = next(iter(b.transport.peers.values()))
            blamed = (peer.score, peer.sync_failed, dict(b.transport.refusals))
            started = time.monotonic()
            await wait_until(lambda: b.node.head_hash == ahead.hash, 30, "b to take the block once its clock allows")
            return first, blamed, time.monotonic() - started
        finally:
            if b is not None:
                await b.stop()
            await a.stop()

    first, blamed, waited = asyncio.run(main())
    assert first["to_height"] == 0 and not first["complete"]
    assert blamed == (0, False, {})  # no sync-stall, no penalty
    assert waited >= SYNC_AHEAD_RETRY_S * 0.5
