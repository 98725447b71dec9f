"""The native chain as a run backend: the in-process network of K holders and
M computing nodes (``network/simulation.py``), one block per round."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..config import TrainConfig
from ..network.simulation import InProcessNetwork
from ..node import SQLiteStore
from ..parties import Parties, RoundOutcome, build_miners
from ..protocol.block import Block
from ..protocol.rewards import Balances, balances_of, count_block
from .miner_report import summarize_miner_attack
from .report import count_reasons

__all__ = ["ATTACKER_CHAIN", "NativeBackend"]

#: The heaviest chain of a Byzantine-miner run, as a holder that does not validate
#: would follow it (``keep_attacker_chain``).
ATTACKER_CHAIN = "attacker-chain.sqlite"


class NativeBackend:
    """The run's chain: blocks written by the miners and validated by every honest node."""

    unit = "block"
    height_key = "h"

    def __init__(self, cfg: TrainConfig, parties: Parties, out: Path):
        self.cfg = cfg
        self.parties = parties
        self.label = f"{cfg.dataset} K={cfg.holders}"
        self.miners, self.n_byz_miners = build_miners(cfg, parties.genesis,
                                                      out / "chain.sqlite" if cfg.keep_chain else None)
        self.archive = self.miners[0].node
        # a pruned chain.sqlite drops messages, which say who paid: their blocks are counted as they go
        self._pruned_paid = Balances()
        self._rewards_lost = False
        if cfg.prune and isinstance(self.archive.store, SQLiteStore):
            self._rewards_lost = self.archive.store.pruned_below > 1  # pruned before this process (resume)
            rules = parties.params.rewards
            self.archive.store.on_prune = lambda block: count_block(self._pruned_paid, block, rules)
        # the final check of a Byzantine-miner run replays the last verify_last blocks of
        # the honest and the heaviest chain, so their bodies must still be held then
        keep = cfg.keep_bodies
        if keep is not None and self.n_byz_miners:
            keep = max(keep, cfg.verify_last + 2)
        for miner in self.miners:  # before the network groups the nodes by their pools' bounds
            miner.node.mempool.max_bases = cfg.mempool_bases
            # the shared body-check cache holds the blocks it checked, messages and all (64
            # by default): no more of them than the nodes keep
            if keep is not None and miner.node.verdicts is not None:
                miner.node.verdicts.max_bodies = min(miner.node.verdicts.max_bodies, max(1, keep))
        self.attacker_store = SQLiteStore(out / ATTACKER_CHAIN) if cfg.keep_attacker_chain else None
        self.net = InProcessNetwork(parties.genesis, parties.holders, self.miners,
                                    rng=np.random.default_rng([cfg.seed, 3]), attacks=parties.attacks,
                                    keep_bodies=keep, observer_store=self.attacker_store)
        self.selected_byzantine_total = 0

    @property
    def head(self) -> Block:
        return self.net.head

    def step(self) -> RoundOutcome:
        res = self.net.step()
        head = res.head
        sel_byz = self.net.byzantine_selected(head) if head.height > 0 else 0
        self.selected_byzantine_total += sel_byz if res.head_changed else 0
        return RoundOutcome(height=head.height, model=head.model, head_changed=res.head_changed,
                            selected_byzantine=sel_byz, winner=res.winner,
                            byzantine_winner=self.miners[res.winner].byzantine,
                            rejected=sum(res.rejections.values()) > 0, seconds=res.seconds)

    # -- checkpoints (experiments/checkpoint.py) -----------------------------------
    @property
    def checkpointable(self) -> bool:
        """A run resumes from its stored chain: it needs one, and no Byzantine miner (whose
        withheld blocks and plans are not on the chain)."""
        return self.cfg.keep_chain and not self.n_byz_miners

    def checkpoint_state(self) -> tuple[dict, list]:
        state, pending = self.net.checkpoint_state()
        state["selected_byzantine_total"] = self.selected_byzantine_total
        return state, pending

    def after_stored(self, fn) -> None:
        """Run ``fn`` once the archive's chain store holds every block accepted so far."""
        self.archive.store.after_writes(fn)

    def restore(self, state: dict, pending: list) -> None:
        """Continue from a checkpoint whose head the store was cut back to: every node
        validates the stored chain again (the archive node already holds it)."""
        store = self.archive.store
        chain = (store.get(store.canonical_hash(h)) for h in range(1, self.archive.height + 1))
        self.net.restore_state(state, chain, pending)
        self.selected_byzantine_total = int(state["selected_byzantine_total"])

    def abort(self) -> None:
        pass

    def finish(self, stopped_by: str, say: Callable[[str], None]) -> None:
        pass

    def summary(self, common: dict, baseline: dict, say: Callable[[str], None]) -> dict:
        cfg, net, params = self.cfg, self.net, self.parties.params
        out = {
            "l": params.l if cfg.aggregator.startswith("l-nearest") else None,
            "baseline_curve": baseline["curve"],
            "rejected_blocks": len(net.rejected_blocks),
            "rejected_by_reason": dict(sorted(count_reasons(net.rejected_blocks).items())),
            "rejected_by_node": {self.miners[i].node.name: n for i, n in sorted(net.rejected_by_node.items())},
            "rejected_messages": dict(net.messages_rejected),
            "selected_byzantine_total": self.selected_byzantine_total,
            # the pseudo-identities Byzantine holders used: the explorer marks their messages
            "byzantine_identities": sorted("0x" + a.hex() for a in net.byzantine_identities),
            "delta_total": common["privacy"].get("delta_total"),
            "difficulty_bits": cfg.difficulty,
            "mining_tries": net.mining_tries,
            "chain": "chain.sqlite" if cfg.keep_chain else None,
        }
        if self.n_byz_miners:
            say(f"final check of the last {cfg.verify_last} blocks of the honest and the heaviest chain ...")
            out.update(summarize_miner_attack(net, self.miners, cfg))
            if self.attacker_store is not None:
                out["attacker_chain"] = ATTACKER_CHAIN
        if cfg.keep_chain and self._rewards_lost:
            out["rewards"] = {"rule": params.rewards, "not_counted": "chain.sqlite was pruned before this process "
                              "started (a resumed pruned run): the messages that say who paid are gone"}
        elif cfg.keep_chain:
            say(f"rewards: reading the {self.head.height} blocks of chain.sqlite ...")
            store = self.archive.store
            store.flush()  # every block on disk, and pruned_below and the pruned blocks' count final
            paid = balances_of(store.canonical_blocks(max(0, store.pruned_below)), params.rewards,
                               start=self._pruned_paid)
            out["rewards"] = {"rule": params.rewards, "paid_to_miners": paid.paid_to_miners,
                              "paid_by_holders": paid.paid_by_holders, "miners_paid": len(paid.mined)}
        return out

    def write(self, out: Path, summary: dict) -> None:
        pass  # chain.sqlite and the attacker's chain are written as the run goes

    def close(self) -> None:
        self.archive.store.close()
        if self.attacker_store is not None:
            self.attacker_store.close()
