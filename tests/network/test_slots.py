"""One host cannot hold a node's peer slots: handshakes in flight are bounded on
their own and per IP, an IP holds at most ``max_inbound_per_ip`` connections, and
when the inbound slots are full a newcomer takes the slot of the most crowded
host's least useful peer. The attacker connects from 127.0.0.2 (another
loopback address), honest nodes from 127.0.0.1."""

import asyncio
import time

from .netkit import RawPeer, small_conf, start, wait_until

ATTACKER = "127.0.0.2"


def test_half_open_connections_from_one_host_do_not_keep_an_honest_node_out(tmp_path):
    conf = small_conf(rounds=1, stop_height=0, max_peers=8, handshake_timeout_s=2.0)

    async def main():
        a = await start(conf, tmp_path, "a", role="relay")
        stop = asyncio.Event()
        held: list = []

        async def flood():  # keep 60 TCP connections open that never start TLS
            host, port = a.transport.advertise
            while not stop.is_set():
                held[:] = [w for w in held if not w.is_closing()]
                while len(held) < 60 and not stop.is_set():
                    try:
                        _, w = await asyncio.open_connection(host, port, local_addr=(ATTACKER, 0))
                        held.append(w)
                    except OSError:
                        break
                await asyncio.sleep(0.05)

        task = asyncio.create_task(flood())
        try:
            await asyncio.sleep(1.0)
            pending_before = len(a.transport.pending)
            t0 = time.monotonic()
            b = await start(conf, tmp_path, "b", role="relay", peers=[a.transport.advertise])
            try:
                await wait_until(lambda: len(a.transport.peers) == 1 and len(b.transport.peers) == 1, 10,
                                 "b to connect")
                took = time.monotonic() - t0
            finally:
                await b.stop()
            return pending_before, took, a.transport.refusals.get("too-many-peers", 0)
        finally:
            stop.set()
            await task
            for w in held:
                w.close()
            await a.stop()

    pending, took, refused = asyncio.run(main())
    assert pending <= conf.network.max_pending_per_ip
    assert refused >= 1  # the flood was refused at accept beyond the per-IP bound
    assert took < 3.0


def test_authenticated_peers_from_one_host_are_capped_and_evicted_for_a_newcomer(tmp_path):
    conf = small_conf(rounds=1, stop_height=0, max_peers=6, outbound_slots=1, max_inbound_per_ip=8)

    async def main():
        a = await start(conf, tmp_path, "a", role="relay")
        hogs = []
        try:
            for i in range(12):
                hogs.append(await RawPeer.connect(a, node_id=bytes([0x40 + i]) * 20, local_host=ATTACKER))
            await asyncio.sleep(0.5)
            hogged = sum(1 for p in a.transport.peers.values() if p.remote[0] == ATTACKER)
            b = await start(conf, tmp_path, "b", role="relay", peers=[a.transport.advertise])
            try:
                await wait_until(lambda: b.key.address in a.transport.peers, 10, "b to get a slot")
                after = sum(1 for p in a.transport.peers.values() if p.remote[0] == ATTACKER)
            finally:
                await b.stop()
            return hogged, after, a.transport.refusals.get("evicted", 0)
        finally:
            for h in hogs:
                h.close()
            await a.stop()

    hogged, after, evicted = asyncio.run(main())
    assert hogged == 5  # max_peers - outbound_slots inbound slots, all the attacker's
    assert evicted == 1 and after == 4
