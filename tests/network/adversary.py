"""The attackers of the hostile-network issue, speaking the real protocol, for
tests/network/test_attacks_processes.py and benchmarks/bench_network.py."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import socket
import threading
import time
from types import SimpleNamespace

import numpy as np

from learningchain.network.wire import Kind, decode_get_blocks, encode_blocks_end
from learningchain.protocol import Block, decode_block

from ..helpers import make_keys, message_for
from .netkit import RawPeer

ATTACKER = "127.0.0.2"  # another loopback address: one host that is not the honest nodes'


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _frames(peer, on_frame, stop):
    try:
        while not stop.is_set():
            head = await asyncio.wait_for(peer.reader.readexactly(4), 1.0)
            body = await peer.reader.readexactly(int.from_bytes(head, "little"))
            await on_frame(body[0], body[1:])
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
        pass


class Attackers:
    """Every attack at once, from one event loop in a thread."""

    def __init__(self, nodes, genesis, params, honest_ids):
        self.nodes = nodes  # [(p2p port, http port)]
        self.genesis = genesis
        self.params = params
        self.honest_ids = honest_ids
        self.stop = threading.Event()
        self.sent = {"forged": 0, "sybil": 0, "junk_bytes": 0}
        self.only = [a for a in os.environ.get("LC_ATTACKS", "").split(",") if a]  # a subset, to find a cost
        self.errors: list = []

    def run(self):
        import logging

        # writes to connections the nodes have already closed (banned) are the point here
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        asyncio.run(self._main())

    async def _main(self):
        every = {"forger": lambda: self._forger(), "silent": lambda: self._staller(0, answer=False),
                 "looper": lambda: self._staller(1, answer=True), "spoofer": lambda: self._spoofer(),
                 "junk": lambda: self._junk(2), "hog": lambda: self._hog(1), "loris": lambda: self._loris(0)}
        tasks = [every[name]() for name in (self.only or every)]
        tasks = [asyncio.ensure_future(t) for t in tasks]
        while not self.stop.is_set() and not all(t.done() for t in tasks):
            await asyncio.sleep(0.2)
        done, pending = await asyncio.wait(tasks, timeout=10)
        for t in pending:  # blocked on a node that stopped answering: that is not an error here
            t.cancel()
        self.errors = [t.exception() for t in done if not t.cancelled() and t.exception() is not None]

    async def _dial(self, i, node_id, **kw):
        kw.setdefault("local_host", ATTACKER)  # one attacking host, as the attacks
        return await RawPeer.dial("127.0.0.1", self.nodes[i][0], self.genesis, node_id=node_id, **kw)

    async def _forger(self):
        """Hears blocks from node 0; sends forged copies to nodes 1 and 2 and a Sybil flood to
        all three, each time from fresh ids (the nodes ban the ones they caught)."""
        ear = await self._dial(0, b"\xa0" * 20)
        sybils = make_keys(24, seed=5)
        rng = np.random.default_rng(3)
        done = set()
        last = [0.0]
        fresh = iter(range(1 << 30))

        pools = {0: [], 1: [], 2: []}  # connections dialed ahead, so forged copies leave at once

        async def refill():
            while not self.stop.is_set():
                for i, pool in pools.items():
                    while len(pool) < 1:
                        try:
                            pool.append(await self._dial(i, next(fresh).to_bytes(20, "big")))
                        except OSError:
                            break
                await asyncio.sleep(0.05)

        async def disposable(i):
            deadline = time.monotonic() + 2.0
            while not pools[i]:
                if self.stop.is_set() or time.monotonic() > deadline:
                    return None
                await asyncio.sleep(0.01)
            return pools[i].pop(0)

        async def on_frame(kind, payload):
            if kind != Kind.BLOCK:
                return
            block = decode_block(payload, max_dim=self.params.dim, max_messages=self.params.max_messages)
            if block.hash in done or time.monotonic() - last[0] < 0.2:  # at most five blocks a second
                return
            done.add(block.hash)
            last[0] = time.monotonic()
            copies = [Block(block.header, block.messages, block.selection, block.model + 1e-3).encode()]
            if block.messages:
                copies.append(Block(block.header, block.messages[1:], block.selection, block.model).encode())
            raw = block.encode()
            copies.append(raw[: len(raw) - 40])
            for i in (1, 2):
                m = await disposable(i)
                if m is None:
                    continue
                for c in copies:
                    m.send(Kind.BLOCK, c)
                self.sent["forged"] += len(copies)
                self._later.append(m)
            msgs = [message_for(key, self.params, block, 1e6 * rng.normal(size=self.params.dim)).encode()
                    for key in sybils]
            for i in (0, 1, 2):
                m = await disposable(i)
                if m is None:
                    continue
                for raw in msgs:
                    m.send(Kind.MESSAGE, raw)
                self.sent["sybil"] += len(msgs)
                self._later.append(m)
            while len(self._later) > 6:
                self._later.pop(0).close()

        self._later = []
        filler = asyncio.create_task(refill())
        await _frames(ear, on_frame, self.stop)
        await filler
        for m in self._later:
            m.close()

    async def _staller(self, i, *, answer):
        liar = await self._dial(i, bytes([0xb0 + answer]) * 20, work=1 << 60, head=b"\x5a" * 32)

        async def on_frame(kind, payload):
            if answer and kind == Kind.GET_BLOCKS:
                request, _, _ = decode_get_blocks(payload)
                liar.send(Kind.BLOCKS_END, encode_blocks_end(request, 1, True))

        await _frames(liar, on_frame, self.stop)

    async def _spoofer(self):
        while not self.stop.is_set():
            try:
                p = await self._dial(0, b"\xc0" * 20, claim=self.honest_ids[1])
                await asyncio.sleep(0.5)
                p.close()
            except OSError:
                await asyncio.sleep(0.5)

    async def _junk(self, i):
        """Blocks with bad proof of work and about 1 MB of body, at 2 MB/s."""
        p = await self._dial(i, b"\xd0" * 20)
        while not self.stop.is_set():
            junk = (1 << 20).to_bytes(4, "little") + bytes(np.random.default_rng().integers(0, 256, 1 << 20,
                                                                                          dtype=np.uint8))
            p.send(Kind.BLOCK, junk)
            self.sent["junk_bytes"] += len(junk)
            try:
                await asyncio.wait_for(p.writer.drain(), 2.0)
            except (asyncio.TimeoutError, ConnectionError, OSError):
                p = await self._dial(i, b"\xd1" * 20)
            await asyncio.sleep(0.5)

    async def _hog(self, i):
        held, peers = [], []
        for j in range(10):
            try:
                peers.append(await self._dial(i, bytes([0xe0 + j]) * 20, local_host=ATTACKER))
            except OSError:
                pass
        while not self.stop.is_set():
            held = [w for w in held if not w.is_closing()]
            while len(held) < 60:
                try:
                    _, w = await asyncio.open_connection("127.0.0.1", self.nodes[i][0], local_addr=(ATTACKER, 0))
                except OSError:
                    break
                held.append(w)
            await asyncio.sleep(0.2)
        for w in held:
            w.close()

    async def _loris(self, i):
        socks = []
        loop = asyncio.get_running_loop()

        def open_some(n):
            out = []
            for _ in range(n):
                try:
                    s = socket.create_connection(("127.0.0.1", self.nodes[i][1]), timeout=2,
                                                 source_address=(ATTACKER, 0))
                    s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")
                    out.append(s)
                except OSError:
                    break
            return out

        while not self.stop.is_set():
            if len(socks) < 300:
                socks += await loop.run_in_executor(None, open_some, 50)
            await asyncio.sleep(1.0)
            socks = socks[-300:]
        for s in socks:
            s.close()


def block_rate(net, seconds):
    start = [s["height"] for s in net.statuses()]
    t0 = time.monotonic()
    time.sleep(seconds)
    end = [s["height"] for s in net.statuses()]
    return [(b - a) / (time.monotonic() - t0) for a, b in zip(start, end)]




def _attack_process(nodes, genesis, params, ids, stop, results) -> None:
    os.nice(19)
    attackers = Attackers(nodes, genesis, params, ids)
    watcher = threading.Thread(target=lambda: (stop.wait(), attackers.stop.set()), daemon=True)
    watcher.start()
    attackers.run()
    results.put((dict(attackers.sent), [repr(e) for e in attackers.errors]))


def attack_scenario(workdir, window_s: float = 20.0, *, nodes: int = 3, difficulty: int = 4,
                    holder_delay_ms: int = 150) -> dict:
    """Run a permissioned network of node processes, measure its block rate, then
    again under every attack at once; the measurements and the nodes' final states."""
    from learningchain.network.config import load_net_config
    from learningchain.network.daemon import load_or_create_key, network_setup
    from learningchain.network.launcher import LocalNetwork

    conf = load_net_config(None, train_overrides={"dataset": "breast-cancer", "holders": 6, "rounds": 5000,
                                                  "no_dp": True, "difficulty": difficulty},
                           # Holders wait 150 ms on each head and a block takes a few hashes: the
                           # nodes' CPU is mostly idle, as on a real network, so the rate measured
                           # falls only where an attack disrupts the protocol or takes real work.
                           network_overrides={"interval_ms": 0, "collect_ms": 250, "reconnect_s": 0.25,
                                              "holder_delay_ms": holder_delay_ms,
                                              "sync_timeout_s": 3.0, "handshake_timeout_s": 3.0})
    net = LocalNetwork(workdir, conf, nodes, permissioned=True)
    net.evaluate = False
    net.prepare()
    setup = network_setup(net.conf)
    ids = []
    for n in net.nodes:
        n.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        ids.append(load_or_create_key(n.dir / "node.key").address)
    # The attackers run in their own process at the lowest CPU priority: on a small
    # machine they share the nodes' cores, and what is measured must be what the
    # attacks cost the nodes, not the attacker's own CPU.
    ctx = multiprocessing.get_context("spawn")
    stop, results = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_attack_process, daemon=True,
                       args=([(n.port, n.http_port) for n in net.nodes], setup.genesis.hash, setup.params, ids,
                             stop, results))
    attackers = SimpleNamespace(sent={}, errors=[])
    try:
        net.start()
        net.wait_for(lambda s: all(x and x["height"] >= 5 and len(x["peers"]) >= nodes - 1 for x in s), 120,
                     what="connected nodes at height 5")
        baseline = block_rate(net, window_s)
        rss0 = [rss_mb(n.proc.pid) for n in net.nodes]
        proc.start()
        time.sleep(4.0)  # the attackers' process starts and connects
        attacked = block_rate(net, window_s)
        during = net.statuses()
        rss1 = [rss_mb(n.proc.pid) for n in net.nodes]
        stop.set()
        try:
            attackers.sent, attackers.errors = results.get(timeout=60)
        except queue.Empty:
            attackers.errors = ["the attackers' process reported nothing"]
        proc.join(10)
        final = net.wait_for(lambda s: all(s) and len({x["head"] for x in s}) == 1, 60, what="one head")
    finally:
        stop.set()
        if proc.is_alive():
            proc.kill()
        codes = net.stop()
    return {"net": net, "ids": ids, "members": set(net.conf.network.members), "attackers": attackers,
            "baseline": baseline, "attacked": attacked, "rss0": rss0, "rss1": rss1, "during": during,
            "final": final, "codes": codes}
