"""Byzantine computing nodes (paper Section III-B and V-B).

A Byzantine miner that wins the right to write a block may write anything it can
seal. Each behaviour below is a small strategy, registered by name:

* ``wrong-model``: a block on the honest head whose model is not the rule's
  result (the update reversed and amplified). Caught by recomputation.
* ``drop-honest``: a valid block that leaves out honest messages (keeping the
  Byzantine holders' and ``keep`` honest ones) to tilt the selection. Nothing in
  the paper's rules can tell an omission from a message that never arrived; an
  optional node policy (``min_inclusion``) refuses blocks that omit too much of
  what the node holds.
* ``forged-messages``: a block that adds messages nobody broadcast, signed by
  identities the miner minted, pointing against the honest direction and
  numerous enough to win the selection. Signatures cannot catch them (anyone may
  mint pseudo-identities); the paper's comparison with the mempool does.
* ``skip-validation``: Byzantine nodes that accept every block unchecked and
  extend the heaviest chain they see, invalid blocks included; when they hold no
  invalid block yet they write a wrong-model one first, then extend it with
  correctly computed children (on messages they mint), so the tip looks valid to
  anyone who checks only the last blocks.
* ``withhold``: mines a private fork (valid blocks, on minted messages after the
  first) and releases it once it is heavier than the public chain; abandons it
  when the public chain gets ``give_up`` blocks ahead.

The Byzantine miners of one run collude: they share one ``Cartel`` (the private
fork, the blocks they know to be invalid). Each strategy sees only a miner's
view (``parties.miners.MinerView``: the honest head, its own node's head and
mempool, the rules, a seal function) and builds its blocks with the protocol's
``build_block``; a forged model or selection is written over the rule's block
by :func:`tamper`, so only recomputation can tell it from a true one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import numpy as np

from ..crypto import PrivateKey
from ..errors import ConfigError, InvalidMessage
from ..holder import encode_vector
from ..protocol.block import Block, model_hash, selection_hash
from ..protocol.forkchoice import block_work, chain_work
from ..protocol.message import sign_message

__all__ = ["MINER_ATTACKS", "make_miner_strategy", "miner_strategy_factory", "tamper", "mint_messages", "Cartel",
           "ByzantineMiner"]


@dataclass
class Cartel:
    """State shared by the colluding Byzantine miners of one run."""

    rng: np.random.Generator
    private: list = field(default_factory=list)  # withheld blocks, oldest first
    invalid: set = field(default_factory=set)  # hashes of blocks the cartel knows to be invalid
    leader: Optional["ByzantineMiner"] = None  # the member that releases the private fork
    released: int = 0
    abandoned: int = 0
    proposed: int = 0
    minted: int = 0


def tamper(block: Block, *, model: Optional[np.ndarray] = None, selection: Optional[tuple] = None) -> Block:
    """``block`` (unsealed) with another model and/or selection, its header committing to them.

    The header stays consistent with what the block carries, so only
    recomputation can tell the forged commitment from the rule's.
    """
    sel = block.selection if selection is None else tuple(selection)
    new_model = block.model if model is None else np.asarray(model, np.float64)
    header = replace(block.header, selection_hash=selection_hash(sel), model_hash=model_hash(new_model), seal=b"")
    return Block(header, block.messages, sel, new_model)


def mint_messages(params, parent: Block, vectors, rng: np.random.Generator) -> list:
    """Messages under fresh identities the miner creates (a Sybil), one per vector."""
    out = []
    for v in vectors:
        try:
            norm, q = encode_vector(v, params)
        except InvalidMessage:
            continue
        out.append(sign_message(PrivateKey.generate(rng), round=parent.height, base=parent.hash, norm=norm, q=q))
    return out


def _honest_direction(messages) -> np.ndarray:
    total = None
    for m in messages:
        u = m.q.astype(np.float64)
        total = u if total is None else total + u
    return total / max(np.linalg.norm(total), 1e-300)


def _mean_norm(messages) -> float:
    return float(np.mean([m.norm for m in messages])) if messages else 1.0


def _reversed(block: Block, parent: Block, amplify: float) -> Block:
    """The rule's block with its update reversed and amplified."""
    return tamper(block, model=parent.model - amplify * (block.model - parent.model))


class ByzantineMiner:
    """A colluding Byzantine strategy (the interface of ``parties.miners.MinerStrategy``)."""

    name = "byzantine"
    byzantine = True
    validates = False  # its node follows the heaviest chain unchecked (a light client)

    def __init__(self, cartel: Cartel):
        self.cartel = cartel

    def propose(self, view, timestamp: int) -> list:
        raise NotImplementedError

    def on_round_end(self, view, timestamp: int) -> list:
        return []


class WrongModel(ByzantineMiner):
    name = "wrong-model"

    def __init__(self, cartel: Cartel, amplify: float = 5.0):
        super().__init__(cartel)
        self.amplify = amplify

    def propose(self, view, timestamp):
        base = view.head  # the honest head: the attacker wants honest nodes to build on its block
        msgs = view.messages(base.hash)
        if not msgs:
            return []
        self.cartel.proposed += 1
        return [view.seal(_reversed(view.build(base, msgs, timestamp=timestamp), base, self.amplify))]


class DropHonest(ByzantineMiner):
    name = "drop-honest"

    def __init__(self, cartel: Cartel, keep: int = 1):
        super().__init__(cartel)
        self.keep = keep

    def propose(self, view, timestamp):
        base = view.head
        msgs = view.messages(base.hash)
        if not msgs:
            return []
        byz = [m for m in msgs if m.identity in view.colluding]
        honest = sorted((m for m in msgs if m.identity not in view.colluding), key=lambda m: m.hash)
        chosen = byz + honest[: self.keep]
        if len(chosen) < view.params.min_messages:
            chosen = msgs
        self.cartel.proposed += 1
        return [view.seal(view.build(base, chosen, timestamp=timestamp))]


class ForgedMessages(ByzantineMiner):
    name = "forged-messages"

    def __init__(self, cartel: Cartel, scale: float = 1.0):
        super().__init__(cartel)
        self.scale = scale

    def propose(self, view, timestamp):
        base = view.head
        msgs = view.messages(base.hash)
        if not msgs:
            return []
        direction = -_honest_direction(msgs)
        norm = self.scale * _mean_norm(msgs)
        vectors = [direction * norm + 1e-3 * norm * self.cartel.rng.normal(size=direction.shape)
                   for _ in range(len(msgs) + 1)]
        forged = mint_messages(view.params, base, vectors, self.cartel.rng)
        self.cartel.minted += len(forged)
        self.cartel.proposed += 1
        return [view.seal(view.build(base, msgs + forged, timestamp=timestamp))]


class SkipValidation(ByzantineMiner):
    name = "skip-validation"

    def __init__(self, cartel: Cartel, amplify: float = 5.0):
        super().__init__(cartel)
        self.amplify = amplify

    def propose(self, view, timestamp):
        tip = view.own_head  # heaviest chain this unchecked node sees, invalid blocks included
        self.cartel.proposed += 1
        msgs = view.messages(tip.hash) or self._mint(view, tip)
        block = view.build(tip, msgs, timestamp=timestamp)
        if tip.hash not in self.cartel.invalid:
            # nothing invalid to build on yet: make it
            block = _reversed(block, tip, self.amplify)
        # else: a correctly computed child of the invalid parent, invalid by ancestry
        block = view.seal(block)
        self.cartel.invalid.add(block.hash)
        return [block]

    def _mint(self, view, parent):
        params = view.params
        vectors = [self.cartel.rng.normal(size=params.dim) for _ in range(max(params.min_messages, params.l))]
        minted = mint_messages(params, parent, vectors, self.cartel.rng)
        self.cartel.minted += len(minted)
        return minted


class Withhold(ByzantineMiner):
    name = "withhold"
    validates = True

    def __init__(self, cartel: Cartel, give_up: int = 2, max_lead: int = 4):
        super().__init__(cartel)
        self.give_up = give_up
        self.max_lead = max_lead

    def propose(self, view, timestamp):
        parent = self.cartel.private[-1] if self.cartel.private else view.head
        msgs = view.messages(parent.hash)
        if not msgs:  # private blocks past the first: nobody sent messages for them
            params = view.params
            honest_like = view.head.messages or ()
            direction = -_honest_direction(honest_like) if honest_like else self.cartel.rng.normal(size=params.dim)
            norm = _mean_norm(honest_like)
            vectors = [direction * norm + 1e-3 * norm * self.cartel.rng.normal(size=direction.shape)
                       for _ in range(max(params.min_messages, params.l))]
            msgs = mint_messages(params, parent, vectors, self.cartel.rng)
            self.cartel.minted += len(msgs)
        block = view.seal(view.build(parent, msgs, timestamp=timestamp))
        self.cartel.private.append(block)
        self.cartel.proposed += 1
        view.follow(block)  # its own node follows its own fork
        return []  # withheld

    def on_round_end(self, view, timestamp):
        """Selfish mining: keep the fork private while it leads by more than one
        block; release it when the public chain comes within one block (it then
        wins on weight, or ties) or once it leads by ``max_lead`` blocks (the
        reorganisation it forces is then as deep as it gets); abandon it when the
        public chain is ``give_up`` blocks ahead. One member of the cartel (the
        first to reach the end of a round) decides for all."""
        if self.cartel.leader is None:
            self.cartel.leader = self
        if not self.cartel.private or self.cartel.leader is not self:
            return []
        private = self.cartel.private
        base_work = view.work(private[0].parent)
        if base_work is None:  # the fork's base was never accepted publicly
            self.cartel.private = []
            self.cartel.abandoned += 1
            return []
        head = view.head
        private_work = chain_work(base_work, (b.header for b in private), view.params)
        public_work = view.work(head.hash)
        one_block = block_work(private[-1].header, view.params)
        lead = private_work - public_work
        if (0 <= lead <= one_block and head.hash != private[0].parent) or lead >= self.max_lead * one_block:
            self.cartel.private = []
            self.cartel.released += 1
            return list(private)
        if -lead >= self.give_up * one_block:
            self.cartel.private = []
            self.cartel.abandoned += 1
        return []


MINER_ATTACKS: dict[str, type] = {
    cls.name: cls for cls in (WrongModel, DropHonest, ForgedMessages, SkipValidation, Withhold)
}


def miner_strategy_factory(name: str, *, seed: int = 0, **options) -> Callable[[], ByzantineMiner]:
    """A factory of colluding strategies (one shared Cartel per run)."""
    try:
        cls = MINER_ATTACKS[name]
    except KeyError:
        raise ConfigError(f"unknown miner attack {name!r}; known: {', '.join(sorted(MINER_ATTACKS))}") from None
    cartel = Cartel(np.random.default_rng([seed, 0xBAD]))

    def make() -> ByzantineMiner:
        try:
            return cls(cartel, **options)
        except TypeError as exc:
            raise ConfigError(f"bad options for miner attack {name!r}: {exc}") from None

    make()  # check the options once, early
    return make


def make_miner_strategy(name: str, **options) -> ByzantineMiner:
    return miner_strategy_factory(name, **options)()
