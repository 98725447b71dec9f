"""How often a wrong model survives the holders' final check (paper Section V-B).

The paper argues that when honest nodes hold a share p of the hash power, "the
probability that there is at least one honest computing node involved in the
last s blocks is 1-(1-p)^s", so a holder replaying the last s blocks obtains the
true model with that probability; a wrong model survives with (1-p)^s.

This experiment measures it on the real protocol. Byzantine miners with share
q = 1-p run ``skip-validation`` (they write a wrong-model block, then extend it
with correctly computed children, accepting everything unchecked); honest miners
validate and build on the heaviest valid chain. A holder that does not validate
reads the heaviest chain by proof of work (the simulation's light client) and, at
the end, replays its last s blocks. A wrong model *survives* when that head is
not one honest nodes accept and the replay of its last s blocks passes.
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import replace
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ..config import TrainConfig
from ..network.simulation import InProcessNetwork
from ..node.verify import replay_last
from ..parties import build_miners, build_parties
from .train import run_training

__all__ = ["run_trial", "sweep", "plot_sweep"]


def run_trial(cfg: TrainConfig, s_values) -> dict:
    cfg = cfg.resolved()
    parties = build_parties(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        miners, _ = build_miners(cfg, parties.genesis, Path(tmp) / "chain.sqlite")
        net = InProcessNetwork(parties.genesis, parties.holders, miners,
                               rng=np.random.default_rng([cfg.seed, 3]), attacks=parties.attacks)
        for _ in range(cfg.rounds):
            net.step()
        ref, light = net.reference, net.observer
        head = light.head_hash
        wrong = head not in ref.headers
        byz = {m.node.miner for m in miners if m.byzantine}
        result = {"wrong_head": wrong, "honest_height": ref.height, "heaviest_height": light.height}
        for s in s_values:
            passes = replay_last(light, head, s)[0]
            result[f"survives_s{s}"] = wrong and passes
            chain, h = [], head
            while len(chain) < s and light.headers[h].height > 0:
                chain.append(light.headers[h])
                h = light.headers[h].parent
            result[f"honest_in_last_s{s}"] = any(hd.miner not in byz for hd in chain)
        miners[0].node.store.close()
    return result


def sweep(*, powers, s_values, trials: int, rounds: int, holders: int = 10, miners: int = 10,
          byzantine_miners: int = 3, seed: int = 0, attack: str = "skip-validation", progress=None) -> list:
    base = TrainConfig(dataset="synthetic", holders=holders, miners=miners, rounds=rounds, epsilon=0.3,
                       difficulty=4, byzantine_miners=byzantine_miners, miner_attack=attack, progress=False,
                       keep_bodies=None)
    rows = []
    for q in powers:
        results = []
        for trial in range(trials):
            cfg = replace(base, byzantine_power=float(q), seed=seed * 100_000 + trial)
            results.append(run_trial(cfg, s_values))
            if progress:
                progress()
        for s in s_values:
            rows.append({
                "byzantine_power": q,
                "s": s,
                "trials": trials,
                "wrong_head_rate": float(np.mean([r["wrong_head"] for r in results])),
                "survival_rate": float(np.mean([r[f"survives_s{s}"] for r in results])),
                "paper_prediction": float(q ** s),
                "honest_in_last_s_rate": float(np.mean([r[f"honest_in_last_s{s}"] for r in results])),
                "paper_honest_in_last_s": float(1 - q ** s),
                "mean_honest_height": float(np.mean([r["honest_height"] for r in results])),
                "mean_heaviest_height": float(np.mean([r["heaviest_height"] for r in results])),
            })
    return rows


def write_csv(rows, path: Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def plot_sweep(rows, path: Path, *, rounds: int) -> None:
    s_values = sorted({r["s"] for r in rows})
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for s, color in zip(s_values, matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]):
        pts = sorted((r for r in rows if r["s"] == s), key=lambda r: r["byzantine_power"])
        q = [r["byzantine_power"] for r in pts]
        axes[0].plot(q, [r["survival_rate"] for r in pts], "o-", color=color, label=f"measured, s={s}")
        axes[0].plot(q, [r["paper_prediction"] for r in pts], "--", color=color, alpha=0.6,
                     label=f"paper (1-p)^s, s={s}")
        axes[1].plot(q, [r["honest_in_last_s_rate"] for r in pts], "o-", color=color, label=f"measured, s={s}")
        axes[1].plot(q, [r["paper_honest_in_last_s"] for r in pts], "--", color=color, alpha=0.6)
    axes[0].set_title(f"wrong model survives the final check ({rounds} rounds)", fontsize=10)
    axes[0].set_xlabel("Byzantine share of hash power q = 1 - p")
    axes[0].set_ylabel("rate over trials")
    axes[1].set_title("an honest block among the last s of the heaviest chain", fontsize=10)
    axes[1].set_xlabel("Byzantine share of hash power q = 1 - p")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_ylim(-0.03, 1.03)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def attack_table(*, powers=(0.3, 0.6), rounds: int = 100, seed: int = 0, out: Path, progress=None) -> list:
    """Every miner attack at each power, with the paper's mempool check on and off
    (and the omission policy for drop-honest): what reached the honest chain."""
    base = dict(dataset="synthetic", rounds=rounds, epsilon=0.3, byzantine_miners=6, seed=seed, progress=False,
                force=True)
    variants = [("none", {}, 0.0)]
    for attack in ("wrong-model", "drop-honest", "forged-messages", "skip-validation", "withhold"):
        for q in powers:
            variants.append((attack, {"check_unseen": True}, q))
            variants.append((attack, {"check_unseen": False}, q))
            if attack == "drop-honest":
                variants.append((attack, {"check_unseen": True, "min_inclusion": 0.5}, q))
    rows = []
    for i, (attack, policy, q) in enumerate(variants):
        cfg = dict(base, out=str(out / f"run-{i}"), **policy)
        if attack != "none":
            cfg.update(miner_attack=attack, byzantine_power=q)
        else:
            cfg.update(byzantine_miners=0)
        s = run_training(TrainConfig(**cfg))
        rows.append({
            "attack": attack,
            "byzantine_power": q,
            "mempool_check": policy.get("check_unseen", True),
            "min_inclusion": policy.get("min_inclusion", 0.0),
            "test_error": round(s["test_error"], 4),
            "honest_height": s["height"],
            "rejected_blocks": s["rejected_blocks"],
            "rejected_by_reason": ";".join(f"{k}={v}" for k, v in s["rejected_by_reason"].items()),
            "byzantine_blocks_on_chain": s.get("byzantine_blocks_on_honest_chain", 0),
            "heaviest_accepted": s.get("heaviest_chain_accepted_by_honest", True),
            "final_check_heaviest": s.get("final_check", {}).get("heaviest_head_passes", ""),
        })
        if progress:
            progress()
    return rows
