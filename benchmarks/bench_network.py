"""Network benchmark: node processes on loopback against in-process baselines.

1. Time per round of N `learningchain node` processes (N = 4 and 8) as a ratio to
   the in-process network (`learningchain train`) with the same settings: the same
   data set, holders, rounds, privacy and a fixed proof-of-work difficulty, with N
   computing nodes in both. The network's time per round is read from the chain it
   wrote (block timestamps, rounds 1..R), the in-process one from its round timer,
   so neither counts process start-up. Target: at most 2x at 4 nodes.
2. Time for a fresh node process to sync a 1,000-block chain from a peer process
   (measured inside the node: first request to last block stored) as a ratio to
   `chain verify` of the same chain in this process. Target: at most 1.5x.
3. Block rate of three permissioned node processes without and with every attack
   of the hostile-network issue at once (tests/network/adversary.py: forged
   bodies, sync stalls, a spoofed id, a Sybil flood, junk blocks, one host
   holding slots, slow-loris status clients), as a ratio, and each node's RSS
   growth. Target: at least 0.7, under 100 MB.
4. The encrypted transport against the same signed challenge over plain TCP:
   handshake and per-frame time (benchmarks/bench_transport.py).

Usage: python benchmarks/bench_network.py [--quick] [--nodes 4,8] [--difficulty 8,16] [--rounds 30]
       [--sync-blocks 1000]

The full run takes a quarter of an hour or more on two cores (more on a loaded machine);
``--quick`` (2 nodes, 8 bits, 8 holders, 3 rounds, one repeat, a 50-block sync)
takes under a minute and checks that every part runs; its ratios are rough.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from learningchain.config import TrainConfig  # noqa: E402
from learningchain.experiments.train import GENESIS_TIME_MS, run_training  # noqa: E402
from learningchain.network.config import NetConfigFile, NetworkConfig  # noqa: E402
from learningchain.network.launcher import LocalNetwork, _seconds_per_round, converged  # noqa: E402
from learningchain.node.verify import verify_chain  # noqa: E402


#: ``--quick``: every part of the benchmark, small enough to run in under a minute.
QUICK = {"nodes": "2", "difficulty": "8", "holders": 8, "rounds": 3, "repeat": 1, "sync_blocks": 50,
         "sync_holders": 8, "attack_window": 5.0}


def train_cfg(args, *, rounds, difficulty, miners=None, out=None) -> TrainConfig:
    return TrainConfig(dataset=args.dataset, holders=args.holders, rounds=rounds, difficulty=difficulty,
                       miners=miners, out=out, force=True, progress=False, seed=args.seed)


def inprocess_round(args, difficulty, nodes, work) -> float:
    s = run_training(train_cfg(args, rounds=args.rounds, difficulty=difficulty, miners=nodes,
                               out=str(work / f"inproc-{nodes}-{difficulty}")))
    return s["seconds_per_round"]


def network_round(args, difficulty, nodes, work) -> tuple[float, dict]:
    conf = NetConfigFile(train_cfg(args, rounds=args.rounds, difficulty=difficulty),
                         NetworkConfig(interval_ms=0, collect_ms=3000, holder_delay_ms=args.holder_delay_ms))
    out = work / f"net-{nodes}-{difficulty}-{time.monotonic_ns()}"
    net = LocalNetwork(out, conf, nodes)
    net.evaluate = False  # no test-error evaluation in the nodes while they are timed
    net.prepare()
    try:
        net.start()
        final = net.wait_for(lambda s: converged(s, args.rounds), 900, poll=0.5, what=f"{nodes} nodes")
    finally:
        net.stop()
    per_round = _seconds_per_round(net.nodes[0].dir)
    extra = {"blocks_mined": sum(s["blocks_mined"] for s in final),
             "messages_sent": sum(s["messages_sent"] for s in final),
             "messages_per_round": round(sum(s["messages_sent"] for s in final) / args.rounds, 1)}
    return per_round, extra


def sync_benchmark(args, work) -> dict:
    blocks = args.sync_blocks
    src = work / "sync-source"
    cfg = train_cfg(args, rounds=blocks, difficulty=8, miners=4, out=str(src))
    t = time.perf_counter()
    run_training(replace(cfg, holders=args.sync_holders))
    build = time.perf_counter() - t
    verify_times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        report = verify_chain(src)
        verify_times.append(time.perf_counter() - t)
        assert report.ok and report.height == blocks, report.error
    conf = NetConfigFile(replace(cfg, holders=args.sync_holders, out=None),
                         NetworkConfig(interval_ms=0, genesis_time_ms=GENESIS_TIME_MS))
    sync_times, walls, cpu = [], [], []
    for rep in range(args.repeat):
        out = work / f"sync-net-{rep}"
        net = LocalNetwork(out, conf, 2, holders_of=[[], []], roles=["relay", "relay"], min_peers=0)
        net.evaluate = False
        net.prepare()
        net.nodes[0].dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copy(src / "chain.sqlite", net.nodes[0].dir / "chain.sqlite")
        try:
            net.start(0)
            net.wait_for(lambda s: s[0] is not None and s[0]["height"] == blocks, 120, what="the seed node")
            t = time.perf_counter()
            net.start(1)
            final = net.wait_for(lambda s: converged(s, blocks), 600, poll=0.25, what="the fresh node to sync")
            walls.append(time.perf_counter() - t)
        finally:
            net.stop()
        ls = final[1]["last_sync"]
        assert ls["complete"] and ls["to_height"] == blocks, ls
        sync_times.append(ls["seconds"])
        cpu.append(ls["cpu_seconds"])
        assert verify_chain(net.nodes[1].dir).ok
    v, s = min(verify_times), min(sync_times)
    return {"blocks": blocks, "holders": args.sync_holders, "build_seconds": round(build, 2),
            "verify_seconds": [round(x, 3) for x in verify_times], "sync_seconds": sync_times, "sync_cpu_seconds": cpu,
            "sync_wall_with_process_start": [round(x, 2) for x in walls], "ratio": round(s / v, 3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--holders", type=int, default=30)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--nodes", default="4,8")
    p.add_argument("--difficulty", default="8,16", help="fixed proof-of-work bits to compare at (comma list)")
    p.add_argument("--sync-blocks", type=int, default=1000)
    p.add_argument("--sync-holders", type=int, default=30)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--holder-delay-ms", type=int, default=0)
    p.add_argument("--skip-rounds", action="store_true")
    p.add_argument("--skip-sync", action="store_true")
    p.add_argument("--skip-attack", action="store_true")
    p.add_argument("--skip-transport", action="store_true")
    p.add_argument("--attack-window", type=float, default=20.0, metavar="S",
                   help="seconds each block rate is measured over, without and with the attackers")
    p.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--quick", action="store_true",
                   help="under a minute: " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items())
                        + " (options given explicitly still apply)")
    if "--quick" in sys.argv[1:]:
        p.set_defaults(**QUICK)
    args = p.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-network-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {"cpus": os.cpu_count(), "rounds": [], "sync": None}
    try:
        if not args.skip_rounds:
            print(f"time per round: {args.dataset}, K={args.holders}, {args.rounds} rounds, fixed difficulty")
            print(f"{'nodes':>5} {'bits':>4} {'in-process s':>13} {'network s':>10} {'ratio':>6} {'blocks':>7}")
            for bits in [int(x) for x in args.difficulty.split(",")]:
                for n in [int(x) for x in args.nodes.split(",")]:
                    bases, pers, extra = [], [], {}
                    for _ in range(args.repeat):  # interleaved, so both see the same machine load
                        bases.append(inprocess_round(args, bits, n, work))
                        per, extra = network_round(args, bits, n, work)
                        pers.append(per)
                    base, per = statistics.median(bases), statistics.median(pers)
                    ratio = per / base
                    results["rounds"].append({"nodes": n, "difficulty": bits, "inprocess_s": bases,
                                              "network_s": pers, "ratio": round(ratio, 3),
                                              "load_average": os.getloadavg()[0], **extra})
                    print(f"{n:>5} {bits:>4} {base:>13.4f} {per:>10.4f} {ratio:>6.2f} "
                          f"{extra['blocks_mined']:>4}/{args.rounds}  (load {os.getloadavg()[0]:.1f})", flush=True)
        if not args.skip_sync:
            r = sync_benchmark(args, work)
            results["sync"] = r
            print(f"sync of {r['blocks']} blocks (K={r['holders']}): fresh node {min(r['sync_seconds']):.3f} s, "
                  f"chain verify {min(r['verify_seconds']):.3f} s, ratio {r['ratio']:.2f} "
                  f"(with process start-up: {min(r['sync_wall_with_process_start']):.2f} s)")
        if not args.skip_attack:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
            from tests.network.adversary import attack_scenario

            r = attack_scenario(work / "attack", args.attack_window)
            ratios = [a / b for a, b in zip(r["attacked"], r["baseline"])]
            growth = [b - a for a, b in zip(r["rss0"], r["rss1"])]
            results["attack"] = {"baseline_blocks_per_s": r["baseline"], "attacked_blocks_per_s": r["attacked"],
                                 "ratio": ratios, "rss_growth_mb": growth, "sent": r["attackers"].sent,
                                 "one_head": len({x["head"] for x in r["final"]}) == 1}
            print(f"block rate, 3 permissioned nodes, {args.attack_window:g} s each: without attackers "
                  f"{statistics.mean(r['baseline']):.2f}/s, under every attack {statistics.mean(r['attacked']):.2f}/s, "
                  f"ratio {min(ratios):.2f} (worst node); RSS growth {max(growth):.1f} MB (worst node); "
                  f"one head after: {results['attack']['one_head']}; sent {r['attackers'].sent}")
        if not args.skip_transport:
            import asyncio
            from types import SimpleNamespace

            from bench_transport import measure

            targs = SimpleNamespace(handshakes=20 if args.quick else 50, frames=500 if args.quick else 2000,
                                    frame_bytes=[5000, 100000])
            plain, tls = asyncio.run(measure(False, targs)), asyncio.run(measure(True, targs))
            results["transport"] = {"plain": plain, "tls": tls}
            print(f"transport: handshake {plain['handshake_s'] * 1e3:.2f} ms plain, {tls['handshake_s'] * 1e3:.2f} ms "
                  f"TLS 1.3 ({tls['handshake_s'] / plain['handshake_s']:.2f}x); " + "; ".join(
                      f"frame of {n} B {plain[f'frames_{n}_s'] / targs.frames * 1e6:.0f} us plain, "
                      f"{tls[f'frames_{n}_s'] / targs.frames * 1e6:.0f} us TLS "
                      f"({tls[f'frames_{n}_s'] / plain[f'frames_{n}_s']:.2f}x)" for n in targs.frame_bytes))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
