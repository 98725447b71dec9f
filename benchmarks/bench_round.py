"""Time of one protocol round against the plain gradient computation of the same holders.

A protocol round is everything the chain adds to learning: every holder's
clipped, noised, normalised, quantised and signed message; admission into every
computing node's mempool; the winner's aggregation and proof of work at the
default difficulty; validation by recomputation at every node; the archive
node's SQLite write. The baseline is each holder computing the plain gradient of
its summed loss with torch autograd at the same model, one holder after another.
Both are measured in this run, on this machine, and printed as a ratio.

The simulation computes the holders' gradients in one batched pass (they share
the model w_t); the ratio with one holder at a time is printed as well.

Also prints the peak memory (max RSS) of a full 300-round breast-cancer run.

    python benchmarks/bench_round.py [--rounds 40]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from learningchain.config import TrainConfig  # noqa: E402
from learningchain.experiments.train import build_miners, build_parties  # noqa: E402
from learningchain.models import set_flat  # noqa: E402
from learningchain.network.simulation import InProcessNetwork  # noqa: E402
from learningchain.privacy import plain_gradient_sum  # noqa: E402


def plain_round(holders, base) -> None:
    for h in holders:
        set_flat(h.model, base.model)
        x, y = h.batch()
        plain_gradient_sum(h.model, h.loss, x, y)


def measure(dataset: str, rounds: int, warmup: int = 5) -> dict:
    cfg = TrainConfig(dataset=dataset, epsilon=0.1, rounds=rounds + warmup).resolved()
    out = {}
    for batched in (True, False):
        parties = build_parties(cfg)
        tmp = Path(tempfile.mkdtemp())
        miners, _ = build_miners(cfg, parties.genesis, tmp / "chain.sqlite")
        net = InProcessNetwork(parties.genesis, parties.holders, miners, rng=np.random.default_rng(0),
                               attacks=parties.attacks, batch_holders=batched)
        for _ in range(warmup):
            net.step()
        proto = plain = 0.0
        for _ in range(rounds):
            base = net.head
            t = time.perf_counter()
            plain_round(parties.holders, base)
            plain += time.perf_counter() - t
            t = time.perf_counter()
            net.step()
            proto += time.perf_counter() - t
        out["batched" if batched else "sequential"] = (proto / rounds, plain / rounds)
        miners[0].node.store.close()
    return {"dataset": dataset, "holders": cfg.holders, "difficulty": cfg.difficulty, **out}


def peak_memory_breast_cancer() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        code = ("from learningchain.cli.main import main; import sys; "
                f"sys.exit(main(['train','--dataset','breast-cancer','--rounds','300','--out',{tmp!r},'--quiet']))")
        subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0  # KiB -> MiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args()
    print(f"{'setting':<28}{'holders':>8}{'round ms':>10}{'plain ms':>10}{'ratio':>8}")
    for dataset in ("synthetic", "breast-cancer"):
        r = measure(dataset, args.rounds)
        for mode in ("batched", "sequential"):
            proto, plain = r[mode]
            label = f"{dataset} ({mode})"
            print(f"{label:<28}{r['holders']:>8}{proto * 1e3:>10.2f}{plain * 1e3:>10.2f}{proto / plain:>8.2f}")
    print(f"default difficulty: {TrainConfig().difficulty} bits (target: ratio <= 3 on synthetic)")
    peak = peak_memory_breast_cancer()
    print(f"peak memory of a 300-round breast-cancer run: {peak:.0f} MiB (target < 1024 MiB)")


if __name__ == "__main__":
    main()
