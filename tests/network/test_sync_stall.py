"""A peer cannot use sync to stall a node: one that claims more work and then
stays silent, or answers every request with "more blocks follow" and none, is
penalised and never chosen again, and the node goes on mining meanwhile."""

import asyncio

from learningchain.network.wire import Kind, decode_get_blocks, encode_blocks_end

from .netkit import RawPeer, small_conf, start, wait_until


async def _liar(daemon, node_id):
    """An authenticated peer whose hello claims a far heavier chain than anyone has."""
    return await RawPeer.connect(daemon, node_id=node_id, work=1 << 60, head=b"\x5a" * 32)


async def _count_requests(peer, seconds, answer=None):
    """Read frames for ``seconds``; count GET_BLOCKS and answer each with ``answer(request)``."""
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
                    peer.send(Kind.BLOCKS_END, answer(request))
                    await peer.writer.drain()
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        pass
    return n


def test_a_silent_sync_peer_does_not_stall_mining_and_is_not_chosen_again(tmp_path):
    conf = small_conf(rounds=40, sync_timeout_s=0.5, max_misbehaviour=1000)

    async def main():
        a = await start(conf, tmp_path, "a", holder_indices="0-3")
        try:
            await wait_until(lambda: a.node.height >= 1, 30, "a first block")
            liar = await _liar(a, b"\x61" * 20)
            h0 = a.node.height
            requests = await _count_requests(liar, 4.0)
            grown = a.node.height - h0
            refused = a.transport.refusals.get("sync-stall", 0)
            liar.close()
            return requests, grown, refused
        finally:
            await a.stop()

    requests, grown, refused = asyncio.run(main())
    assert requests == 1  # asked once, timed out, never asked again (it was every timeout before)
    assert refused == 1
    assert grown >= 2  # mining went on while the sync was open


def test_a_peer_answering_more_without_blocks_cannot_loop_the_node(tmp_path):
    conf = small_conf(rounds=40, max_misbehaviour=1000)

    async def main():
        a = await start(conf, tmp_path, "a", holder_indices="0-3")
        try:
            await wait_until(lambda: a.node.height >= 1, 30, "a first block")
            liar = await _liar(a, b"\x62" * 20)
            h0 = a.node.height
            requests = await _count_requests(liar, 3.0, answer=lambda r: encode_blocks_end(r, 1, True))
            grown = a.node.height - h0
            refused = a.transport.refusals.get("sync-stall", 0)
            liar.close()
            return requests, grown, refused
        finally:
            await a.stop()

    requests, grown, refused = asyncio.run(main())
    assert requests == 1  # thousands a second before
    assert refused == 1
    assert grown >= 2
