"""Measure what a Sybil flood does under open membership, rule by rule.

One Byzantine holder of K = 4 sends, every round, ``--identities`` validly
signed messages from fresh keys, each N(0, sigma^2 I) with sigma large (the
flood of issue 12: 24 messages of norm about 1e6). Prints the final test error
of each aggregation rule with and without the flood (in-process network, same
seed). With enrolled members (``[network] members``) such messages are refused
by every node; see tests/network/test_membership.py.

Usage: python scripts/sybil_flood.py [--rounds 60] [--identities 24] [--sigma 2e5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from learningchain.config import TrainConfig  # noqa: E402
from learningchain.experiments.train import run_training  # noqa: E402

RULES = ("l-nearest", "mean", "median", "trimmed-mean", "krum", "multi-krum", "bulyan", "centered-clipping")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--identities", type=int, default=24)
    ap.add_argument("--sigma", type=float, default=2e5)
    ap.add_argument("--rules", default=",".join(RULES))
    args = ap.parse_args()
    print(f"synthetic, K=4 holders, 1 Byzantine sending {args.identities} fresh-key messages of "
          f"N(0, {args.sigma:g}^2 I) a round, {args.rounds} rounds, no DP")
    print(f"{'rule':20} {'no flood':>9} {'flood':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for rule in args.rules.split(","):
            errs = []
            for flood in (False, True):
                extra = dict(byzantine=1, attack="sybil",
                             attack_options={"identities": args.identities, "inner": "gaussian",
                                             "inner_options": {"sigma": args.sigma}}) if flood else {}
                cfg = TrainConfig(dataset="synthetic", holders=4, rounds=args.rounds, aggregator=rule, no_dp=True,
                                  difficulty=0, progress=False, keep_chain=False, seed=0,
                                  out=str(Path(tmp) / f"{rule}-{flood}"), **extra)
                errs.append(run_training(cfg)["test_error"])
            print(f"{rule:20} {errs[0]:9.4f} {errs[1]:9.4f}", flush=True)


if __name__ == "__main__":
    main()
