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
