"""Print the privacy spend of the paper's settings under each composition.

One holder sends one l2-Laplace release per round, each eps_t-DP (pure). For
each per-round budget and number of rounds T the table gives the whole run's
epsilon at ``--delta`` by basic composition (the sum), by optimal composition
(the closed form of Kairouz, Oh and Viswanathan: exact, one budget only), by
``tight_epsilon`` (dp-accounting's privacy-loss distribution, or its RDP figure
where lower: what the summary reports as ``epsilon_total_tight``) and by Renyi
DP alone (randomised response, dp-accounting's conversion). A second table does
the same for the LearningChainEx schedules. The output is Markdown for
docs/PRIVACY.md.

Usage: python scripts/privacy_table.py [--delta 1e-5]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from learningchain.privacy.accounting import (optimal_epsilon, rdp_pure_epsilon, round_epsilons,  # noqa: E402
                                              tight_epsilon)

PER_ROUND = (0.1, 0.3, 1.0)
ROUNDS = (100, 200, 300)
SCHEDULES = (("uniform", 1.0), ("uniform", 10.0), ("decay", 1.0), ("decay", 10.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--delta", type=float, default=1e-5)
    args = ap.parse_args()
    delta = args.delta
    print(f"LearningChain (constant schedule), epsilon of the whole run at delta = {delta:g}:\n")
    print("| eps per round | T | basic | optimal (closed form) | tight (reported) | RDP |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for eps in PER_ROUND:
        for rounds in ROUNDS:
            epsilons = [eps] * rounds
            print(f"| {eps:g} | {rounds} | {math.fsum(epsilons):.2f} | {optimal_epsilon(eps, rounds, delta):.2f} "
                  f"| {tight_epsilon(epsilons, delta):.2f} | {rdp_pure_epsilon(epsilons, delta):.2f} |")
    print(f"\nLearningChainEx schedules (budget eps for the run), epsilon at delta = {delta:g}:\n")
    print("| schedule | eps | T | basic | optimal (closed form) | tight (reported) | RDP |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for schedule, eps in SCHEDULES:
        for rounds in ROUNDS:
            epsilons = round_epsilons(schedule, eps, rounds, rounds)
            closed = (f"{optimal_epsilon(epsilons[0], rounds, delta):.3f}" if len(set(epsilons)) == 1
                      else "n/a (unequal)")
            print(f"| {schedule} | {eps:g} | {rounds} | {math.fsum(epsilons):.3f} | {closed} "
                  f"| {tight_epsilon(epsilons, delta):.3f} | {rdp_pure_epsilon(epsilons, delta):.3f} |")


if __name__ == "__main__":
    main()
