"""Node daemons over real loopback TCP, several in one event loop: gossip, sync,
late joiners, restarts, partitions, and a node of another chain."""

import asyncio
import logging

import pytest

from learningchain.errors import StoreError
from learningchain.node.verify import verify_chain
from learningchain.protocol.forkchoice import choose_head

from .netkit import all_stored, canonical, same_head, small_conf, start, wait_until


def test_two_nodes_train_together_and_a_late_joiner_syncs_the_whole_chain(tmp_path):
    conf = small_conf(rounds=8)

    async def main():
        a = await start(conf, tmp_path, "a", holder_indices="0,1")
        b = await start(conf, tmp_path, "b", holder_indices="2,3", peers=[a.transport.advertise])
        try:
            await wait_until(lambda: same_head([a, b], 8), 60, "a and b to reach round 8")
            # every block carries all K holders' messages: they gossiped across both nodes
            assert all(len(a.node.block_at(h).messages) == 4 for h in range(1, 9))
            c = await start(conf, tmp_path, "c", role="relay", peers=[b.transport.advertise])
            try:
                await wait_until(lambda: same_head([a, b, c], 8), 30, "c to catch up")
                assert c.last_sync["complete"] and c.last_sync["to_height"] == 8
                assert c.blocks_mined == 0 and c.messages_sent == 0
            finally:
                await c.stop()
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(main())
    chains = [canonical(tmp_path / n / "chain.sqlite") for n in "abc"]
    assert chains[0] == chains[1] == chains[2] and len(chains[0]) == 9
    for n in "abc":
        report = verify_chain(tmp_path / n)
        assert report.ok and report.height == 8, report.error


def test_a_node_restarted_on_its_directory_keeps_every_block_and_catches_up(tmp_path):
    conf = small_conf(rounds=14)

    async def main():
        a = await start(conf, tmp_path, "a", holder_indices="0,1")
        b = await start(conf, tmp_path, "b", holder_indices="2,3", peers=[a.transport.advertise])
        await wait_until(lambda: b.node.height >= 4, 60, "b to reach height 4")
        await b.stop()
        before = all_stored(tmp_path / "b" / "chain.sqlite")
        height_before = len(canonical(tmp_path / "b" / "chain.sqlite")) - 1
        # a goes on alone (it waits collect_ms for the missing holders, then mines with its own)
        await wait_until(lambda: a.node.height >= height_before + 3, 60, "a to move on alone")
        b = await start(conf, tmp_path, "b", holder_indices="2,3", peers=[a.transport.advertise])
        assert b.node.height == height_before
        await wait_until(lambda: same_head([a, b], 14), 60, "b to catch up and both to finish")
        await a.stop()
        await b.stop()
        return before

    before = asyncio.run(main())
    after = all_stored(tmp_path / "b" / "chain.sqlite")
    assert before <= after  # nothing lost
    assert canonical(tmp_path / "a" / "chain.sqlite") == canonical(tmp_path / "b" / "chain.sqlite")
    assert verify_chain(tmp_path / "b").ok


def _branch_work(daemon, head):
    """Total work of a branch from its headers: sum of 2**difficulty (independent of Node.work)."""
    total, h = 0, head
    while True:
        header = daemon.node.headers[h]
        if header.height == 0:
            return total
        total += 1 << header.difficulty
        h = header.parent


def test_a_partitioned_network_heals_onto_the_heavier_branch(tmp_path):
    conf = small_conf(rounds=40, collect_ms=150)

    async def main():
        a1 = await start(conf, tmp_path, "a1", holder_indices="0,1")
        a2 = await start(conf, tmp_path, "a2", holder_indices="2", peers=[a1.transport.advertise])
        b1 = await start(conf, tmp_path, "b1", holder_indices="3", peers=[a1.transport.advertise])
        b2 = await start(conf, tmp_path, "b2", role="miner", peers=[b1.transport.advertise, a2.transport.advertise])
        group_a, group_b = [a1, a2], [b1, b2]
        everyone = group_a + group_b
        try:
            await wait_until(lambda: same_head(everyone, 3) and all(len(d.transport.peers) >= 2 for d in everyone),
                             60, "all four to share a head at height 3")
            for x in group_a:
                for y in group_b:
                    x.transport.deny(y.transport.advertise)
                    y.transport.deny(x.transport.advertise)
            # blocks and sync answers already in flight when the links were cut still land (and a
            # late one can pull one side onto the other's branch): let them drain before the split
            await asyncio.sleep(0.5)
            split = max(d.node.height for d in everyone)
            await wait_until(lambda: min(d.node.height for d in everyone) >= split + 4
                             and a1.node.head_hash != b1.node.head_hash, 60, "both sides to grow apart")
            for d in everyone:  # freeze mining so the fork choice alone decides the outcome
                d.stop_height = 0
            await asyncio.sleep(0.5)
            await wait_until(lambda: same_head(group_a, 0) and same_head(group_b, 0), 20, "each side to settle")
            tips = {d.node.head_hash: d for d in (a1, b1)}
            assert len(tips) == 2, "the partition did not fork the chain"
            expected = choose_head((_branch_work(d, h), h) for h, d in tips.items())
            for x in group_a:
                for y in group_b:
                    x.transport.allow(y.transport.advertise)
                    y.transport.allow(x.transport.advertise)
            await wait_until(lambda: same_head(everyone, 0), 60, "the healed network to converge")
            assert a1.node.head_hash == expected
            loser = next(h for h in tips if h != expected)
            losing_side = group_a if tips[loser] is a1 else group_b
            for d in losing_side:  # the losing branch stays stored, off the canonical chain
                assert loser in d.node.headers and loser not in d.node.canonical_hashes()
            # and they go on together to the last round
            for d in everyone:
                d.stop_height = 40
            await wait_until(lambda: same_head(everyone, 40), 90, "the healed network to finish")
        finally:
            for d in everyone:
                await d.stop()

    asyncio.run(main())
    chains = [canonical(tmp_path / n / "chain.sqlite") for n in ("a1", "a2", "b1", "b2")]
    assert all(c == chains[0] for c in chains) and len(chains[0]) == 41
    assert all(verify_chain(tmp_path / n).ok for n in ("a1", "a2", "b1", "b2"))


def test_a_node_of_another_chain_is_refused_with_a_clear_error(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="learningchain.net")

    async def main():
        a = await start(small_conf(rounds=3), tmp_path, "a", holder_indices="0-3")
        other = await start(small_conf(rounds=3, seed=5), tmp_path, "other", role="relay",
                            peers=[a.transport.advertise])
        try:
            await wait_until(lambda: a.transport.refusals.get("wrong-genesis", 0) >= 1
                             and other.transport.refusals.get("wrong-genesis", 0) >= 1, 20, "both to refuse")
            assert not a.transport.peers and not other.transport.peers
            await wait_until(lambda: a.node.height >= 3, 30, "a to go on alone")
            assert other.node.height == 0
        finally:
            await a.stop()
            await other.stop()

    asyncio.run(main())
    text = caplog.text
    assert "wrong-genesis" in text and "another config or seed" in text


def test_a_data_directory_of_another_chain_is_refused(tmp_path):
    async def main():
        a = await start(small_conf(rounds=2), tmp_path, "a", holder_indices="0-3")
        await wait_until(lambda: a.node.height >= 2, 30)
        await a.stop()

    asyncio.run(main())
    from learningchain.network.daemon import NodeDaemon

    with pytest.raises(StoreError, match="belongs to another chain"):
        NodeDaemon(small_conf(rounds=2, seed=9), data_dir=tmp_path / "a")


def test_one_data_directory_serves_one_node_at_a_time(tmp_path):
    from learningchain.errors import ConfigError
    from learningchain.network.daemon import NodeDaemon

    conf = small_conf(rounds=2)
    first = NodeDaemon(conf, data_dir=tmp_path / "a")
    with pytest.raises(ConfigError, match="in use by another running node"):
        NodeDaemon(conf, data_dir=tmp_path / "a")
    with pytest.raises(ConfigError, match="out of range"):
        NodeDaemon(conf, data_dir=tmp_path / "b", holder_indices="7")
    second = NodeDaemon(conf, data_dir=tmp_path / "b", holder_indices="1")  # the refusal unlocked it
    second.node.store.close()
    second._unlock()
    first.node.store.close()
    first._unlock()


def test_a_losing_block_waits_unvalidated_until_its_branch_gets_heavier(tmp_path):
    from .netkit import RawPeer, forged_round
    from learningchain.network.wire import Kind

    conf = small_conf(rounds=1, stop_height=0)

    async def main():
        a = await start(conf, tmp_path, "a", role="relay")
        try:
            peer = await RawPeer.connect(a, node_id=b"\x08" * 20)
            await asyncio.sleep(0.2)
            _, x = forged_round(a, seed=11)
            _, y = forged_round(a, seed=12)
            low, high = sorted((x, y), key=lambda b: b.hash)
            peer.send(Kind.BLOCK, low.encode())
            await wait_until(lambda: a.node.head_hash == low.hash, 5, "the first block")
            peer.send(Kind.BLOCK, high.encode())  # same work, higher hash: it cannot win now
            await wait_until(lambda: high.hash in a.deferred, 5, "the losing sibling to be put aside")
            assert high.hash not in a.node.headers and a.node.verdicts.blocks.get(high.hash, 0) == 0
            _, child = forged_round(a, seed=13, parent=high)  # now high's branch is heavier
            peer.send(Kind.BLOCK, child.encode())
            await wait_until(lambda: a.node.head_hash == child.hash, 5, "the reorg onto the heavier branch")
            assert high.hash in a.node.headers and not a.deferred
            peer.close()
        finally:
            await a.stop()

    asyncio.run(main())
    assert verify_chain(tmp_path / "a").ok


def test_a_restarted_holder_does_not_answer_the_same_head_twice(tmp_path):
    conf = small_conf(rounds=2, collect_ms=60_000)  # holders 2 and 3 never come: no block forms

    async def main():
        a = await start(conf, tmp_path, "a", holder_indices="0,1")
        await wait_until(lambda: a.messages_sent == 2, 10, "the two messages for genesis")
        await a.stop()
        a = await start(conf, tmp_path, "a", holder_indices="0,1")
        try:
            await asyncio.sleep(0.8)
            assert a.node.height == 0 and a.messages_sent == 0
        finally:
            await a.stop()

    asyncio.run(main())
    genesis = canonical(tmp_path / "a" / "chain.sqlite")[0]
    assert (tmp_path / "a" / "held").read_text().split() == [genesis.hex()]


@pytest.mark.parametrize("content", [b"", b"SQLite format 3\x00" + b"\x07" * 3000, b"not a database\n" * 50])
def test_a_node_directory_whose_chain_file_is_not_a_chain_store_is_refused(tmp_path, content):
    from learningchain.network.daemon import NodeDaemon

    conf = small_conf(rounds=2)
    first = NodeDaemon(conf, data_dir=tmp_path / "a")  # an existing node directory
    first.node.store.close()
    first._unlock()
    chain = tmp_path / "a" / "chain.sqlite"
    for extra in ("-wal", "-shm"):
        chain.with_name(chain.name + extra).unlink(missing_ok=True)
    chain.write_bytes(content)
    with pytest.raises(StoreError, match="is not a LearningChain chain store"):
        NodeDaemon(conf, data_dir=tmp_path / "a")
    assert chain.read_bytes() == content
    again = NodeDaemon(conf, data_dir=tmp_path / "b")  # the refusal left the lock free; others start
    again.node.store.close()
    again._unlock()


def test_a_nodes_holders_draw_noise_and_keys_from_the_os_csprng_and_status_says_so(tmp_path):
    from learningchain.network.config import load_net_config
    from learningchain.network.daemon import NodeDaemon
    from learningchain.privacy.secure import GENERATOR_SECURE, SecureRandom

    conf = small_conf(rounds=2)
    d = NodeDaemon(conf, data_dir=tmp_path / "a", holder_indices="0,1")
    try:
        assert all(isinstance(h.rng, SecureRandom) for h in d.holders)
        privacy = d.status(evaluate=False)["privacy"]
        assert privacy["generator"] == GENERATOR_SECURE and privacy["sampling"] == "fixed"
    finally:
        d.node.store.close()
        d._unlock()
    # secure_rng = false: numpy's PCG64 seeded from the OS, said as such
    plain = load_net_config(None, train_overrides={"dataset": "breast-cancer", "holders": 4, "rounds": 2,
                                                   "no_dp": True, "difficulty": 8, "secure_rng": False,
                                                   "sampling": "poisson", "batch_size": 20},
                            network_overrides={"interval_ms": 0})
    e = NodeDaemon(plain, data_dir=tmp_path / "b", holder_indices="2")
    try:
        assert not isinstance(e.holders[0].rng, SecureRandom) and e.holders[0].sampling == "poisson"
        privacy = e.status(evaluate=False)["privacy"]
        assert "not a CSPRNG" in privacy["generator"] and privacy["sampling"] == "poisson"
    finally:
        e.node.store.close()
        e._unlock()


def test_nothing_a_peer_sends_is_handled_once_this_node_closed_it(tmp_path):
    """A deny or a ban closes a connection for what it brings in at once: a frame read
    after the close is not handled. Before, the read loop went on handling frames until
    the connection's own queued frames had gone out (``closed`` is set only then), so
    blocks could still come in across a partition just cut."""
    from learningchain.network.wire import Kind, encode_ping

    class Closing:  # a peer whose connection this node closes after its first frame
        def __init__(self):
            self.closed = asyncio.Event()
            self.close_reason = ""
            self.sent = 0

        async def read_frame(self):
            self.sent += 1
            if self.sent == 2:
                self.close_reason = "denied"  # what Peer.close sets; its writer is still flushing
            return Kind.PING, encode_ping(self.sent)

        def solicited(self, kind, payload):
            return True

        def label(self):
            return "closing-peer"

    async def main():
        node = await start(small_conf(rounds=1), tmp_path, "a", role="relay")
        try:
            handled = []
            node.transport._dispatch = lambda peer, kind, payload: handled.append(payload)
            peer = Closing()
            await asyncio.wait_for(node.transport._read_loop(peer), 5)
            return handled, peer.sent
        finally:
            await node.stop()

    handled, read = asyncio.run(main())
    assert handled == [encode_ping(1)] and read == 2


def test_a_connection_denied_during_its_handshake_never_becomes_a_peer(tmp_path):
    """A deny while a connection waits for its AUTH (after its hello passed the deny
    check) refuses it. Before, such a connection was registered after the deny, and a
    partition could keep a live link across it (blocks crossed the cut)."""
    import secrets

    from learningchain.crypto import PrivateKey, sha256
    from learningchain.network.secure import peer_fingerprint, sign_auth
    from learningchain.network.wire import PROTOCOL_VERSION, Hello, Kind, encode_hello

    from .netkit import RawPeer, _client_tls

    async def main():
        node = await start(small_conf(rounds=1, stop_height=0), tmp_path, "a", role="relay")
        try:
            host, port = node.transport.advertise
            reader, writer = await asyncio.open_connection(host, port, ssl=_client_tls(), server_hostname="")
            key = PrivateKey(sha256(b"denied-in-handshake"))
            raw = RawPeer(reader, writer, key)
            nonce = secrets.token_bytes(32)
            listen = ("127.0.0.1", 45999)  # the address it says it listens on
            raw.send(Kind.HELLO, encode_hello(Hello(PROTOCOL_VERSION, node.genesis.hash, key.address, listen[0],
                                                    listen[1], 0, node.genesis.hash, 0, "", nonce)))
            theirs = await raw.read_hello()
            assert theirs is not None, "the node answered the hello"
            await asyncio.sleep(0.2)  # the node has checked the hello and waits for the AUTH
            assert any(p.hello is not None and p.hello.node_id == key.address for p in node.transport.pending)
            node.transport.deny(listen)
            fp = peer_fingerprint(writer) or b"\x00" * 32
            raw.send(Kind.AUTH, sign_auth(key, node.genesis.hash, fp, nonce, theirs.nonce, 0))
            closed = await raw.closed_by_peer(5.0)
            await asyncio.sleep(0.2)
            return closed, key.address in node.transport.peers
        finally:
            await node.stop()

    closed, registered = asyncio.run(main())
    assert closed and not registered
