"""``learningchain train --backend ethereum``: the same experiment, on an Ethereum chain.

:class:`EthereumBackend` is the contract as a backend of the run loop
(``experiments/loop.py``, the same loop, evaluator and report as the native
chain; ``experiments.train.run_training_ethereum`` is the entry point). The
data, model, protocol parameters, holders and Byzantine attacks come from the
same builder as the native run (:func:`learningchain.parties.build_parties`);
the chain is an in-process EVM by default or the node at ``--rpc-url``. The run:

1. the faucet (the chain's funded account, or ``$LEARNINGCHAIN_FAUCET_KEY``)
   deploys the contract with the protocol parameters and w_0, and opens round 0;
2. each holder's long-lived wallet deposits its share of the computing nodes'
   rewards into the contract (issue "incentives": holders share the cost);
3. every round each holder reads the model from the contract, sends its message
   from a fresh pseudo-identity account, and a computing node drawn at random
   has the contract aggregate the round, then claims its reward;
4. the faucet ends the run and every holder wallet withdraws what the rewards
   left of its deposit.

The run directory looks like the native one (``summary.json``, ``metrics.csv``,
``curve.png``, ``model.npy``, ``model.json``) plus ``contract.abi.json``; the
model written is the one stored in the contract.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import TrainConfig
from ..errors import ConfigError
from ..parties import Parties, RoundOutcome
from .chain import Chain
from .contract import ContractParams
from .network import Deployment, EthereumNetwork, EthHead, chain_fields, new_account
from .optimistic import OptParams
from .optimistic_net import CHALLENGE_BLOCKS, OptimisticBackend

__all__ = ["EthereumBackend", "make_backend", "DEFAULT_REWARD_WEI", "check_ethereum", "contract_params", "open_chain",
           "seeded_keys", "secure_config"]

log = logging.getLogger(__name__)

#: Paid from the holders' deposits to the account that completes each aggregation.
DEFAULT_REWARD_WEI = 10**15
#: blocks a round stays open for messages when fewer than K holders have sent
WINDOW_BLOCKS = 16
#: Holders deposit this multiple of the rewards a full run pays, so a refund is left.
DEPOSIT_FACTOR = 2


def open_chain(cfg: TrainConfig) -> Chain:
    caps = dict(max_fee_gwei=cfg.max_fee_gwei, priority_fee_gwei=cfg.priority_fee_gwei)
    if cfg.rpc_url:
        return Chain.connect(cfg.rpc_url, chain_id=cfg.chain_id, **caps)
    if cfg.chain_id is not None:
        raise ConfigError("chain_id pins the chain of --rpc-url: the in-process EVM has its own")
    return Chain.embedded(**caps)


def check_ethereum(cfg: TrainConfig, reward_wei: int) -> None:
    """Refuse what the Ethereum backend cannot run, before anything is written."""
    if cfg.byzantine_miners:
        raise ConfigError("the Ethereum backend has no Byzantine computing nodes to simulate: every Ethereum "
                          "node re-executes the contract, which refuses a wrong aggregation")
    if reward_wei < 0:
        raise ConfigError(f"reward_wei must be >= 0, got {reward_wei}")


def seeded_keys(cfg: TrainConfig, chain: Chain) -> bool:
    """Whether the run's keys and holders' randomness come from --seed: on the in-process
    EVM unless secure_rng is asked for; on any other chain never (the OS CSPRNG)."""
    return chain.kind == "embedded" and cfg.secure_rng is not True


def secure_config(cfg: TrainConfig, chain: Chain) -> TrainConfig:
    """``cfg`` with secure_rng on for a chain others can reach: holders' noise, batches and
    keys from the OS CSPRNG (a seeded generator there is refused)."""
    if chain.kind == "embedded":
        return cfg
    if cfg.secure_rng is False:
        raise ConfigError("secure_rng = false is for the in-process EVM only: on a chain others can reach, "
                          "keys and noise drawn from the public seed could be recomputed by anyone")
    return dataclasses.replace(cfg, secure_rng=True)


def contract_params(cfg: TrainConfig, parties: Parties, reward_wei: int) -> ContractParams:
    """The contract's genesis: the protocol parameters, sized for the run's messages."""
    extra = sum(max(0, int(getattr(a, "max_messages", 1)) - 1) for a in parties.attacks.values())
    # a round closes at once when all K holders have sent, else WINDOW_BLOCKS after it opened
    return ContractParams.from_params(parties.params, messages=cfg.holders + extra, rounds=cfg.rounds,
                                      reward=reward_wei, quorum=max(cfg.holders, parties.params.min_messages),
                                      window=WINDOW_BLOCKS, bond=reward_wei)


def make_backend(cfg: TrainConfig, parties: Parties, cparams: ContractParams, chain: Chain, *, reward_wei: int):
    """The run's backend for the deployment mode (``--mode``): full (this module's
    EthereumBackend) or optimistic (``optimistic_net.OptimisticBackend``, bonds instead of
    the reward)."""
    if cfg.eth_mode != "optimistic":
        return EthereumBackend(cfg, parties, cparams, chain, reward_wei=reward_wei)
    oparams = OptParams.from_params(parties.params, messages=cparams.max_messages, rounds=cfg.rounds,
                                    quorum=cparams.quorum or cparams.min_messages, window=WINDOW_BLOCKS,
                                    challenge_blocks=CHALLENGE_BLOCKS, bond=max(reward_wei, 1))
    return OptimisticBackend(cfg, parties, oparams, chain, seeded=seeded_keys(cfg, chain))


def _close_quietly(dep: Deployment, owner, wallets: list) -> None:
    try:
        dep.finish(owner)
    except Exception as exc:
        log.warning("could not finish the run at %s: %s", dep.address, exc)
        return
    for w in wallets:
        try:
            dep.withdraw(w)
        except Exception as exc:
            log.warning("could not withdraw the deposit of %s: %s", w.address, exc)


class EthereumBackend:
    """The run's chain: a deployed contract, the holders' wallets and the computing nodes' accounts."""

    unit = "round"
    height_key = "round"

    def __init__(self, cfg: TrainConfig, parties: Parties, cparams: ContractParams, chain: Chain, *,
                 reward_wei: int):
        self.cfg = cfg
        self.parties = parties
        self.cparams = cparams
        self.chain = chain
        self.reward_wei = reward_wei
        self.label = f"{cfg.dataset} K={cfg.holders} (ethereum)"
        self.faucet = chain.faucet()
        self.fees_before = chain.fees_paid
        self.start_balance = chain.balance(self.faucet.address)
        self.dep = Deployment.deploy(chain, self.faucet, cparams, parties.genesis.model)
        self.seeded = seeded_keys(cfg, chain)
        # Keys come from the OS CSPRNG: the seed and the contract's address are public. Only
        # the in-process EVM, which nobody else can reach, draws them from the seed (a
        # reproducible run; fresh when the same seed runs again on the same chain).
        salt = int(self.dep.address, 16) % 2**63
        rng = np.random.default_rng([cfg.seed, 5, salt]) if self.seeded else None
        self.wallets = [new_account(rng, f"wallet-{k}") for k in range(cfg.holders)]
        self.nodes = [new_account(rng, f"node-{j}") for j in range(cfg.miners)]
        used = [a.address for a in self.wallets + self.nodes if chain.balance(a.address) != 0]
        if used:
            raise ConfigError(f"a fresh account already holds ether on this chain ({used[0]})")
        self.deposit = math.ceil(DEPOSIT_FACTOR * reward_wei * cfg.rounds / cfg.holders) if reward_wei else 0
        if self.deposit:
            gas_money = 200_000 * chain.fee_fields()["maxFeePerGas"] * 4
            for w in self.wallets:
                chain.transfer(self.faucet, w.address, self.deposit + gas_money, what="faucet")
                self.dep.deposit(w, self.deposit)
        self.net = EthereumNetwork(self.dep, parties.holders, self.nodes, self.faucet,
                                   rng=np.random.default_rng([cfg.seed, 3]),
                                   key_rng=np.random.default_rng([cfg.seed, 6, salt]) if self.seeded else None,
                                   attacks=parties.attacks)
        self.gas_rounds: list = []  # (submit gas, submissions, aggregate gas, claim gas) per round
        self.selected_byzantine_total = 0
        self.refunds: list = []

    @property
    def head(self) -> EthHead:
        return self.net.head

    def step(self) -> RoundOutcome:
        res = self.net.step()
        self.selected_byzantine_total += res.byzantine_selected
        self.gas_rounds.append((sum(res.gas_submit), len(res.gas_submit), res.gas_aggregate, res.gas_claim))
        extra = {"messages": res.messages, "gas": sum(res.gas_submit) + res.gas_aggregate + res.gas_claim,
                 "gas_aggregate": res.gas_aggregate, "block": res.head.block_number}
        return RoundOutcome(height=res.head.height, model=res.head.model, head_changed=res.head_changed,
                            selected_byzantine=res.byzantine_selected, winner=res.winner, byzantine_winner=False,
                            rejected=not res.head_changed, seconds=res.seconds, extra=extra)

    def abort(self) -> None:
        # a failed or interrupted run still closes the contract and returns the holders' deposits
        _close_quietly(self.dep, self.faucet, self.wallets if self.deposit else [])

    def finish(self, stopped_by: str, say: Callable[[str], None]) -> None:
        """The owner closes the run, the holders take back what the rewards left."""
        if stopped_by == "interrupted":
            return  # closed by abort()
        say("closing the contract and refunding the holders' deposits ...")
        self.dep.finish(self.faucet)
        for w in self.wallets if self.deposit else []:
            before = self.chain.balance(w.address)
            r = self.dep.withdraw(w)
            self.refunds.append(self.chain.balance(w.address) - before
                                + int(r["gasUsed"]) * int(r["effectiveGasPrice"]))

    def _gas(self) -> dict:
        rounds = self.gas_rounds
        n = max(1, len(rounds))
        return {
            "submit_mean": round(sum(g[0] for g in rounds) / max(1, sum(g[1] for g in rounds))),
            "aggregate_mean": round(sum(g[2] for g in rounds) / n),
            "claim_mean": round(sum(g[3] for g in rounds) / n),
            "round_mean": round(sum(g[0] + g[2] + g[3] for g in rounds) / n),
            "aggregation_chunks": self.cparams.chunks,
            "setup": self.dep.setup_gas,
            "block_gas_limit": self.chain.gas_limit(),
        }

    def summary(self, common: dict, baseline: dict, say: Callable[[str], None]) -> dict:
        chain, net, dep = self.chain, self.net, self.dep
        accounts = ([self.faucet.address] + [a.address for a in self.wallets + self.nodes] + net.pseudo_identities
                    + [dep.address])
        end_balance = sum(chain.balance(a) for a in accounts)
        fees = chain.fees_paid - self.fees_before
        gas = self._gas()
        return {
            "backend": "ethereum",
            "mode": "full",
            "l": self.parties.params.l,
            "rejected_blocks": net.rejected_aggregations,
            "rejected_by_reason": {},
            "rejected_messages": dict(net.messages_rejected),
            "selected_byzantine_total": self.selected_byzantine_total,
            "contract_address": dep.address,
            **chain_fields(chain, self.seeded),
            "gas_per_round": gas["round_mean"],
            "gas": gas,
            "incentives": {
                "reward_per_aggregation_wei": self.reward_wei,
                "deposit_per_holder_wei": self.deposit,
                "deposits_total_wei": self.deposit * (self.cfg.holders if self.deposit else 0),
                "rewards_paid_wei": int(sum(net.rewards_paid.values())),
                "aggregations_by_node": {self.nodes[i].address: c for i, c in sorted(net.aggregations.items())},
                "refunds_total_wei": int(sum(self.refunds)),
                "balance_before_wei": self.start_balance,
                "balance_after_wei": end_balance,
                "fees_wei": fees,
                "conserved": self.start_balance - end_balance == fees,
            },
        }

    def write(self, out: Path, summary: dict) -> None:
        dep, cparams = self.dep, self.cparams
        with open(out / "contract.abi.json", "w") as fh:
            json.dump(dep.abi, fh, indent=1)
            fh.write("\n")
        with open(out / "contract.json", "w") as fh:
            json.dump({"address": dep.address, "chain_id": summary["chain_id"], "deploy_block": dep.deploy_block,
                       "abi": "contract.abi.json", "model_bits": 40, "chunks": cparams.chunks,
                       "chunk_words": cparams.chunk_words}, fh, indent=1)
            fh.write("\n")

    def close(self) -> None:
        pass  # the contract is closed by finish() or abort(); the chain belongs to the caller
