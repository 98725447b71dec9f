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
fork, the identities of Byzantine holders).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..crypto import PrivateKey
from ..errors import ConfigError, InvalidBlock, InvalidMessage
from ..holder import encode_vector
from ..network.simulation import MinerStrategy
from ..protocol.aggregation import aggregate
from ..protocol.block import Block, Header, merkle_root, model_hash, selection_hash
from ..protocol.message import sign_message
from ..protocol.transition import apply_update, canonical_messages, make_batch
from ..types import hexstr

__all__ = ["MINER_ATTACKS", "make_miner_strategy", "miner_strategy_factory", "forge_block", "mint_messages",
           "summarize_miner_attack", "Cartel"]


@dataclass
class Cartel:
    """State shared by the colluding Byzantine miners of one run."""

    rng: np.random.Generator
    private: list = field(default_factory=list)  # withheld blocks, oldest first
    released: int = 0
    abandoned: int = 0
    proposed: int = 0
    minted: int = 0


def forge_block(node, parent: Block, *, messages, timestamp: int, model: Optional[np.ndarray] = None,
                selection: Optional[tuple] = None) -> Block:
    """A sealed block on ``parent`` with whatever the miner chooses to commit to.

    The selection and model default to the rule's honest result on ``messages``;
    the header always commits consistently to what the block carries, so only
    recomputation can tell a forged model or selection from a true one.
    """
    params = node.params
    ordered = canonical_messages(messages)
    agg = aggregate(make_batch(ordered, params), params)
    sel = agg.selection if selection is None else tuple(selection)
    new_model = apply_update(parent.model, agg.gradient, params) if model is None else np.asarray(model, np.float64)
    header = Header(
        height=parent.height + 1,
        parent=parent.hash,
        genesis=node.genesis_hash,
        timestamp=max(int(timestamp), parent.header.timestamp),
        params_hash=parent.header.params_hash,
        messages_root=merkle_root([m.hash for m in ordered]),
        selection_hash=selection_hash(sel),
        model_hash=model_hash(new_model),
        miner=node.miner,
        difficulty=node.next_difficulty(parent.header),
    )
    return node.seal(Block(header, ordered, sel, new_model))


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


class ByzantineMiner(MinerStrategy):
    byzantine = True

    def __init__(self, cartel: Cartel):
        self.cartel = cartel

    def node_options(self) -> dict:
        """Keyword arguments for the Byzantine miner's Node."""
        return {"validation": "none"}


class WrongModel(ByzantineMiner):
    name = "wrong-model"

    def __init__(self, cartel: Cartel, amplify: float = 5.0):
        super().__init__(cartel)
        self.amplify = amplify

    def propose(self, miner, net, timestamp):
        base = net.head  # the honest head: the attacker wants honest nodes to build on its block
        msgs = miner.node.mempool.for_base(base.hash)
        if not msgs:
            return []
        honest = forge_block(miner.node, base, messages=msgs, timestamp=timestamp)
        step = honest.model - base.model
        wrong = base.model - self.amplify * step  # the update reversed and amplified
        self.cartel.proposed += 1
        return [forge_block(miner.node, base, messages=msgs, timestamp=timestamp, model=wrong)]


class DropHonest(ByzantineMiner):
    name = "drop-honest"

    def __init__(self, cartel: Cartel, keep: int = 1):
        super().__init__(cartel)
        self.keep = keep

    def propose(self, miner, net, timestamp):
        base = net.head
        msgs = miner.node.mempool.for_base(base.hash)
        if not msgs:
            return []
        byz = [m for m in msgs if m.identity in net.byzantine_identities]
        honest = sorted((m for m in msgs if m.identity not in net.byzantine_identities), key=lambda m: m.hash)
        chosen = byz + honest[: self.keep]
        if len(chosen) < miner.node.params.min_messages:
            chosen = msgs
        self.cartel.proposed += 1
        return [forge_block(miner.node, base, messages=chosen, timestamp=timestamp)]


class ForgedMessages(ByzantineMiner):
    name = "forged-messages"

    def __init__(self, cartel: Cartel, scale: float = 1.0):
        super().__init__(cartel)
        self.scale = scale

    def propose(self, miner, net, timestamp):
        base = net.head
        msgs = miner.node.mempool.for_base(base.hash)
        if not msgs:
            return []
        direction = -_honest_direction(msgs)
        norm = self.scale * _mean_norm(msgs)
        vectors = [direction * norm + 1e-3 * norm * self.cartel.rng.normal(size=direction.shape)
                   for _ in range(len(msgs) + 1)]
        forged = mint_messages(miner.node.params, base, vectors, self.cartel.rng)
        self.cartel.minted += len(forged)
        self.cartel.proposed += 1
        return [forge_block(miner.node, base, messages=msgs + forged, timestamp=timestamp)]


class SkipValidation(ByzantineMiner):
    name = "skip-validation"

    def __init__(self, cartel: Cartel, amplify: float = 5.0):
        super().__init__(cartel)
        self.amplify = amplify

    def propose(self, miner, net, timestamp):
        node = miner.node
        tip = node.head  # heaviest chain this unchecked node sees, invalid blocks included
        self.cartel.proposed += 1
        if tip.hash not in net.invalid_blocks:
            # nothing invalid to build on yet: make it
            msgs = node.mempool.for_base(tip.hash) or self._mint(node, tip, net)
            honest = forge_block(node, tip, messages=msgs, timestamp=timestamp)
            wrong = tip.model - self.amplify * (honest.model - tip.model)
            block = forge_block(node, tip, messages=msgs, timestamp=timestamp, model=wrong)
            net.invalid_blocks.add(block.hash)
            return [block]
        # extend the invalid chain with a correctly computed child of the invalid parent
        msgs = node.mempool.for_base(tip.hash) or self._mint(node, tip, net)
        block = forge_block(node, tip, messages=msgs, timestamp=timestamp)
        net.invalid_blocks.add(block.hash)  # invalid by ancestry
        return [block]

    def _mint(self, node, parent, net):
        d = node.params.dim
        vectors = [self.cartel.rng.normal(size=d) for _ in range(max(node.params.min_messages, node.params.l))]
        minted = mint_messages(node.params, parent, vectors, self.cartel.rng)
        self.cartel.minted += len(minted)
        return minted


class Withhold(ByzantineMiner):
    name = "withhold"

    def __init__(self, cartel: Cartel, give_up: int = 2, max_lead: int = 4):
        super().__init__(cartel)
        self.give_up = give_up
        self.max_lead = max_lead

    def node_options(self) -> dict:
        return {"validation": "full"}

    def _private_tip(self, net) -> Block:
        return self.cartel.private[-1] if self.cartel.private else net.head

    def propose(self, miner, net, timestamp):
        node = miner.node
        parent = self._private_tip(net)
        msgs = node.mempool.for_base(parent.hash)
        if not msgs:  # private blocks past the first: nobody sent messages for them
            honest_like = net.head.messages or ()
            direction = -_honest_direction(honest_like) if honest_like else self.cartel.rng.normal(size=node.params.dim)
            norm = _mean_norm(honest_like)
            vectors = [direction * norm + 1e-3 * norm * self.cartel.rng.normal(size=direction.shape)
                       for _ in range(max(node.params.min_messages, node.params.l))]
            msgs = mint_messages(node.params, parent, vectors, self.cartel.rng)
            self.cartel.minted += len(msgs)
        block = forge_block(node, parent, messages=msgs, timestamp=timestamp)
        self.cartel.private.append(block)
        self.cartel.proposed += 1
        node.on_block(block)  # its own node follows its own fork
        return []  # withheld

    def on_round_end(self, miner, net, timestamp):
        """Selfish mining: keep the fork private while it leads by more than one
        block; release it when the public chain comes within one block (it then
        wins on weight, or ties) or once it leads by ``max_lead`` blocks (the
        reorganisation it forces is then as deep as it gets); abandon it when the
        public chain is ``give_up`` blocks ahead."""
        if not self.cartel.private or miner is not _first_byzantine(net):
            return []
        private = self.cartel.private
        ref = net.reference
        base_work = ref.work.get(private[0].parent)
        if base_work is None:  # the fork's base was never accepted publicly
            self.cartel.private = []
            self.cartel.abandoned += 1
            return []
        private_work = base_work + sum(1 << b.header.difficulty for b in private)
        public_work = ref.work[ref.head_hash]
        one_block = 1 << private[-1].header.difficulty
        lead = private_work - public_work
        if (0 <= lead <= one_block and ref.head_hash != private[0].parent) or lead >= self.max_lead * one_block:
            self.cartel.private = []
            self.cartel.released += 1
            return list(private)
        if -lead >= self.give_up * one_block:
            self.cartel.private = []
            self.cartel.abandoned += 1
        return []


def _first_byzantine(net):
    for m in net.miners:
        if m.byzantine:
            return m
    return None


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


def summarize_miner_attack(net, miners, cfg, *, last: int = 6) -> dict:
    """What the Byzantine miners achieved, in numbers and in one plain sentence."""
    ref = net.reference
    byz_addresses = {m.node.miner for m in miners if m.byzantine}
    canonical = ref.canonical_hashes()
    byz_on_chain = sum(1 for h in canonical[1:] if ref.headers[h].miner in byz_addresses)
    observer = net.observer
    heavy_head = observer.head_hash if observer is not None else ref.head_hash
    heavy_is_honest = heavy_head in ref.headers  # honest nodes store every valid block, forks included
    heavy_height = observer.headers[heavy_head].height if observer is not None else ref.height
    cartel = None
    for m in miners:
        if m.byzantine:
            cartel = m.strategy.cartel
            break
    out = {
        "byzantine_miners": cfg.byzantine_miners,
        "byzantine_power": cfg.byzantine_power,
        "miner_attack": cfg.miner_attack,
        "byzantine_blocks_proposed": cartel.proposed if cartel else 0,
        "byzantine_blocks_on_honest_chain": byz_on_chain,
        "minted_identities": cartel.minted if cartel else 0,
        "honest_height": ref.height,
        "heaviest_chain_height": heavy_height,
        "heaviest_chain_accepted_by_honest": bool(heavy_is_honest),
        "heaviest_head_hash": hexstr(heavy_head),
    }
    if cfg.miner_attack == "withhold" and cartel is not None:
        out["withheld_forks_released"] = cartel.released
        out["withheld_forks_abandoned"] = cartel.abandoned
    honest_blocks = len(canonical) - 1 - byz_on_chain
    if not heavy_is_honest:
        verdict = (f"The heaviest chain by proof of work (height {heavy_height}) ends in blocks honest nodes "
                   f"refused; honest nodes, which validate, keep the true model at height {ref.height}. A holder "
                   f"that trusts the heaviest chain without checking reads a model that is not the honest one.")
    elif byz_on_chain:
        verdict = (f"{byz_on_chain} of {len(canonical) - 1} blocks on the honest chain were written by Byzantine "
                   f"miners and are valid by recomputation (the rules cannot see what they did: "
                   f"{cfg.miner_attack}); {len(net.rejected_blocks)} blocks were refused.")
    else:
        verdict = (f"Honest nodes refused {len(net.rejected_blocks)} Byzantine blocks; every block on the chain "
                   f"({honest_blocks}) is honest and the head model is the rule's result.")
    if cfg.byzantine_power > 0.5:
        verdict = (f"Byzantine miners hold a majority ({cfg.byzantine_power:.0%}) of the hash power, the case the "
                   f"paper says LearningChain cannot survive: " + verdict +
                   f" The honest chain grew {ref.height} blocks in {net.round} rounds.")

    from ..node.verify import replay_last

    s = cfg.verify_last
    honest_ok, _, _ = replay_last(ref, ref.head_hash, s)
    out["final_check"] = {"s": s, "honest_head_passes": honest_ok}
    if observer is not None and not heavy_is_honest:
        ok, bad, reason = replay_last(observer, heavy_head, s)
        out["final_check"]["heaviest_head_passes"] = ok
        out["final_check"]["heaviest_head_first_bad_height"] = bad
        out["final_check"]["heaviest_head_reason"] = reason
        verdict += (f" The holders' final check over the last {s} blocks of the heaviest chain "
                    + ("PASSES, so the wrong model survives it: " + (
                        "its blocks recompute correctly, but on messages no honest node ever received."
                        if cfg.miner_attack in ("forged-messages", "withhold") else
                        "the invalid block lies deeper than s.")
                       if ok else f"detects it ({reason} at height {bad})."))
    out["verdict"] = verdict
    return out
