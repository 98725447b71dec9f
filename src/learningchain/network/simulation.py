"""The in-process network: K holders and M computing nodes, one round at a time.

Each round: every holder computes its message on the honest head and it is
broadcast to every node (each node admits it through ``Node.on_message``); the
round's block writer is drawn with probability equal to each miner's share of
hash power, and it then really solves the proof of work on its block; the block
is broadcast to every node, which validates it by recomputation
(``Node.on_block``) and applies the fork choice.

Honest nodes share one :class:`VerdictCache`: validation is deterministic, so
the verdict of the first honest node on a block is every honest node's verdict.
Nodes hold references to the same immutable blocks, so M nodes cost one copy of
the chain; one honest node (the archive) keeps the chain in SQLite.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..attacks.holders import AttackContext, HolderAttack
from ..errors import InvalidBlock, InvalidMessage, LearningChainError
from ..holder import DataHolder, holders_within_budget, make_messages
from ..node import Node
from ..protocol.block import Block

__all__ = ["InProcessNetwork", "collect_messages", "Miner", "MinerStrategy", "HonestMiner", "RoundResult", "BLOCK_INTERVAL_MS"]

#: Logical time between blocks; simulated chains are reproducible from the seed.
BLOCK_INTERVAL_MS = 1000


class MinerStrategy:
    """How a computing node writes blocks when it wins. Subclasses are attacks."""

    name = "honest"
    byzantine = False

    def propose(self, miner: "Miner", net: "InProcessNetwork", timestamp: int) -> list:
        """Blocks to broadcast now (sealed)."""
        raise NotImplementedError

    def on_round_end(self, miner: "Miner", net: "InProcessNetwork", timestamp: int) -> list:
        """Blocks to release at the end of a round in which it did not win (withholding)."""
        return []


class HonestMiner(MinerStrategy):
    def propose(self, miner, net, timestamp):
        template = miner.node.template(timestamp=timestamp)
        return [net.seal(miner.node, template)]


@dataclass
class Miner:
    node: Node
    power: float
    strategy: MinerStrategy = field(default_factory=HonestMiner)

    @property
    def byzantine(self) -> bool:
        return self.strategy.byzantine


@dataclass
class RoundResult:
    round: int
    winner: int
    proposed: list  # hashes of blocks broadcast this round
    head: Block
    head_changed: bool
    rejections: Counter  # reason -> honest nodes that refused a block this round
    messages_rejected: Counter
    mining_tries: int
    seconds: float


def collect_messages(holders: list, attacks: dict, base, byzantine_identities: set, *, batch: bool = True) -> list:
    """Every holder's messages for the round on ``base``, honest and Byzantine, in holder order.

    Shared by every driver (the in-process network, the Ethereum backend): honest
    holders compute their gradients together (:func:`make_messages`); each Byzantine
    holder's attack returns its vectors, which are signed like honest ones, and the
    identities they use are added to ``byzantine_identities``.
    """
    reports = {}
    honest_vectors = []
    honest = holders_within_budget([h for h in holders if h.index not in attacks], base)
    made = make_messages(honest, base) if batch else [h.make_message(base) for h in honest]
    for holder, report in zip(honest, made):
        reports[holder.index] = [report.message]
        honest_vectors.append(report.honest_gradient)
    byz_count = len(attacks)
    for holder in holders:
        attack = attacks.get(holder.index)
        if attack is None:
            continue
        own = {}

        def own_gradient(holder=holder, own=own):
            if "g" not in own:
                grad, _, _ = holder.local_gradient(base)
                own["g"] = holder.privatize(grad, base)
            return own["g"]

        ctx = AttackContext(round=base.height, dim=holder.params.dim, rng=holder.rng,
                            own_gradient=own_gradient,
                            honest=honest_vectors if attack.omniscient else None,
                            byzantine_count=byz_count, holders=len(holders), holder=holder, base=base)
        msgs = []
        for j, vector in enumerate(attack(ctx)):
            key = holder.next_key() if j == 0 else None
            if key is None:
                from ..crypto import PrivateKey

                key = PrivateKey.generate(holder.rng)
            try:
                msg = holder.sign(vector, base, key=key)
            except InvalidMessage:
                continue  # a vector that cannot even be encoded is never sent
            byzantine_identities.add(msg.identity)
            msgs.append(msg)
        reports[holder.index] = msgs
    return [m for idx in sorted(reports) for m in reports[idx]]


class InProcessNetwork:
    def __init__(self, genesis: Block, holders: list, miners: list, *, rng: np.random.Generator,
                 attacks: Optional[dict] = None, batch_holders: bool = True, keep_bodies: Optional[int] = 16,
                 observer_store=None):
        """``holders``: DataHolder objects; ``attacks``: holder index -> HolderAttack for the
        Byzantine ones; ``miners``: Miner objects (their powers are normalised);
        ``observer_store``: where the light client keeps the heaviest chain (default
        in memory; a SQLiteStore keeps it, bodies included, for ``chain verify``)."""
        self.genesis = genesis
        self.holders = holders
        self.batch_holders = batch_holders
        self.attacks: dict[int, HolderAttack] = attacks or {}
        self.miners = miners
        self.rng = rng
        power = np.array([m.power for m in miners], dtype=np.float64)
        if np.any(power < 0) or power.sum() <= 0:
            raise LearningChainError("miners need non-negative hash power with a positive total")
        self.power = power / power.sum()
        honest = [m for m in miners if not m.byzantine]
        if not honest:
            raise LearningChainError("the simulation needs at least one honest computing node to observe")
        self.reference = honest[0].node
        # A light client that follows the heaviest chain by proof of work without
        # replaying blocks: what a holder sees if it trusts the chain unchecked.
        self.observer = Node(genesis, store=observer_store, name="light-client", validation="header",
                             keep_bodies=keep_bodies)
        self.invalid_blocks: set = set()  # blocks Byzantine miners know to be invalid
        self._sent_for: Optional[bytes] = None
        self.round = 0
        self.mining_tries = 0
        self.rejected_blocks: dict[bytes, str] = {}  # block hash -> reason, refused by honest nodes
        self.rejected_by_node: Counter = Counter()
        self.byzantine_identities: set = set()
        self.messages_rejected: Counter = Counter()

    # -- helpers --------------------------------------------------------------------
    @property
    def head(self) -> Block:
        return self.reference.head

    def seal(self, node: Node, template: Block) -> Block:
        sealed = node.seal(template)
        if self.reference.params.consensus == "pow":
            self.mining_tries += int.from_bytes(sealed.header.seal, "little") + 1
        return sealed

    def timestamp(self) -> int:
        return self.genesis.header.timestamp + (self.round + 1) * BLOCK_INTERVAL_MS

    def broadcast_message(self, msg) -> list:
        """Every node hears ``msg`` through its own policy; returns each node's actions."""
        from ..node.actions import MessageRefused

        decided = []
        for miner in self.miners:
            actions = miner.node.policy.on_messages([(msg, None)], "in-process", self.timestamp())
            decided.append(actions)
            if not miner.byzantine:
                for a in actions:
                    if isinstance(a, MessageRefused):
                        self.messages_rejected[a.reason] += 1
        return decided

    def broadcast_block(self, block: Block, rejections: Counter) -> list:
        """Every node hears ``block`` through the same policy entry point as a network
        node (``NodePolicy.on_block``); returns each node's actions."""
        from ..node.actions import Refused

        try:
            self.observer.on_block(block)
        except InvalidBlock:
            pass
        decided = []
        for i, miner in enumerate(self.miners):
            actions = miner.node.policy.on_block(block, "in-process", self.timestamp())
            decided.append(actions)
            if miner.byzantine:
                continue
            for a in actions:
                if isinstance(a, Refused) and a.block_hash == block.hash:
                    rejections[a.reason] += 1
                    self.rejected_blocks[block.hash] = a.reason
                    self.rejected_by_node[i] += 1
        return decided

    # -- one round ------------------------------------------------------------------
    def holder_messages(self, base: Block) -> list:
        return collect_messages(self.holders, self.attacks, base, self.byzantine_identities,
                                batch=self.batch_holders)

    def step(self) -> RoundResult:
        start = time.perf_counter()
        base = self.head
        if base.hash != self._sent_for:  # holders answer each new head once
            self._sent_for = base.hash
            for msg in self.holder_messages(base):
                self.broadcast_message(msg)
        winner = int(self.rng.choice(len(self.miners), p=self.power))
        ts = self.timestamp()
        rejections: Counter = Counter()
        proposed = []
        tries_before = self.mining_tries
        for block in self.miners[winner].strategy.propose(self.miners[winner], self, ts):
            proposed.append(block.hash)
            self.broadcast_block(block, rejections)
        for miner in self.miners:
            for block in miner.strategy.on_round_end(miner, self, ts):
                proposed.append(block.hash)
                self.broadcast_block(block, rejections)
        new_head = self.head
        self.round += 1
        return RoundResult(self.round, winner, proposed, new_head, new_head.hash != base.hash, rejections,
                           Counter(self.messages_rejected), self.mining_tries - tries_before,
                           time.perf_counter() - start)

    def byzantine_selected(self, block: Block) -> int:
        return sum(1 for i in block.selection if block.messages[i].identity in self.byzantine_identities)
