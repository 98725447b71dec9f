"""Memory and disk of a long MNIST MLP run with the chain kept.

Prints the resident memory (VmRSS) of an MNIST MLP 784-100-10 (d = 79,510), K = 100,
--no-dp run after rounds 20, 60 and N, its peak, and the bytes per block of the
chain on disk for an archival node and for a node that prunes message bodies deeper
than a finality depth (the run's chain re-stored by a pruned node).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_scale_memory.py [--rounds 60] [--full] [--message-bits 16]

``--full`` runs the issue's 300 rounds (about 15 minutes on 2 shared cores, most
of it the rounds; the pruned copy of the chain takes a few more).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


from learningchain.config import TrainConfig  # noqa: E402
from learningchain.experiments.native import NativeBackend  # noqa: E402
from learningchain.experiments.train import build_parties  # noqa: E402
from learningchain.node import Node, SQLiteStore  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pruned_copy(archive: SQLiteStore, genesis, depth: int, path: Path) -> SQLiteStore:
    """The archival chain accepted block by block by a pruned node (a genesis with a finality depth
    would differ in hash, so the pruned store is filled from the same blocks with pruning forced)."""
    store = SQLiteStore(path)
    node = Node(genesis, store=store, validation="header")
    store.enable_pruning(depth)
    for h in range(1, archive.canonical_length()):
        node.on_block(archive.get(archive.canonical_hash(h)))
    return store


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--full", action="store_true", help="300 rounds, the issue's target run")
    ap.add_argument("--depth", type=int, default=6, help="finality depth of the pruned node")
    ap.add_argument("--message-bits", type=int, default=32, choices=(16, 32),
                    help="the genesis width of a message's entries (16: compact messages)")
    args = ap.parse_args(argv)
    n = 300 if args.full else args.rounds
    cfg = TrainConfig(dataset="mnist", model="mlp", holders=100, no_dp=True, rounds=n, progress=False,
                      message_bits=args.message_bits).resolved()
    parties = build_parties(cfg)
    out = Path(tempfile.mkdtemp())
    backend = NativeBackend(cfg, parties, out)
    marks = {20, 60, n}
    print(f"MNIST MLP d={parties.params.dim} K={cfg.holders}, {n} rounds, chain kept")
    t0 = time.perf_counter()
    for r in range(1, n + 1):
        backend.step()
        if r in marks:
            print(f"  RSS after round {r}: {rss_mb():.0f} MB ({time.perf_counter() - t0:.0f} s)", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS: {peak:.0f} MB (target <= 2048 MB)", flush=True)
    archive = backend.archive.store
    height = archive.canonical_length() - 1
    a_bytes = (out / "chain.sqlite").stat().st_size
    pruned = pruned_copy(archive, parties.genesis, args.depth, out / "pruned.sqlite")
    deep = pruned._db.execute("SELECT AVG(length(header) + length(body)) FROM blocks WHERE height > 0 AND "
                              "height < ?", (pruned.pruned_below,)).fetchone()[0]
    pruned.close()
    p_bytes = (out / "pruned.sqlite").stat().st_size
    print(f"  bytes per block, archival: {a_bytes / height / 1e6:.2f} MB")
    print(f"  bytes per block, pruned (finality depth {args.depth}): {p_bytes / height / 1e6:.2f} MB "
          "(target <= 1 MB; the file holds the last bodies whole and SQLite's free pages)")
    if deep is not None:
        print(f"  stored bytes of a pruned block (below the finality depth): {deep / 1e6:.2f} MB")
    backend.close()


if __name__ == "__main__":
    main()
