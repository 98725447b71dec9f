"""Serving sync from a pruned and an archival store: an archival node brings a fresh
node to its head with full bodies; a pruned node serves only the blocks it holds
whole (never a body without its messages), refuses the rest with PRUNED (the height
its whole blocks start at), and so still helps a node that is close."""

import asyncio
from types import SimpleNamespace

import pytest

from learningchain.network.sync import SyncRole
from learningchain.network.wire import Kind, decode_blocks_end, decode_pruned, decode_sync_block
from learningchain.network.config import load_net_config
from learningchain.network.launcher import LocalNetwork, converged
from learningchain.node import Node
from learningchain.node.verify import verify_chain

from ..node.test_pruning import DEPTH, N, build_pair
from .netkit import canonical


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
    """The frames a sync request from ``client`` gets: (blocks sent, the final frame decoded)."""
    peer = _Peer()
    asyncio.run(_Server(server_node)._serve_blocks(peer, 7, client.locator(), 64))
    blocks = [decode_sync_block(p)[1] for k, p in peer.frames if k == Kind.SYNC_BLOCK]
    assert [k for k, _ in peer.frames] == [Kind.SYNC_BLOCK] * len(blocks) + [peer.frames[-1][0]]
    kind, payload = peer.frames[-1]
    end = decode_blocks_end(payload) if kind == Kind.BLOCKS_END else ("pruned", *decode_pruned(payload))
    for raw in blocks:
        client.on_block(raw, check_unseen=False)
    return len(blocks), end


def serve_one(server_node, h):
    peer = _Peer()
    asyncio.run(_Server(server_node)._serve_block(peer, 9, h))
    return [k for k, _ in peer.frames], peer.frames[-1]


def test_archival_node_syncs_a_fresh_node_and_a_pruned_one_serves_only_whole_blocks(tmp_path):
    archive, pruned = build_pair(tmp_path)
    fresh = Node(archive.genesis)
    # block 1 was pruned there: a refusal that says from which height it holds whole blocks
    assert serve(pruned, fresh) == (0, ("pruned", 7, N - DEPTH)) and fresh.height == 0
    assert pruned.store.pruned_below == N - DEPTH
    kinds, (_, payload) = serve_one(pruned, archive.store.canonical_hash(2))
    assert kinds == [Kind.PRUNED] and decode_pruned(payload) == (9, N - DEPTH)
    assert serve_one(pruned, b"\x77" * 32)[0] == [Kind.BLOCKS_END]  # a block it never had: an empty answer
    assert serve_one(pruned, archive.store.canonical_hash(N))[0] == [Kind.SYNC_BLOCK, Kind.BLOCKS_END]
    assert serve_one(archive, archive.store.canonical_hash(2))[0] == [Kind.SYNC_BLOCK, Kind.BLOCKS_END]
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


@pytest.mark.slow
def test_node_processes_a_pruned_one_refuses_and_a_fresh_one_syncs_the_whole_chain_from_the_archival_one(tmp_path):
    """Three `learningchain node` processes over TCP: node-0 archival (hosting the
    holders), node-1 started with --prune, and, once the chain is done, a fresh node-2
    whose only bootstrap peer is the pruned one. node-2 asks node-1 first, gets PRUNED,
    does not count it against node-1, learns node-0 from the peer exchange and syncs
    every block, messages included, from it."""
    rounds, depth = 12, 3
    conf = load_net_config(None, train_overrides={"dataset": "breast-cancer", "holders": 4, "rounds": rounds,
                                                  "no_dp": True, "difficulty": 4, "finality_depth": depth},
                           network_overrides={"interval_ms": 0, "collect_ms": 200, "reconnect_s": 0.25})
    net = LocalNetwork(tmp_path, conf, 3, holders_of=[[0, 1, 2, 3], [], []], min_peers=1,
                       extra_args={1: ["--prune"]})
    net.prepare()
    try:
        net.start(0)
        net.start(1)
        net.wait_for(lambda s: converged(s[:2], rounds), 180, what=f"nodes 0 and 1 at round {rounds}")
        first = net.statuses()
        assert first[0]["pruned_below"] == 0 and first[1]["pruned_below"] == rounds - depth
        net.start(2)
        final = net.wait_for(lambda s: converged(s, rounds), 120, what="node-2 synced")
        pruned_peer = [p for p in final[2]["peers"] if p["id"] == first[1]["node_id"]]
    finally:
        codes = net.stop()
    assert all(c == 0 for c in codes.values()), codes
    assert pruned_peer and pruned_peer[0]["pruned_from"] == rounds - depth, final[2]["peers"]
    assert pruned_peer[0]["misbehaviour"] == 0 and final[2]["refused"] == {}, final[2]
    assert final[2]["last_sync"]["to_height"] == rounds and final[2]["pruned_below"] == 0
    chains = [canonical(n.dir / "chain.sqlite") for n in net.nodes]
    assert chains[0] == chains[1] == chains[2] and len(chains[2]) == rounds + 1
    fresh, pruned = verify_chain(net.nodes[2].dir), verify_chain(net.nodes[1].dir)
    assert fresh.ok and fresh.checked == rounds and fresh.pruned_to == 0  # every body, replayed
    assert pruned.ok and pruned.pruned_to == rounds - depth - 1
    log = (net.nodes[2].dir / "node.log").read_text()
    assert "it is pruned: it holds whole blocks from height" in log, log[-3000:]


def test_a_node_process_refuses_to_prune_a_chain_without_a_finality_depth(tmp_path):
    from learningchain.errors import ConfigError
    from learningchain.network.daemon import NodeDaemon

    from .netkit import small_conf

    with pytest.raises(ConfigError, match="--prune: this chain's genesis fixes no finality_depth"):
        NodeDaemon(small_conf(), data_dir=tmp_path / "a", listen=None, prune=True)
    assert not (tmp_path / "a" / "chain.sqlite").exists()
