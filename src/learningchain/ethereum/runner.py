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

A full-mode run on a JSON-RPC chain can be resumed (``learningchain train
--resume DIR``, :func:`learningchain.experiments.ethereum_run.resume_training_ethereum`): its keys are written,
encrypted, to ``DIR/keys`` before the contract is deployed (:mod:`.keystore`),
``contract.json`` and ``checkpoint.json`` as soon as it is, the checkpoint again
after every round, and each round's messages to ``round-messages.json`` before
the first is sent. An interruption (Ctrl-C, an error, a killed process) leaves
the contract open. The resumed run checks the contract on the chain against
those files and goes on from the contract's state.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..config import TrainConfig
from ..crypto import keccak256
from ..errors import ConfigError
from ..parties import Parties, RoundOutcome
from .chain import Chain
from .contract import ContractParams, load_artifact
from .keystore import KEYS_DIR, RunKeys, password
from .network import JOURNAL, Deployment, EthereumNetwork, EthHead, chain_fields, new_account
from .optimistic import OptParams
from .optimistic_net import CHALLENGE_BLOCKS, OptimisticBackend

__all__ = ["EthereumBackend", "make_backend", "DEFAULT_REWARD_WEI", "check_ethereum", "contract_params", "open_chain",
           "seeded_keys", "secure_config", "resumable", "check_resumable", "verify_deployment",
           "refuse_unresumable", "recovered_rows", "read_json"]

log = logging.getLogger(__name__)

#: Paid from the holders' deposits to each round's aggregator (the contract's aggregator_of).
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


def resumable(cfg: TrainConfig, chain: Chain) -> bool:
    """Whether the run keeps what a resume needs: a full-mode run on a JSON-RPC chain (the
    in-process EVM ends with its process; the optimistic mode does not resume)."""
    return chain.kind == "rpc" and cfg.eth_mode == "full"


def check_resumable(cfg: TrainConfig, chain: Chain) -> None:
    """A resumable run writes its keys encrypted: refuse it without a password, before
    anything is written or deployed."""
    if resumable(cfg, chain):
        password()


def contract_params(cfg: TrainConfig, parties: Parties, reward_wei: int) -> ContractParams:
    """The contract's genesis: the protocol parameters, sized for the run's messages."""
    extra = sum(max(0, int(getattr(a, "max_messages", 1)) - 1) for a in parties.attacks.values())
    # a round closes at once when all K holders have sent, else WINDOW_BLOCKS after it opened
    return ContractParams.from_params(parties.params, messages=cfg.holders + extra, rounds=cfg.rounds,
                                      reward=reward_wei, quorum=max(cfg.holders, parties.params.min_messages),
                                      window=WINDOW_BLOCKS, bond=reward_wei)


def make_backend(cfg: TrainConfig, parties: Parties, cparams: ContractParams, chain: Chain, *, reward_wei: int,
                 out: Optional[Path] = None, checkpoint: Optional[Callable] = None):
    """The run's backend for the deployment mode (``--mode``): full (this module's
    EthereumBackend) or optimistic (``optimistic_net.OptimisticBackend``, bonds instead of
    the reward). ``out`` and ``checkpoint``: a resumable run's directory and checkpointer."""
    if cfg.eth_mode != "optimistic":
        return EthereumBackend(cfg, parties, cparams, chain, reward_wei=reward_wei, out=out, checkpoint=checkpoint)
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
    """The run's chain: a deployed contract, the holders' wallets and the computing nodes' accounts.

    ``out`` (a run on a JSON-RPC chain): the run directory, where the keys, ``contract.json``
    and the first checkpoint (``checkpoint(self, [], 0)``) are written as the run starts, so
    that an interrupted run can be resumed (:meth:`resume`)."""

    unit = "round"
    height_key = "round"

    def __init__(self, cfg: TrainConfig, parties: Parties, cparams: ContractParams, chain: Chain, *,
                 reward_wei: int, out: Optional[Path] = None, checkpoint: Optional[Callable] = None):
        self._common(cfg, parties, cparams, chain, reward_wei)
        self.resumable = out is not None and resumable(cfg, chain)
        self.resumed = False
        self.start_balance = chain.balance(self.faucet.address)
        if self.resumable:
            # the keys are on disk, encrypted, before they can hold anything
            self.keys = RunKeys.fresh(cfg.holders, cfg.miners)
            self.keys.write(Path(out) / KEYS_DIR, password())
            self.dep = Deployment.deploy(chain, self.faucet, cparams, parties.genesis.model)
            self.wallets, self.nodes = self.keys.wallets, self.keys.nodes
            self.out = Path(out)
            self._write_contract(self.out, chain.chain_id)
            if checkpoint is not None:
                checkpoint(self, [], 0.0)
        else:
            self.keys = None
            self.dep = Deployment.deploy(chain, self.faucet, cparams, parties.genesis.model)
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
        self._deposit_all()
        salt = int(self.dep.address, 16) % 2**63
        self.net = EthereumNetwork(self.dep, parties.holders, self.nodes, self.faucet,
                                   rng=np.random.default_rng([cfg.seed, 3]),
                                   key_rng=np.random.default_rng([cfg.seed, 6, salt]) if self.seeded else None,
                                   attacks=parties.attacks, **self._resume_hooks())

    def _common(self, cfg, parties, cparams, chain, reward_wei) -> None:
        self.cfg = cfg
        self.parties = parties
        self.cparams = cparams
        self.chain = chain
        self.reward_wei = reward_wei
        self.label = f"{cfg.dataset} K={cfg.holders} (ethereum)"
        self.faucet = chain.faucet()
        self.fees_before = chain.fees_paid
        self.seeded = seeded_keys(cfg, chain)
        self.deposit = math.ceil(DEPOSIT_FACTOR * reward_wei * cfg.rounds / cfg.holders) if reward_wei else 0
        self.gas_rounds: list = []  # (submit gas, submissions, aggregate gas, claim gas) per round
        self.selected_byzantine_total = 0
        self.refunds: list = []

    def _resume_hooks(self) -> dict:
        if not self.resumable:
            return {}
        return {"pseudonyms": self.keys.pseudonym, "journal": self.out / JOURNAL}

    def _deposit_all(self) -> None:
        """Each holder wallet deposits its share; a wallet that already has (a resumed run) is skipped."""
        if not self.deposit:
            return
        gas_money = 200_000 * self.chain.fee_fields()["maxFeePerGas"] * 4
        for w in self.wallets:
            if self.resumed and int(self.dep.contract.functions.deposits(w.address).call()) >= self.deposit:
                continue
            have = self.chain.balance(w.address) if self.resumed else 0
            if have < self.deposit + gas_money:
                self.chain.transfer(self.faucet, w.address, self.deposit + gas_money - have, what="faucet")
            self.dep.deposit(w, self.deposit)

    def _write_contract(self, out: Path, chain_id: int) -> None:
        dep, cparams = self.dep, self.cparams
        with open(out / "contract.abi.json", "w") as fh:
            json.dump(dep.abi, fh, indent=1)
            fh.write("\n")
        doc = {"address": dep.address, "chain_id": chain_id, "mode": "full", "deploy_block": dep.deploy_block,
               "abi": "contract.abi.json", "model_bits": 40, "chunks": cparams.chunks,
               "chunk_words": cparams.chunk_words,
               "chain": "embedded" if self.chain.kind == "embedded" else "rpc",
               "resumable": self.resumable, "reward_wei": self.reward_wei,
               "constructor_args": cparams.constructor_args(),
               "code_keccak256": "0x" + keccak256(bytes(self.chain.w3.eth.get_code(dep.address))).hex()}
        if self.resumable:
            doc["keys"] = KEYS_DIR
            doc.update(self.keys.addresses())
        with open(out / "contract.json", "w") as fh:
            json.dump(doc, fh, indent=1)
            fh.write("\n")

    @classmethod
    def resume(cls, cfg: TrainConfig, parties: Parties, cparams: ContractParams, chain: Chain, *, reward_wei: int,
               out: Path, dep: Deployment, keys: RunKeys) -> "EthereumBackend":
        """The backend of an interrupted run, on its deployed contract (checked by the caller,
        :func:`learningchain.experiments.ethereum_run.resume_training_ethereum`): the deposits not made yet are made, the rewards of
        rounds our computing nodes aggregated and did not claim are claimed, and the next
        step finishes the round the contract is in (see ``EthereumNetwork.submit_round``)."""
        self = cls.__new__(cls)
        self._common(cfg, parties, cparams, chain, reward_wei)
        self.resumable, self.resumed = True, True
        self.keys, self.dep, self.out = keys, dep, Path(out)
        self.wallets, self.nodes = keys.wallets, keys.nodes
        journal = self._journal_pseudonyms()
        # what the accounts this process moves ether between hold, to check at the end that
        # only fees left them (summary's "conserved", for this process's part of the run)
        self._tracked = [self.faucet.address] + [a.address for a in self.wallets + self.nodes] + journal + [dep.address]
        self.start_balance = sum(chain.balance(a) for a in self._tracked)
        self._deposit_all()
        self.net = EthereumNetwork(dep, parties.holders, self.nodes, self.faucet,
                                   rng=np.random.default_rng([cfg.seed, 3, dep.current_round()]),
                                   attacks=parties.attacks, **self._resume_hooks())
        self._claim_unclaimed()
        return self

    def _journal_pseudonyms(self) -> list:
        try:
            doc = json.loads((self.out / JOURNAL).read_text())
            return [self.keys.pseudonym(int(doc["round"]), i).address for i in range(len(doc["messages"]))]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def _claim_unclaimed(self) -> None:
        """Rewards of rounds our computing nodes aggregated before the interruption."""
        if not self.reward_wei:
            return
        f = self.dep.contract.functions
        ours = {a.address.lower(): i for i, a in enumerate(self.nodes)}
        for rnd in range(self.dep.current_round()):
            who = ours.get(str(f.aggregator_of(rnd).call()).lower())
            if who is None or f.reward_paid(rnd).call():
                continue
            node = self.nodes[who]
            before = self.chain.balance(node.address)
            r = self.dep.claim_reward(node, rnd)
            self.net.rewards_paid[who] += self.chain.balance(node.address) - before + \
                int(r["gasUsed"]) * int(r["effectiveGasPrice"])

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
        if self.resumable:
            # the contract stays open, the keys are in the run directory: --resume goes on
            log.warning("the contract at %s stays open: `learningchain train --resume` continues the run",
                        self.dep.address)
            return
        # a failed or interrupted run still closes the contract and returns the holders' deposits
        _close_quietly(self.dep, self.faucet, self.wallets if self.deposit else [])

    def checkpoint_state(self) -> tuple[dict, list]:
        """What a resume checks against the contract: the round and the model it had."""
        head = self.net.head if hasattr(self, "net") else self.dep.head()  # before the first round: w_0
        return {"backend": "ethereum", "address": self.dep.address, "contract_round": head.height,
                "model": [str(v) for v in head.fixed], "block": head.block_number}, []

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
        if self.resumed:
            accounts = list(dict.fromkeys(self._tracked + net.pseudo_identities))
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
            **chain_fields(chain, self.seeded, self.resumable),
            "resumable": self.resumable,
            "resumed": self.resumed,
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
        self._write_contract(out, summary["chain_id"])

    def close(self) -> None:
        pass  # the contract is closed by finish() or abort(); the chain belongs to the caller


def read_json(path: Path, what: str) -> dict:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path.parent}: no {path.name}, {what}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: not a JSON object")
    return doc


def refuse_unresumable(path: Path) -> None:
    """A clear refusal for an Ethereum run directory that cannot be resumed (the in-process
    EVM, the optimistic mode, a run written before runs kept their keys)."""
    cpath = Path(path) / "contract.json"
    if not cpath.exists():
        return
    doc = read_json(cpath, "")
    if doc.get("mode") == "optimistic":
        raise ConfigError(f"{path}: a run of the optimistic mode does not resume (its bonds and disputes are not "
                          "kept); only full-mode runs on a JSON-RPC chain do")
    if doc.get("chain") == "embedded":
        raise ConfigError(f"{path}: a run on the in-process EVM does not resume: its chain ended with its process "
                          "(run it again: with the same seed it plays the same rounds)")
    if not doc.get("resumable"):
        raise ConfigError(f"{path}: this run did not keep its keys (written by an older version, or not a full-mode "
                          "run on a JSON-RPC chain): it cannot be resumed")


def verify_deployment(dep: Deployment, cdoc: dict, cparams: ContractParams) -> None:
    """The contract at ``dep.address`` is the one ``contract.json`` names: the artefact's runtime
    code (followed by the immutables, which hold the parameters), the very code recorded at
    deployment, and the run's parameters read back from it."""
    code = bytes(dep.chain.w3.eth.get_code(dep.address))
    if not code:
        raise ConfigError(f"no contract at {dep.address} on chain {dep.chain.chain_id}")
    runtime = bytes.fromhex(load_artifact()["bytecode_runtime"].removeprefix("0x"))
    if code[:len(runtime)] != runtime:
        raise ConfigError(f"the code at {dep.address} is not this version's LearningChain contract (runtime "
                          f"keccak256 0x{keccak256(code[:len(runtime)]).hex()}, the artefact's "
                          f"0x{keccak256(runtime).hex()})")
    have = "0x" + keccak256(code).hex()
    if have != cdoc.get("code_keccak256"):
        raise ConfigError(f"the code at {dep.address} (keccak256 {have}) is not the code deployed for this run "
                          f"({cdoc.get('code_keccak256')})")
    f = dep.contract.functions
    names = ["dim", "quant_bits", None, "l", "batch_size", "lr", "lam", "min_messages", "max_messages",
             "chunk_words", "rounds", "reward", "quorum", "window", "bond"]
    want = cparams.constructor_args()
    if [int(v) for v in cdoc.get("constructor_args", [])] != want:
        raise ConfigError(f"contract.json's parameters {cdoc.get('constructor_args')} are not those the run's "
                          f"config gives {want}")
    for name, value in zip(names, want):
        if name is not None and int(getattr(f, name)().call()) != int(value):
            raise ConfigError(f"the contract at {dep.address} has {name} = {getattr(f, name)().call()}, the run "
                              f"has {value}")


ROW_KEYS = ("round", "height", "test_error", "train_loss", "selected_byzantine", "winner", "byzantine_winner",
            "rejected", "messages", "gas", "gas_aggregate", "block", "seconds")


def recovered_rows(rows: list, first: int, last: int) -> list:
    """Rows for the rounds the contract aggregated after the last checkpoint: the round and
    height are known, the rest was not measured (left empty; counts and seconds 0)."""
    keys = list(rows[-1].keys()) if rows else list(ROW_KEYS)
    out = []
    for height in range(first + 1, last + 1):
        row = dict.fromkeys(keys)
        row.update(round=len(rows) + len(out) + 1, height=height, rejected=0, selected_byzantine=0,
                   byzantine_winner=0, seconds=0.0)
        out.append(row)
    return out
