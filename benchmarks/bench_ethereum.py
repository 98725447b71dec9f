"""Time of an Ethereum round on the in-process EVM against a native-chain round of the same run.

The same experiment (data set, holders, privacy, l-nearest rule, seed) is run
three times in this process: on the native chain (proof of work, validation by
recomputation, the SQLite archive), and with ``--backend ethereum`` on the
in-process EVM, once on pyrevm (revm) and once on py-evm (eth-tester). A round is
timed from one round's end to the next (the ``on_round`` callback of the shared
run loop), so the one-off costs (deployment, deposits, withdrawals, evaluation
set-up) are left out; the first ``--warmup`` rounds are not timed. Printed: the
mean seconds per round of each and the ratio of each EVM to the native round.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_ethereum.py [--dataset breast-cancer] [--rounds 30]

Target (issue 17): pyrevm <= 10x the native round.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from learningchain.config import TrainConfig  # noqa: E402
from learningchain.experiments.train import run_training, run_training_ethereum  # noqa: E402


def _timed(run, warmup: int) -> tuple[float, dict]:
    stamps = []
    summary = run(lambda row: stamps.append(time.perf_counter()))
    steps = np.diff(stamps[warmup:])
    return float(steps.mean()), summary


def measure(dataset: str, rounds: int, warmup: int, holders: int, no_dp: bool) -> dict:
    common = dict(dataset=dataset, rounds=rounds + warmup + 1, holders=holders, seed=0, force=True,
                  progress=False)
    if no_dp:
        common["no_dp"] = True
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(out=os.path.join(tmp, "native"), **common)
        out["native"] = _timed(lambda cb: run_training(cfg, progress=False, on_round=cb), warmup)
        from learningchain.ethereum.chain import Chain

        for evm in ("pyrevm", "py-evm"):
            cfg = TrainConfig(out=os.path.join(tmp, evm), backend="ethereum", **common)
            out[evm] = _timed(lambda cb: run_training_ethereum(cfg, progress=False, on_round=cb,
                                                               chain=Chain.embedded(evm=evm)), warmup)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="breast-cancer")
    ap.add_argument("--rounds", type=int, default=30, help="timed rounds")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--holders", type=int, default=10)
    ap.add_argument("--dp", action="store_true", help="with differential privacy (default: --no-dp)")
    args = ap.parse_args(argv)
    res = measure(args.dataset, args.rounds, args.warmup, args.holders, not args.dp)
    native = res["native"][0]
    print(f"{args.dataset}, K = {args.holders}, {args.rounds} timed rounds, "
          f"{'DP' if args.dp else 'no DP'}, seed 0")
    print(f"{'chain':<24}{'s / round':>12}{'x native':>10}{'gas / round':>14}{'test error':>12}")
    for name, (sec, s) in res.items():
        gas = s.get("gas_per_round", "-")
        gas = f"{gas:,}" if isinstance(gas, int) else gas
        print(f"{name:<24}{sec:>12.4f}{sec / native:>10.1f}{gas:>14}{s['test_error']:>12.4f}")
    same = res["pyrevm"][1]["test_error"] == res["py-evm"][1]["test_error"]
    print(f"pyrevm / py-evm: {res['pyrevm'][0] / res['py-evm'][0]:.3f} (same test error: {same})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
