"""The computing nodes of a run and how each writes blocks.

A :class:`Miner` is a node, its share of the hash power and its strategy. A
strategy sees a :class:`MinerView`: the honest head, its own node's head and
mempool, the chain's rules, and functions to build and seal a block; nothing
else of the network. The honest strategy builds the rule's block on its own
head; the Byzantine ones (``attacks/miners.py``) follow the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Protocol, runtime_checkable

import numpy as np

from ..attacks.miners import miner_strategy_factory
from ..config import TrainConfig
from ..crypto import PrivateKey
from ..errors import ConfigError, InvalidBlock
from ..node import Node, SQLiteStore, VerdictCache
from ..protocol.block import Block, Header
from ..protocol.params import ProtocolParams
from ..protocol.transition import build_block
from ..types import Address

__all__ = ["HonestMiner", "Miner", "MinerStrategy", "MinerView", "build_miners", "check_miners"]


class MinerView:
    """What a strategy may see and do when it writes blocks.

    ``head`` is the head honest nodes accepted (an attacker that wants honest
    nodes to build on its block builds on it); ``own_head`` and ``messages`` are
    its own node's (a node that skips validation may follow invalid blocks);
    ``work`` is the honest nodes' total work of a block (None when they do not
    hold it); ``colluding`` the identities of the Byzantine holders, known to
    colluding miners. ``build`` applies the rule (``protocol.transition.build_block``),
    ``seal`` solves the proof of work, ``follow`` hands a block to its own node.
    """

    def __init__(self, node: Node, *, honest: Node, seal: Callable[[Block], Block], colluding: set):
        self._node = node
        self._honest = honest
        self.seal = seal
        self.colluding = colluding

    @property
    def head(self) -> Block:
        return self._honest.head

    @property
    def own_head(self) -> Block:
        return self._node.head

    @property
    def params(self) -> ProtocolParams:
        return self._node.params

    @property
    def miner(self) -> Address:
        return self._node.miner

    def messages(self, base: bytes) -> list:
        """The messages its mempool holds for the block ``base``."""
        return self._node.mempool.for_base(base)

    def difficulty(self, parent: Header) -> int:
        """The difficulty the rules require of a child of ``parent``."""
        return self._node.next_difficulty(parent)

    def work(self, block_hash: bytes) -> Optional[int]:
        return self._honest.work.get(block_hash)

    def build(self, parent: Block, messages, *, timestamp: int) -> Block:
        """An unsealed block on ``parent``: the rule applied to ``messages``."""
        return build_block(parent, messages, self.params, genesis_hash=self._node.genesis_hash, miner=self.miner,
                           timestamp=timestamp, difficulty=self.difficulty(parent.header))

    def template(self, *, timestamp: int) -> Block:
        """The honest block: the rule on every message its mempool holds for its own head."""
        parent = self.own_head
        messages = self.messages(parent.hash)
        if len(messages) < self.params.min_messages:
            raise InvalidBlock("too-few-messages",
                               f"{len(messages)} messages in the mempool, a block needs {self.params.min_messages}")
        return self.build(parent, messages, timestamp=timestamp)

    def follow(self, block: Block) -> None:
        """Its own node takes ``block`` (a miner follows its own private fork)."""
        self._node.on_block(block)


@runtime_checkable
class MinerStrategy(Protocol):
    """How a computing node writes blocks when it wins. ``validates``: whether its
    node checks blocks by recomputation (a node that does not is built as a light
    client, which checks only the proof of work and the links)."""

    name: str
    byzantine: bool
    validates: bool

    def propose(self, view: MinerView, timestamp: int) -> list:
        """Blocks to broadcast now (sealed)."""

    def on_round_end(self, view: MinerView, timestamp: int) -> list:
        """Blocks to release at the end of a round in which it did not win (withholding)."""


class HonestMiner:
    """The protocol's miner: the rule's block on its head, sealed."""

    name = "honest"
    byzantine = False
    validates = True

    def propose(self, view: MinerView, timestamp: int) -> list:
        return [view.seal(view.template(timestamp=timestamp))]

    def on_round_end(self, view: MinerView, timestamp: int) -> list:
        return []


@dataclass
class Miner:
    node: Node
    power: float
    strategy: MinerStrategy = field(default_factory=HonestMiner)

    @property
    def byzantine(self) -> bool:
        return self.strategy.byzantine


def check_miners(cfg: TrainConfig) -> None:
    """Refuse a bad miner configuration (what build_miners would refuse) before anything is written."""
    if cfg.byzantine_miners >= cfg.miners:
        raise ConfigError(f"byzantine_miners ({cfg.byzantine_miners}) must leave at least one honest miner of "
                          f"{cfg.miners}")
    if cfg.byzantine_miners:
        miner_strategy_factory(cfg.miner_attack, seed=cfg.seed, **cfg.miner_attack_options)


def build_miners(cfg: TrainConfig, genesis: Block, store_path: Optional[Path]) -> tuple[list, int]:
    """M computing nodes: honest ones share one verdict cache; node 0 archives to SQLite.

    The last ``byzantine_miners`` nodes are Byzantine and share ``byzantine_power``
    of the hash power; the honest ones share the rest equally.
    """
    rng = np.random.default_rng([cfg.seed, 2])
    verdicts = VerdictCache()
    n_byz = cfg.byzantine_miners
    if n_byz >= cfg.miners:
        raise ConfigError(f"byzantine_miners ({n_byz}) must leave at least one honest miner of {cfg.miners}")
    honest_power = (1.0 - cfg.byzantine_power) / (cfg.miners - n_byz)
    factory = miner_strategy_factory(cfg.miner_attack, seed=cfg.seed, **cfg.miner_attack_options) if n_byz else None
    miners = []
    for j in range(cfg.miners):
        key = PrivateKey.generate(rng)
        if j >= cfg.miners - n_byz:
            strategy = factory()
            node = Node(genesis, name=f"byzantine-{j}", miner=key.address, keep_bodies=cfg.keep_bodies,
                        validation="full" if strategy.validates else "header")
            miners.append(Miner(node, cfg.byzantine_power / n_byz, strategy))
        else:
            # the run's archive: compression and the SQLite write on a writer thread
            store = SQLiteStore(store_path, write_behind=True) if j == 0 and store_path is not None else None
            node = Node(genesis, store=store, name=f"node-{j}", miner=key.address, verdicts=verdicts,
                        check_unseen=cfg.check_unseen, min_inclusion=cfg.min_inclusion,
                        keep_bodies=None if store is not None else cfg.keep_bodies,
                        prune=cfg.prune and store is not None)
            miners.append(Miner(node, honest_power, HonestMiner()))
    return miners, n_byz
