"""A round of a model of a million parameters: time and memory, round by round.

Steps the native chain of an MNIST MLP 784-1024-256-10 (d = 1,068,810), K = 100
holders, chain kept and pruned (finality depth 2), and prints after each round its
seconds, the resident memory (VmRSS) and how many messages (each d int32 plus, once
encoded, its d * 4 bytes of encoding) are still alive in the process.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_million.py [--rounds 4] \\
        [--keep-bodies 2] [--mempool-bases 2] [--dp]

``--profile FILE`` writes a cProfile of the rounds (not of the setup) to FILE.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from learningchain.config import TrainConfig  # noqa: E402
from learningchain.experiments.native import NativeBackend  # noqa: E402
from learningchain.experiments.train import build_parties  # noqa: E402
from learningchain.protocol.message import Message  # noqa: E402

from bench_scale_memory import rss_mb  # noqa: E402  (the benchmarks' own probe: the same reading)



def live_messages() -> tuple[int, int]:
    """(messages alive, how many of them hold their cached encoding)."""
    msgs = [o for o in gc.get_objects() if type(o) is Message]
    return len(msgs), sum("encoding" in vars(m) for m in msgs)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--holders", type=int, default=100)
    ap.add_argument("--hidden", default="1024,256")
    ap.add_argument("--keep-bodies", type=int, default=2)
    ap.add_argument("--mempool-bases", type=int, default=2)
    ap.add_argument("--finality-depth", type=int, default=2)
    ap.add_argument("--dp", action="store_true", help="the default l2-laplace mechanism instead of --no-dp")
    ap.add_argument("--profile", default=None)
    args = ap.parse_args(argv)
    cfg = TrainConfig(dataset="mnist", model="mlp", hidden=tuple(int(h) for h in args.hidden.split(",")),
                      holders=args.holders, no_dp=not args.dp, clip_mode="per-example", rounds=args.rounds,
                      finality_depth=args.finality_depth, prune=True, keep_bodies=args.keep_bodies,
                      mempool_bases=args.mempool_bases, progress=False).resolved()
    parties = build_parties(cfg)
    out = Path(tempfile.mkdtemp(prefix="bench-million-"))
    backend = NativeBackend(cfg, parties, out)
    print(f"MNIST MLP {args.hidden} d={parties.params.dim:,} K={cfg.holders}, keep_bodies={cfg.keep_bodies}, "
          f"mempool_bases={cfg.mempool_bases}, {'DP' if args.dp else 'no DP'}; RSS before: {rss_mb():.0f} MB",
          flush=True)
    prof = None
    if args.profile:
        import cProfile
        prof = cProfile.Profile()
    for r in range(1, args.rounds + 1):
        t = time.perf_counter()
        if prof is not None:
            prof.enable()
        backend.step()
        if prof is not None:
            prof.disable()
        sec = time.perf_counter() - t
        alive, encoded = live_messages()
        print(f"  round {r}: {sec:.1f} s, RSS {rss_mb():.0f} MB, messages alive {alive} ({encoded} encoded)",
              flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS: {peak:.0f} MB; chain.sqlite {(out / 'chain.sqlite').stat().st_size / 1e6:.0f} MB")
    backend.archive.store.close()
    shutil.rmtree(out, ignore_errors=True)
    if prof is not None:
        prof.dump_stats(args.profile)


if __name__ == "__main__":
    main()
