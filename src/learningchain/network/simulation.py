"""The in-process network: K holders and M computing nodes, one round at a time.

Each round: every holder computes its message on the honest head and it is
broadcast to every node (each node admits it through ``Node.on_message``); the
round's block writer is drawn with probability equal to each miner's share of
hash power, and it then really solves the proof of work on its block; the block
is broadcast to every node, which validates it by recomputation
(``Node.on_block``) and applies the fork choice.

The parties come from :mod:`learningchain.parties`: the holders' messages
(``collect_messages``, sent once per head: ``AnswerOnce``) and each miner's
strategy, which sees a ``MinerView`` of its own node and the honest head, never
this network.

Honest nodes share one :class:`VerdictCache`: validation is deterministic, so
the verdict of the first honest node on a block is every honest node's verdict.
Nodes hold references to the same immutable blocks, so M nodes cost one copy of
the chain; one honest node (the archive) keeps the chain in SQLite.

Admission is shared the same way (``share_admission``): honest nodes configured
alike hear the same messages and blocks in the same order, so their mempools go
through the same operations and hold the same contents. Such nodes form an
admission group that shares one :class:`Mempool`; a message is admitted once per
group (by its first node, the lead) and every member gets the lead's decision, its
refusals counted at every member as if each had refused it. A round then costs
K + M, not K x M. Before each message is heard the members are checked to still
follow the lead's chain (same head, same known blocks); one that does not leaves
the group with a copy of the pool (``admission_splits`` counts these; it stays 0
when all honest nodes hear the same events, as they do here).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..attacks.holders import HolderAttack
from ..errors import InvalidBlock, InvalidMessage, LearningChainError
from ..node import Node
from ..node.actions import MessageRefused, Refused
from ..node.policy import PolicyRules
from ..parties import AnswerOnce, HonestMiner, Miner, MinerStrategy, MinerView, collect_messages
from ..protocol.block import Block

# Miner, MinerStrategy, HonestMiner and collect_messages live in ``parties`` (shared by
# every driver); they stay importable from here.
__all__ = ["InProcessNetwork", "collect_messages", "Miner", "MinerStrategy", "HonestMiner", "RoundResult",
           "BLOCK_INTERVAL_MS"]

#: Logical time between blocks; simulated chains are reproducible from the seed.
BLOCK_INTERVAL_MS = 1000


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


class InProcessNetwork:
    def __init__(self, genesis: Block, holders: list, miners: list, *, rng: np.random.Generator,
                 attacks: Optional[dict] = None, batch_holders: bool = True, keep_bodies: Optional[int] = 16,
                 observer_store=None, share_admission: bool = True):
        """``holders``: DataHolder objects; ``attacks``: holder index -> HolderAttack for the
        Byzantine ones; ``miners``: Miner objects (their powers are normalised);
        ``observer_store``: where the light client keeps the heaviest chain (default
        in memory; a SQLiteStore keeps it, bodies included, for ``chain verify``);
        ``share_admission``: honest nodes configured alike admit each message once
        per group (see the module docstring); False gives every node its own pool."""
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
        self.answered = AnswerOnce()  # heads the holders answered
        self.round = 0
        self.mining_tries = 0
        self.rejected_blocks: dict[bytes, str] = {}  # block hash -> reason, refused by honest nodes
        self.rejected_by_node: Counter = Counter()
        self.byzantine_identities: set = set()
        self.messages_rejected: Counter = Counter()
        self.views = [self._view(m) for m in miners]  # what each miner's strategy sees
        self.admission_splits = 0
        self.groups = self._admission_groups(share_admission)
        self._groups_checked = False

    # -- shared admission -------------------------------------------------------------
    def _admission_groups(self, share: bool) -> list:
        """Lists of miner indices whose nodes admit messages together (the first is the lead)."""
        groups: dict = {}
        singles = []
        for i, miner in enumerate(self.miners):
            node = miner.node
            rules = node.policy.rules
            if (not share or miner.byzantine or node.verdicts is None or not node.mempool.empty()
                    or rules.hold_messages or rules.park_unseen or rules != PolicyRules()):
                singles.append([i])
                continue
            pool = node.mempool
            key = (id(node.verdicts), node.genesis_hash, node.head_hash, len(node.headers), node.check_unseen,
                   node.min_inclusion, node.validation, pool.max_per_base, pool.max_bases, pool.max_seen)
            groups.setdefault(key, []).append(i)
        for members in groups.values():
            shared = self.miners[members[0]].node.mempool
            for i in members[1:]:
                self.miners[i].node.mempool = shared
        return sorted(list(groups.values()) + singles)

    def _coherent_groups(self) -> list:
        """The admission groups, each member checked to follow its lead's chain."""
        if self._groups_checked:
            return self.groups
        out = []
        for members in self.groups:
            lead = self.miners[members[0]].node
            same = [members[0]]
            for i in members[1:]:
                node = self.miners[i].node
                if node.head_hash == lead.head_hash and node.headers.keys() == lead.headers.keys():
                    same.append(i)
                else:  # cannot happen while every honest node hears the same events
                    node.mempool = lead.mempool.copy()
                    self.admission_splits += 1
                    out.append([i])
            out.append(same)
        self.groups = sorted(out)
        self._groups_checked = True
        return self.groups

    # -- helpers --------------------------------------------------------------------
    @property
    def head(self) -> Block:
        return self.reference.head

    def seal(self, node: Node, template: Block) -> Block:
        sealed = node.seal(template)
        if self.reference.params.consensus == "pow":
            self.mining_tries += int.from_bytes(sealed.header.seal, "little") + 1
        return sealed

    def _view(self, miner: Miner) -> MinerView:
        # mining_tries counts the honest nodes' proof of work, as it always has
        seal = miner.node.seal if miner.byzantine else (lambda block, node=miner.node: self.seal(node, block))
        return MinerView(miner.node, honest=self.reference, seal=seal, colluding=self.byzantine_identities)

    def timestamp(self) -> int:
        return self.genesis.header.timestamp + (self.round + 1) * BLOCK_INTERVAL_MS

    def broadcast_message(self, msg) -> list:
        """Every node hears ``msg`` through its own policy (once per admission group);
        returns each node's actions (the members of a group share one list)."""
        decided: list = [None] * len(self.miners)
        for members, actions in self._hear(msg):
            for i in members:
                decided[i] = actions
        return decided

    def _hear(self, msg) -> list:
        """(members, actions) of each admission group for ``msg``, refusals counted."""
        now = self.timestamp()
        out = []
        for members in self._coherent_groups():
            lead = self.miners[members[0]]
            actions = lead.node.policy.on_messages([(msg, None)], "in-process", now)
            out.append((members, actions))
            for a in actions:
                if not isinstance(a, MessageRefused):
                    continue
                for i in members[1:]:  # each member refused it, as its own pool would have
                    self.miners[i].node.rejected_messages[a.reason] += 1
                if not lead.byzantine:
                    self.messages_rejected[a.reason] += len(members)
        return out

    def broadcast_block(self, block: Block, rejections: Counter) -> list:
        """Every node hears ``block`` through the same policy entry point as a network
        node (``NodePolicy.on_block``); returns each node's actions."""
        self._groups_checked = False
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
        self._groups_checked = False  # the strategies may have acted on their nodes
        base = self.head
        if self.answered.claim(base.hash):
            for msg in self.holder_messages(base):
                self._hear(msg)
        winner = int(self.rng.choice(len(self.miners), p=self.power))
        ts = self.timestamp()
        rejections: Counter = Counter()
        proposed = []
        tries_before = self.mining_tries
        for block in self.miners[winner].strategy.propose(self.views[winner], ts):
            proposed.append(block.hash)
            self.broadcast_block(block, rejections)
        for miner, view in zip(self.miners, self.views):
            for block in miner.strategy.on_round_end(view, ts):
                proposed.append(block.hash)
                self.broadcast_block(block, rejections)
        new_head = self.head
        self.round += 1
        return RoundResult(self.round, winner, proposed, new_head, new_head.hash != base.hash, rejections,
                           Counter(self.messages_rejected), self.mining_tries - tries_before,
                           time.perf_counter() - start)

    # -- checkpoints ----------------------------------------------------------------
    def checkpoint_state(self) -> tuple[dict, list]:
        """(JSON state, messages waiting on the head) at the end of a round: what a run
        resumed from its stored chain needs besides the chain to go on exactly as it
        would have. Byzantine miners keep state off the chain (withheld blocks, the
        cartel's plans), so a network with any cannot be checkpointed."""
        if any(m.byzantine for m in self.miners):
            raise LearningChainError("a network with Byzantine miners cannot be checkpointed: their withheld "
                                     "blocks and plans are not on the chain")
        head = self.head.hash
        pending = self.reference.mempool.for_base(head) if head in self.answered else []
        state = {"round": self.round, "head": head.hex(), "rng": self.rng.bit_generator.state,
                 "mining_tries": self.mining_tries,
                 "answered": [h.hex() for h in self.answered.answered],
                 "rejected_blocks": {h.hex(): r for h, r in self.rejected_blocks.items()},
                 "rejected_by_node": {str(i): n for i, n in self.rejected_by_node.items()},
                 "byzantine_identities": sorted(a.hex() for a in self.byzantine_identities),
                 "messages_rejected": dict(self.messages_rejected),
                 "holders": [h.checkpoint_state() for h in self.holders]}
        return state, pending

    def restore_state(self, state: dict, chain: list, pending: list) -> None:
        """Continue from :meth:`checkpoint_state`: ``chain`` is the stored canonical chain
        above genesis up to the checkpoint's head, which every node (and the light
        client) validates again as if it had just heard it; ``pending`` are the messages
        that waited on the head, heard again by every node. The counters are the
        checkpoint's: hearing it all again counts nothing new."""
        if len(state["holders"]) != len(self.holders):
            raise LearningChainError(f"the checkpoint has {len(state['holders'])} holders, the run {len(self.holders)}")
        self.round = int(state["round"])  # the nodes hear the chain at the checkpoint's time
        for block in chain:  # as first heard: its messages, then the block
            for msg in block.messages:
                self.broadcast_message(msg)
            refused: Counter = Counter()
            self.broadcast_block(block, refused)
            if refused:  # the stored chain is the run's own: an honest node never refuses a block of it
                raise LearningChainError(f"the stored block at height {block.height} is refused by honest nodes "
                                         f"({', '.join(sorted(refused))}): the chain cannot be continued")
        for miner in self.miners:  # every honest node, not only the one that holds the store
            if not miner.byzantine and miner.node.head_hash.hex() != state["head"]:
                raise LearningChainError(f"the stored chain ends at 0x{miner.node.head_hash.hex()} on node "
                                         f"{miner.node.name}, the checkpoint at 0x{state['head']}")
        self.round, self.mining_tries = int(state["round"]), int(state["mining_tries"])
        self.rng.bit_generator.state = state["rng"]
        self.answered = AnswerOnce(bytes.fromhex(h) for h in state["answered"])
        self.rejected_blocks = {bytes.fromhex(h): r for h, r in state["rejected_blocks"].items()}
        self.rejected_by_node = Counter({int(i): n for i, n in state["rejected_by_node"].items()})
        self.byzantine_identities = {bytes.fromhex(a) for a in state["byzantine_identities"]}
        self.messages_rejected = Counter(state["messages_rejected"])
        for holder, saved in zip(self.holders, state["holders"]):
            holder.restore_state(saved)
        for msg in pending:
            self.broadcast_message(msg)
        self.messages_rejected = Counter(state["messages_rejected"])

    def byzantine_selected(self, block: Block) -> int:
        return sum(1 for i in block.selection if block.messages[i].identity in self.byzantine_identities)
