"""The optimistic mode's round driver and run backend (``--mode optimistic``).

Each round: every holder sends its message (the native message, packed by
:func:`.optimistic.encode_message`) from a fresh account; a computing node
drawn at random reads them back from the chain, computes the l-nearest
selection and the new model with the Python twin (:mod:`.fixedpoint`) and posts
the new model's Merkle leaves with a bond; every other honest node checks the
posting off chain the same way and disputes the first wrong chunk it finds (a
successful dispute reopens the round: an honest node posts again); once the
challenge window has passed, the round is finalised. The model lives off chain
(every node recomputes it from the messages in calldata); the contract holds its
Merkle root, which every node checks against its own after each round.

A Byzantine computing node (``byzantine_nodes``) posts a model with one
coordinate of one chunk changed: the tests play it against honest challengers.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..errors import ConfigError, InvalidMessage
from ..parties import AnswerOnce, Parties, RoundOutcome, collect_messages
from ..protocol.quantize import check_unit
from . import fixedpoint as fp
from .chain import Account, Chain, EthereumError, Reverted
from .network import EthHead, chain_fields, new_account
from .optimistic import OptDeployment, OptMessage, OptParams, Posting, decode_message, encode_message, model_leaves
from .optimistic import model_root as tree_root

__all__ = ["OptimisticNetwork", "OptRound", "OptimisticBackend", "CHALLENGE_BLOCKS", "honest_aggregation"]

#: Blocks a posting stays open to disputes in a run of ``train`` (development chains mine
#: them at once; on a public chain it would be hours of blocks).
CHALLENGE_BLOCKS = 8
#: Postings one round may see before the run gives up (each wrong one costs its bond).
MAX_POSTINGS = 8


@dataclass
class OptRound:
    round: int
    head: EthHead
    head_changed: bool
    selection: tuple
    messages: int
    byzantine_selected: int
    gas_submit: list
    gas_post: int
    gas_finalize: int
    gas_disputes: int
    disputes_upheld: int
    disputes_rejected: int
    wrong_postings: int
    seconds: float


def honest_aggregation(rule: fp.FixedRule, rnd: int, W: list, messages: list,
                       n: int) -> tuple[tuple, list, tuple]:
    """What every honest node computes for the round's first ``n`` messages: the l-nearest
    selection among the valid ones, the new fixed-point model, and the messages left out as
    invalid (they fail to decode or the unit-norm check), all three ascending."""
    valid, rows, invalid = [], [], []
    for k, m in enumerate(messages[:n]):
        try:
            q = decode_message(m.widths, m.data, rule.dim)
            check_unit(q, rule.quant_bits, rule.norm_tol_bits)
        except (ConfigError, InvalidMessage):
            invalid.append(k)
            continue
        valid.append(k)
        rows.append(q)
    if not valid:
        raise ConfigError(f"round {rnd}: no valid message to aggregate")
    q = np.stack(rows)
    keys = [fp.tie_key(rnd, messages[k].sender) for k in valid]
    picked = tuple(sorted(valid[i] for i in rule.select(q, keys)))
    full = np.zeros((n, rule.dim), dtype=np.int32)
    for i, k in enumerate(valid):
        full[k] = rows[i]
    norms = [m.norm for m in messages[:n]]
    return picked, rule.update(W, full, norms, picked), tuple(invalid)


class OptimisticNetwork:
    """K holders and M computing nodes playing the optimistic protocol through a deployment."""

    def __init__(self, dep: OptDeployment, holders: list, nodes: list, faucet: Account, W0: list, *,
                 rng: np.random.Generator, key_rng=None, attacks: Optional[dict] = None,
                 byzantine_nodes: frozenset = frozenset()):
        self.dep = dep
        self.chain = dep.chain
        self.holders = holders
        self.nodes = nodes
        self.faucet = faucet
        self.rng = rng
        self.key_rng = key_rng
        self.attacks = attacks or {}
        self.byzantine_nodes = frozenset(byzantine_nodes)
        self.byzantine_identities: set = set()
        self.byzantine_senders: set = set()
        self.pseudo_identities: list = []
        self.messages_rejected: Counter = Counter()
        self.W = [int(v) for v in W0]
        self.answered = AnswerOnce()
        self.disputes_upheld = self.disputes_rejected = self.wrong_postings = 0
        self._head = EthHead(0, fp.decode_model(self.W), tuple(self.W), b"\x00" * 32, dep.deploy_block)

    @property
    def head(self) -> EthHead:
        return self._head

    def _ensure_funds(self, account: Account, amount: int) -> None:
        have = self.chain.balance(account.address)
        if have < amount:
            self.chain.transfer(self.faucet, account.address, 2 * amount - have, what="faucet")

    def submit_round(self, base: EthHead) -> list:
        messages = collect_messages(self.holders, self.attacks, base, self.byzantine_identities)
        gas = []
        for msg in messages:
            try:
                norm = fp.encode_norm(msg.norm)
            except InvalidMessage as exc:
                self.messages_rejected[exc.reason] += 1
                continue
            widths, data = encode_message(msg.q)
            account = new_account(self.key_rng, "holder")
            self.pseudo_identities.append(account.address)
            if msg.identity in self.byzantine_identities:
                self.byzantine_senders.add(account.address.lower())
            fees = self.chain.fee_fields()
            tx = {"from": self.faucet.address, "to": self.dep.address, "value": 0,
                  "data": self.dep.contract.encode_abi("submit", args=[base.height, norm, widths, data])}
            limit = self.chain.gas_for(tx, "submit", "opt-submit")
            self.chain.transfer(self.faucet, account.address, limit * fees["maxFeePerGas"], what="faucet")
            try:
                r = self.dep.submit(account, base.height, norm, widths, data, fees=fees)
            except Reverted as exc:
                self.messages_rejected[exc.reason] += 1
                continue
            gas.append(int(r["gasUsed"]))
        return gas

    def _post(self, j: int, rnd: int, messages: list, n: int) -> int:
        """Node ``j`` posts its aggregation (a Byzantine node: one coordinate off); its gas."""
        node = self.nodes[j]
        selection, W_new, invalid = honest_aggregation(self.dep.rule, rnd, self.W, messages, n)
        if j in self.byzantine_nodes:
            W_new = list(W_new)
            i = int(self.rng.integers(len(W_new)))
            W_new[i] += 1 << 20  # a wrong model chunk
            self.wrong_postings += 1
        self._ensure_funds(node, self.dep.oparams.bond + 10**16)
        return int(self.dep.post(node, rnd, n, selection, W_new, invalid)["gasUsed"])

    def check_and_dispute(self, rnd: int, messages: list, posting: Posting) -> tuple[int, int, int]:
        """Every honest node checks the posting off chain; the first that finds a wrong chunk
        disputes it. (upheld, rejected, gas)."""
        selection, W_new, invalid = honest_aggregation(self.dep.rule, rnd, self.W, messages, posting.n)
        want = model_leaves(W_new)
        # neither the ranking nor the validity check is disputable on chain (docs/ETHEREUM.md):
        # refuse to go on
        if fp.selection_mask(invalid) != posting.excluded:
            raise EthereumError(f"round {rnd}: the posting excludes other messages than the invalid ones; the "
                                "contract cannot settle a dispute of a message's validity")
        if fp.selection_mask(selection) != posting.selection:
            raise EthereumError(f"round {rnd}: the posted selection is not the l-nearest one; the contract "
                                "cannot settle a ranking dispute")
        wrong = [c for c, (a, b) in enumerate(zip(want, posting.leaves)) if a != b]
        if not wrong:
            return 0, 0, 0
        honest = [j for j in range(len(self.nodes)) if j not in self.byzantine_nodes]
        if not honest:
            raise EthereumError(f"round {rnd}: a wrong posting and no honest node to dispute it")
        challenger = self.nodes[honest[int(self.rng.integers(len(honest)))]]
        self._ensure_funds(challenger, self.dep.oparams.bond + 10**16)
        upheld, r = self.dep.dispute(challenger, rnd, wrong[0], self.W, posting, messages)
        return int(upheld), int(not upheld), int(r["gasUsed"])

    def step(self) -> OptRound:
        start = time.perf_counter()
        base = self._head
        rnd = base.height
        gas_submit = self.submit_round(base) if self.answered.claim(rnd) else []
        messages = self.dep.round_messages(rnd, from_block=base.block_number)
        op = self.dep.oparams
        if len(messages) < op.min_messages:
            raise EthereumError(f"round {rnd}: {len(messages)} messages, the contract needs {op.min_messages}")
        if len(messages) < op.quorum:
            self.chain.wait_until_block(int(self.dep._get("round_opened")) + op.window)
        n = len(messages)
        gas_post = gas_disputes = upheld_total = rejected_total = 0
        for _ in range(MAX_POSTINGS):
            j = int(self.rng.integers(len(self.nodes)))
            gas_post += self._post(j, rnd, messages, n)
            posting = self.dep.posting()
            upheld, rejected, g = self.check_and_dispute(rnd, messages, posting)
            upheld_total, rejected_total, gas_disputes = upheld_total + upheld, rejected_total + rejected, \
                gas_disputes + g
            if not upheld:
                break
        else:
            raise EthereumError(f"round {rnd}: {MAX_POSTINGS} postings were all disputed successfully")
        self.disputes_upheld += upheld_total
        self.disputes_rejected += rejected_total
        self.chain.wait_until_block(posting.block + op.challenge_blocks + 1)
        r = self.dep.finalize(self.faucet, rnd)
        selection, self.W, _ = honest_aggregation(self.dep.rule, rnd, self.W, messages, posting.n)
        if self.dep.model_root() != tree_root(self.W):
            raise EthereumError(f"round {rnd}: the final model root is not the honest model's")
        head = EthHead(rnd + 1, fp.decode_model(self.W), tuple(self.W), bytes(r["blockHash"]), int(r["blockNumber"]))
        self._head = head
        byz = sum(1 for i in selection if "0x" + messages[i].sender.hex() in self.byzantine_senders)
        return OptRound(rnd + 1, head, True, selection, n, byz, gas_submit, gas_post, int(r["gasUsed"]),
                        gas_disputes, upheld_total, rejected_total, self.wrong_postings,
                        time.perf_counter() - start)

    def withdraw_all(self) -> int:
        """Every node takes the bonds owed to it; the wei paid out."""
        paid = 0
        for node in self.nodes:
            owed = self.dep.credit(node.address)
            if owed:
                self.dep.withdraw(node)
                paid += owed
        return paid


class OptimisticBackend:
    """The run's chain in optimistic mode (the counterpart of runner.EthereumBackend)."""

    unit = "round"
    height_key = "round"

    def __init__(self, cfg, parties: Parties, oparams: OptParams, chain: Chain, *, seeded: bool,
                 byzantine_nodes: frozenset = frozenset()):
        self.cfg, self.parties, self.oparams, self.chain = cfg, parties, oparams, chain
        self.label = f"{cfg.dataset} K={cfg.holders} (ethereum, optimistic)"
        self.faucet = chain.faucet()
        self.fees_before = chain.fees_paid
        self.start_balance = chain.balance(self.faucet.address)
        W0 = fp.encode_model(parties.genesis.model)
        self.dep = OptDeployment.deploy(chain, self.faucet, oparams, W0)
        self.seeded = seeded
        salt = int(self.dep.address, 16) % 2**63
        rng = np.random.default_rng([cfg.seed, 5, salt]) if seeded else None
        self.nodes = [new_account(rng, f"node-{j}") for j in range(cfg.miners)]
        self.net = OptimisticNetwork(self.dep, parties.holders, self.nodes, self.faucet, W0,
                                     rng=np.random.default_rng([cfg.seed, 3]),
                                     key_rng=np.random.default_rng([cfg.seed, 6, salt]) if seeded else None,
                                     attacks=parties.attacks, byzantine_nodes=byzantine_nodes)
        self.rounds: list = []
        self.selected_byzantine_total = 0
        self.bonds_returned = 0

    @property
    def head(self) -> EthHead:
        return self.net.head

    def step(self) -> RoundOutcome:
        res = self.net.step()
        self.rounds.append(res)
        self.selected_byzantine_total += res.byzantine_selected
        total = sum(res.gas_submit) + res.gas_post + res.gas_finalize
        extra = {"messages": res.messages, "gas": total, "gas_post": res.gas_post,
                 "gas_disputes": res.gas_disputes, "block": res.head.block_number}
        return RoundOutcome(height=res.head.height, model=res.head.model, head_changed=True,
                            selected_byzantine=res.byzantine_selected, winner=0, byzantine_winner=False,
                            rejected=False, seconds=res.seconds, extra=extra)

    def abort(self) -> None:
        try:
            self.bonds_returned += self.net.withdraw_all()
        except Exception:  # pragma: no cover - best effort on a failed run
            pass

    def finish(self, stopped_by: str, say: Callable[[str], None]) -> None:
        if stopped_by != "interrupted":
            say("returning the computing nodes' bonds ...")
            self.bonds_returned += self.net.withdraw_all()

    def gas(self) -> dict:
        rs = self.rounds
        n = max(1, len(rs))
        subs = [g for r in rs for g in r.gas_submit]
        return {
            "submit_mean": round(sum(subs) / max(1, len(subs))),
            "post_mean": round(sum(r.gas_post for r in rs) / n),
            "finalize_mean": round(sum(r.gas_finalize for r in rs) / n),
            "round_mean": round(sum(sum(r.gas_submit) + r.gas_post + r.gas_finalize for r in rs) / n),
            "disputes_total": sum(r.gas_disputes for r in rs),
            "setup": self.dep.setup_gas,
            "block_gas_limit": self.chain.gas_limit(),
        }

    def summary(self, common: dict, baseline: dict, say: Callable[[str], None]) -> dict:
        chain, net, dep = self.chain, self.net, self.dep
        accounts = [self.faucet.address] + [a.address for a in self.nodes] + net.pseudo_identities + [dep.address]
        end_balance = sum(chain.balance(a) for a in accounts)
        fees = chain.fees_paid - self.fees_before
        gas = self.gas()
        return {
            "backend": "ethereum",
            "mode": "optimistic",
            "l": self.parties.params.l,
            "rejected_blocks": net.disputes_upheld,
            "rejected_by_reason": {},
            "rejected_messages": dict(net.messages_rejected),
            "selected_byzantine_total": self.selected_byzantine_total,
            "contract_address": dep.address,
            **chain_fields(chain, self.seeded),
            "gas_per_round": gas["round_mean"],
            "gas": gas,
            "optimistic": {
                "challenge_blocks": self.oparams.challenge_blocks,
                "bond_wei": self.oparams.bond,
                "wrong_postings": net.wrong_postings,
                "disputes_upheld": net.disputes_upheld,
                "disputes_rejected": net.disputes_rejected,
                "model_root": "0x" + dep.model_root().hex(),
            },
            "incentives": {
                "bonds_returned_wei": self.bonds_returned,
                "balance_before_wei": self.start_balance,
                "balance_after_wei": end_balance,
                "fees_wei": fees,
                # after every node took what it is owed, the contract holds only the burnt
                # halves of wrong postings' bonds
                "burnt_wei": chain.balance(dep.address),
                "conserved": self.start_balance - end_balance == fees,
            },
        }

    def write(self, out, summary: dict) -> None:
        import json

        with open(out / "contract.abi.json", "w") as fh:
            json.dump(self.dep.abi, fh, indent=1)
            fh.write("\n")
        with open(out / "contract.json", "w") as fh:
            json.dump({"address": self.dep.address, "chain_id": summary["chain_id"], "mode": "optimistic",
                       "deploy_block": self.dep.deploy_block, "abi": "contract.abi.json", "model_bits": 40,
                       "chunks": self.oparams.chunks, "challenge_blocks": self.oparams.challenge_blocks},
                      fh, indent=1)
            fh.write("\n")

    def close(self) -> None:
        pass
