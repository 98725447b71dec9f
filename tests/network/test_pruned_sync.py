"""Serving sync from a pruned and an archival store: an archival node brings a fresh
node to its head with full bodies; a pruned node serves only the blocks it holds
whole (never a body without its messages) and so still helps a node that is close."""

import asyncio
from types import SimpleNamespace

from learningchain.network.sync import SyncRole
from learningchain.network.wire import Kind, decode_blocks_end, decode_sync_block
from learningchain.node import Node

from ..node.test_pruning import DEPTH, N, build_pair


class _Server(SyncRole):
    def __init__(self, node):
        self.node = node
        self.net = SimpleNamespace(sync_batch=64)


class _Peer:
    def __init__(self):
        self.frames, self.known = [], set()

    async def send_wait(self, kind, payload):
        self.frames.append((kind, payload))


def serve(server_node, client):
    peer = _Peer()
    asyncio.run(_Server(server_node)._serve_blocks(peer, 7, client.locator(), 64))
    blocks = [decode_sync_block(p)[1] for k, p in peer.frames if k == Kind.SYNC_BLOCK]
    end = [decode_blocks_end(p) for k, p in peer.frames if k == Kind.BLOCKS_END]
    for raw in blocks:
        client.on_block(raw, check_unseen=False)
    return len(blocks), end[-1]


def test_archival_node_syncs_a_fresh_node_and_a_pruned_one_serves_only_whole_blocks(tmp_path):
    archive, pruned = build_pair(tmp_path)
    fresh = Node(archive.genesis)
    assert serve(pruned, fresh)[0] == 0 and fresh.height == 0  # block 1 was pruned there
    sent, (_, count, more) = serve(archive, fresh)
    assert sent == count == N and not more
    assert fresh.head_hash == archive.head_hash
    assert all(len(fresh.block_at(h).messages) == len(archive.block_at(h).messages) > 0 for h in range(1, N + 1))
    # a node a few blocks behind catches up from the pruned node's whole blocks
    close = Node(archive.genesis)
    for h in range(1, N - 1):
        close.on_block(archive.block_at(h), check_unseen=False)
    sent, _ = serve(pruned, close)
    assert sent == 2 and close.head_hash == archive.head_hash
    assert N - 2 >= N - DEPTH  # those blocks are within the depth, kept whole
    archive.store.close()
    pruned.store.close()
