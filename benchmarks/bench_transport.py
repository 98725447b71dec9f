"""Transport benchmark: the cost of the encrypted, authenticated link.

Two transports in one event loop on loopback, each measured twice in the same
run: with TLS 1.3 and the signed challenge (what nodes use), and with the
signed challenge over plain TCP (the baseline). Prints, for each:

1. handshake: seconds from dialing to both ends holding the authenticated peer,
   the median of ``--handshakes`` fresh connections;
2. frames: seconds to move ``--frames`` frames of ``--frame-bytes`` bytes (a
   message batch is about 5 KB at the synthetic set's dimension, a block with its
   messages 20-200 KB), from the first send to the last frame received;

and the ratio TLS / plain. Target (issue: a 4-node round within 1.2x): the
per-frame cost of TLS at block and message sizes is a small share of a round,
which is dominated by proof of work and validation (see docs/NETWORK.md).

Usage: python benchmarks/bench_transport.py [--handshakes 50] [--frames 2000] [--frame-bytes 5000,100000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from learningchain.crypto import PrivateKey  # noqa: E402
from learningchain.network.config import NetworkConfig  # noqa: E402
from learningchain.network.tcp import Transport  # noqa: E402
from learningchain.network.wire import PROTOCOL_VERSION, Hello, Kind  # noqa: E402

GENESIS = b"\x42" * 32


class Sink:
    """A handler that counts frames and wakes a waiter at a target count."""

    def __init__(self, key):
        self.key = key
        self.peers = 0
        self.frames = 0
        self.target = None
        self.event = asyncio.Event()

    def hello(self) -> Hello:
        return Hello(PROTOCOL_VERSION, GENESIS, self.key.address, "", 0, 0, GENESIS, 0)

    def on_peer(self, peer) -> None:
        self.peers += 1
        self.event.set()

    def on_frame(self, peer, kind, payload) -> None:
        self.frames += 1
        if self.target is not None and self.frames >= self.target:
            self.event.set()

    def on_peer_closed(self, peer) -> None:
        pass


async def measure(tls: bool, args) -> dict:
    cfg = NetworkConfig(peer_exchange=False, rate_frames=1e9, burst_frames=10 ** 9, rate_bytes=1e12,
                        burst_bytes=10 ** 12, max_frame_bytes=1 << 24, target_peers=0)
    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    sa, sb = Sink(ka), Sink(kb)
    a = Transport(sa, genesis_hash=GENESIS, key=ka, config=cfg, listen=("127.0.0.1", 0), tls=tls)
    b = Transport(sb, genesis_hash=GENESIS, key=kb, config=cfg, listen=None, tls=tls)
    await a.start()
    await b.start()
    out = {}
    try:
        times = []
        for _ in range(args.handshakes):
            sa.event.clear()
            before = sa.peers
            t0 = time.perf_counter()
            await b.dial(*a.advertise)
            while sa.peers == before or kb.address not in a.peers or ka.address not in b.peers:
                await asyncio.wait_for(sa.event.wait(), 10)
                sa.event.clear()
                await asyncio.sleep(0)
            times.append(time.perf_counter() - t0)
            for p in list(b.peers.values()):
                p.close("next")
            while a.peers or b.peers:
                await asyncio.sleep(0.001)
        out["handshake_s"] = statistics.median(times)

        await b.dial(*a.advertise)
        while kb.address not in a.peers or ka.address not in b.peers:
            await asyncio.sleep(0.001)
        peer = b.peers[ka.address]
        for size in args.frame_bytes:
            payload = bytes(size)
            sa.frames, sa.target = 0, args.frames
            sa.event.clear()
            t0 = time.perf_counter()
            for _ in range(args.frames):
                await peer.send_wait(Kind.BLOCK, payload)
            await asyncio.wait_for(sa.event.wait(), 120)
            out[f"frames_{size}_s"] = time.perf_counter() - t0
    finally:
        await b.stop()
        await a.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--handshakes", type=int, default=50)
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--frame-bytes", default="5000,100000")
    args = ap.parse_args()
    args.frame_bytes = [int(x) for x in args.frame_bytes.split(",")]
    plain = asyncio.run(measure(False, args))
    tls = asyncio.run(measure(True, args))
    print(f"{'':28} {'plain TCP':>12} {'TLS 1.3':>12} {'ratio':>7}")
    print(f"{'handshake (median, ms)':28} {plain['handshake_s'] * 1e3:12.2f} {tls['handshake_s'] * 1e3:12.2f} "
          f"{tls['handshake_s'] / plain['handshake_s']:7.2f}")
    for size in args.frame_bytes:
        k = f"frames_{size}_s"
        per_p, per_t = plain[k] / args.frames * 1e6, tls[k] / args.frames * 1e6
        print(f"{f'per frame of {size} B (us)':28} {per_p:12.1f} {per_t:12.1f} {per_t / per_p:7.2f}")


if __name__ == "__main__":
    main()
