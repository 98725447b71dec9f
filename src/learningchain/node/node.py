"""The computing node as a sans-I/O state machine.

A :class:`Node` decides what to do with a message, a block or a mined nonce, and
does no I/O of its own beyond its block store: no sockets, no clocks, no threads.
The in-process simulation, the TCP network and the tests all drive this same
object (DESIGN.md, "one Node, several drivers"); what to do with gossip around
these handlers (losing, orphan and unseen-message blocks) is ``self.policy``.

Handlers follow consensus-specs' rule that an invalid call leaves the store
untouched: ``on_block`` validates completely before it writes anything, and the
head moves in the same store transaction that adds the block.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Optional

from ..crypto import PrivateKey
from ..errors import DecodeError, InvalidBlock, InvalidMessage, StoreError
from ..protocol.block import Block, Header, decode_block
from ..protocol.budget import charge, over_budget
from ..protocol.consensus import (authority_weight, check_authority, check_pow, difficulty_range, expected_difficulty,
                                  seal_authority, solve_pow)
from ..protocol.forkchoice import block_work, choose_head, is_heavier
from ..protocol.message import Message, decode_message, validate_message
from ..protocol.transition import build_block, params_of_genesis, validate_block, validate_header_link
from ..types import ZERO_ADDRESS, Address, hexstr
from .body import body_mismatch
from .mempool import Mempool
from .policy import NodePolicy, PolicyRules
from .records import BlockOutcome, VerdictCache, VerifiedMessages, block_size
from .store import BlockStore, MemoryStore

__all__ = ["Node", "BlockOutcome", "VerdictCache", "VALIDATION_MODES", "block_size", "NodePolicy", "PolicyRules",
           "prune_refusal"]

#: full: validate by recomputation (an honest computing node); header: proof of
#: work and links only (a light client that trusts the heaviest chain, and how the
#: simulation runs a Byzantine miner that skips validation).
VALIDATION_MODES = ("full", "header")


def prune_refusal(params) -> Optional[str]:
    """Why a node of the chain with these parameters cannot prune, or None when it can."""
    if params.finality_depth is None:
        return "this chain's genesis fixes no finality_depth: its nodes keep every block body"
    if params.budget is not None:
        return ("a chain with a per-member budget cannot be pruned: a node recounts every "
                "member's spend from the messages when it loads its store")
    return None


class Node:
    """One computing node: mempool, chain, validation, fork choice and mining."""

    def __init__(self, genesis: Block, *, store: Optional[BlockStore] = None, name: str = "",
                 miner: Address = ZERO_ADDRESS, key: Optional[PrivateKey] = None,
                 verdicts: Optional[VerdictCache] = None, check_unseen: bool = False,
                 min_inclusion: float = 0.0, validation: str = "full",
                 keep_bodies: Optional[int] = None, max_orphans: int = 256,
                 max_orphan_bytes: int = 64 << 20, rules: Optional[PolicyRules] = None, prune: bool = False):
        self.params = params_of_genesis(genesis)
        self.genesis = genesis
        self.genesis_hash = genesis.hash
        self.name = name
        self.key = key
        self.miner = key.address if key is not None else miner
        self.verdicts = verdicts
        self.check_unseen = check_unseen
        if not 0.0 <= min_inclusion <= 1.0:
            raise ValueError(f"min_inclusion must be in [0, 1], got {min_inclusion}")
        self.min_inclusion = min_inclusion
        if validation not in VALIDATION_MODES:
            raise ValueError(f"validation must be one of {VALIDATION_MODES}, got {validation!r}")
        self.validation = validation
        self.keep_bodies = keep_bodies
        self.store = store if store is not None else MemoryStore()
        self.mempool = Mempool(max_per_base=self.params.max_messages)
        self.headers: dict[bytes, Header] = {}
        self.work: dict[bytes, int] = {}
        self.rejected: "OrderedDict[bytes, InvalidBlock]" = OrderedDict()
        self.rejected_by_reason: Counter = Counter()
        self.rejected_messages: Counter = Counter()
        self.orphans: "OrderedDict[bytes, Block]" = OrderedDict()
        self.max_orphans = max_orphans
        self.max_orphan_bytes = max_orphan_bytes
        self.orphan_bytes = 0
        self._orphan_size: dict[bytes, int] = {}
        # hashes of messages whose signature and shape were checked (shared through the
        # verdict cache): bounded, and only messages admitted or carried by a valid block
        self._verified = verdicts.messages if verdicts is not None else VerifiedMessages()
        self._verified.limit = max(self._verified.limit, 2 * self.mempool.max_bases * self.params.max_messages)
        # with a per-member budget: block hash -> {identity: (messages, exact epsilon)} on
        # the chain ending at that block, kept for every stored block (bodies may be pruned later)
        self._spend: dict[bytes, dict] = {}
        if hasattr(self.store, "set_limits"):
            self.store.set_limits(max_dim=self.params.dim)
        self._load_or_init()
        self.mempool.set_head(self.head_hash, self.height)
        if prune:
            self._enable_pruning()
        #: what to do with gossiped blocks, messages and sync answers (every driver asks it)
        self.policy = NodePolicy(self, rules if rules is not None else PolicyRules())

    # -- chain state ------------------------------------------------------------------
    def _load_or_init(self) -> None:
        known = list(self.store.entries())
        if not known:
            self.store.add(self.genesis, 0, head=self.genesis_hash)
            known = [(self.genesis.header, 0)]
        if known[0][0].hash != self.genesis_hash:
            raise StoreError(
                f"the store holds the chain with genesis {hexstr(known[0][0].hash)[:14]}, "
                f"not {hexstr(self.genesis_hash)[:14]}"
            )
        for header, _stored_work in known:
            # total work is recomputed from the headers, never taken from the store
            if header.hash == self.genesis_hash:
                work = 0
            elif header.height > 0 and header.parent in self.work:
                work = self.work[header.parent] + block_work(header, self.params)
            else:
                raise StoreError(f"the store holds block {header.height} {hexstr(header.hash)[:14]} "
                                 "without its parent")
            self.headers[header.hash] = header
            self.work[header.hash] = work
            if self.params.budget is not None:
                self._spend[header.hash] = self._spend_after(header)
        head = self.store.head_hash()
        self.head_hash = head if head in self.headers else self.genesis_hash
        best = choose_head((self.work[h], h) for h in self.headers)
        if best != self.head_hash:
            self.head_hash = best
            self.store.set_head(best)

    def _enable_pruning(self) -> None:
        """A pruned node: the store drops message bodies deeper than the genesis's finality depth."""
        why = prune_refusal(self.params)
        if why is not None:
            raise StoreError(why)
        self.store.enable_pruning(self.params.finality_depth)

    def _spend_after(self, header: Header) -> dict:
        if header.height == 0:
            return {}
        block = self.store.get(header.hash)
        if block is None or not block.messages:  # every valid block has a message
            raise StoreError(f"the store lacks the messages of block {header.height} {hexstr(header.hash)[:14]}, "
                             "which this chain's budget rule needs")
        return charge(self._spend[header.parent], block.messages, self.params)

    def spend_at(self, block_hash: bytes) -> dict:
        """Each identity's (messages, exact epsilon) on the chain ending at ``block_hash``
        (empty when the chain has no budget)."""
        if self.params.budget is None:
            return {}
        try:
            return self._spend[block_hash]
        except KeyError:
            raise InvalidBlock("unknown-ancestor", f"block {hexstr(block_hash)[:14]} is not known") from None

    @property
    def head(self) -> Block:
        block = self.store.get(self.head_hash)
        if block is None:
            raise StoreError(f"head block {hexstr(self.head_hash)} is missing from the store")
        return block

    @property
    def height(self) -> int:
        return self.headers[self.head_hash].height

    @property
    def head_work(self) -> int:
        return self.work[self.head_hash]

    def header(self, block_hash: bytes) -> Header:
        try:
            return self.headers[block_hash]
        except KeyError:
            raise InvalidBlock("unknown-ancestor", f"block {hexstr(block_hash)[:14]} is not known") from None

    def block(self, block_hash: bytes) -> Optional[Block]:
        return self.store.get(block_hash)

    def canonical_hashes(self) -> list[bytes]:
        out = []
        h = self.head_hash
        while True:
            out.append(h)
            header = self.headers[h]
            if header.height == 0:
                break
            h = header.parent
        return out[::-1]

    def block_at(self, height: int) -> Optional[Block]:
        """The block at ``height`` on the canonical chain (the head's ancestry), if any."""
        if not 0 <= height <= self.height:
            return None
        h = self.store.canonical_hash(height)
        return None if h is None else self.store.get(h)

    def locator(self, *, dense: int = 10, limit: int = 64) -> list[bytes]:
        """Canonical hashes from the head back to genesis, ``dense`` consecutive
        ones then at doubling gaps (Bitcoin's block locator): a peer finds the
        last block the two chains share in O(log height) hashes."""
        out = []
        height, step = self.height, 1
        while height > 0 and len(out) < limit - 1:
            h = self.store.canonical_hash(height)
            if h is not None:
                out.append(h)
            if len(out) >= dense:
                step *= 2
            height -= step
        out.append(self.genesis_hash)
        return out

    def fork_point(self, locator) -> Optional[int]:
        """Height of the first hash in ``locator`` that is on this node's canonical
        chain (the newest block both chains share); None when none is."""
        for h in locator:
            header = self.headers.get(h)
            if header is not None and header.height <= self.height \
                    and self.store.canonical_hash(header.height) == h:
                return header.height
        return None

    def is_ancestor(self, ancestor: bytes, descendant: bytes) -> bool:
        target = self.headers.get(ancestor)
        if target is None:
            return False
        h = descendant
        while h in self.headers:
            header = self.headers[h]
            if header.height <= target.height:
                return h == ancestor
            h = header.parent
        return False

    # -- messages ---------------------------------------------------------------------
    def on_message(self, msg) -> Message:
        """Validate and admit a holder's message; raises InvalidMessage or DecodeError."""
        try:
            if not isinstance(msg, Message):
                msg = decode_message(msg, max_dim=self.params.dim)
            if msg.hash in self.mempool:
                return msg
            base = self.headers.get(msg.base)
            if base is None:
                raise InvalidMessage("unknown-base", f"message is for block {hexstr(msg.base)[:14]}, unknown here")
            self.mempool.check_height(base.height)  # a base too far from the head: refused unchecked
            if msg.hash in self._verified:
                if msg.round != base.height:
                    raise InvalidMessage("wrong-round",
                                         f"message is for round {msg.round}, its block is at height {base.height}")
            else:
                validate_message(msg, self.params, round=base.height, base=base.hash)
            if self.params.budget is not None:
                over, before, after = over_budget(self._spend[base.hash], msg.identity, msg.round, self.params)
                if over:
                    raise InvalidMessage("over-budget", f"identity {hexstr(msg.identity)} has spent epsilon "
                                         f"{float(before):.6g} on this chain; this message would take it to "
                                         f"{float(after):.6g}, over the budget of {self.params.budget:g}")
            self.mempool.add(msg)
            self._verified.add(msg.hash)  # only once admitted: a refused message leaves no trace
            return msg
        except (InvalidMessage, DecodeError) as exc:
            self.rejected_messages[getattr(exc, "reason", "malformed")] += 1
            raise

    # -- blocks -----------------------------------------------------------------------
    def _reject(self, block: Block, exc: InvalidBlock, *, final: bool = True) -> InvalidBlock:
        """Count a refusal; remember it when it is final (a property of the block the
        header hash names, not of one copy's body or of this node's mempool)."""
        if final:
            self.rejected[block.hash] = exc
            while len(self.rejected) > 4096:
                self.rejected.popitem(last=False)
        self.rejected_by_reason[exc.reason] += 1
        return exc

    def on_block(self, block, *, check_unseen: Optional[bool] = None) -> BlockOutcome:
        """Validate a block by recomputation and apply the fork choice.

        Returns the outcome for a valid, known or orphan block; raises
        InvalidBlock (counted in ``rejected_by_reason``) or DecodeError for a bad
        one, leaving the store as it was. ``check_unseen`` overrides the node's
        policy for this call: a driver that fetched a block from history (a node
        syncing after a restart never saw those messages broadcast) turns it off.
        """
        unseen = self.check_unseen if check_unseen is None else check_unseen
        if not isinstance(block, Block):
            try:
                block = decode_block(block, max_dim=self.params.dim, max_messages=self.params.max_messages)
            except DecodeError:
                self.rejected_by_reason["malformed"] += 1
                raise
        h = block.hash
        if h in self.headers:
            return BlockOutcome("known", h)
        if h in self.rejected:
            self.rejected_by_reason[self.rejected[h].reason] += 1
            raise self.rejected[h]
        header = block.header
        if header.genesis != self.genesis_hash:
            raise self._reject(block, InvalidBlock(
                "wrong-chain", f"block belongs to the chain with genesis {hexstr(header.genesis)[:14]}, "
                f"this node follows {hexstr(self.genesis_hash)[:14]}", height=header.height))
        if header.parent in self.rejected:
            raise self._reject(block, InvalidBlock(
                "invalid-ancestor", f"parent {hexstr(header.parent)[:14]} was rejected", height=header.height))
        parent = self.store.get(header.parent) if header.parent in self.headers else None
        if parent is None and header.parent in self.headers:
            raise self._reject(block, self._beyond_kept_depth(block), final=False)
        if parent is None:
            if h not in self.orphans:  # one kept already is the block its header commits to
                if self.validation != "none":
                    self._check_orphan(block)
                self._add_orphan(block)
            return BlockOutcome("orphan", h, missing=header.parent)
        head_before = self.head_hash
        self._validate(block, parent, unseen)
        outcome = self._accept(block)
        connected, waiting = self._connect_orphans(h, unseen)
        if connected or waiting:
            moved = self.head_hash != head_before
            reorg = moved and not self.is_ancestor(head_before, self.head_hash)
            outcome = BlockOutcome(outcome.status, h, moved, reorg, None, tuple(connected), tuple(waiting))
        return outcome

    def _beyond_kept_depth(self, block: Block) -> InvalidBlock:
        """The refusal of a block whose parent this node knows by header only (its store
        dropped the parent's model, deeper than ``keep_bodies``): it cannot be validated
        here. Not final: a node that kept the parent may validate it."""
        parent = self.headers[block.parent]
        return InvalidBlock("beyond-kept-depth",
                            f"parent {hexstr(parent.hash)[:14]} at height {parent.height} is held by header only "
                            f"(this node holds the blocks from height {self.store.models_below} on whole, its "
                            f"head is at {self.height}): the block cannot be validated here", height=block.height)

    def _check_orphan(self, block: Block) -> None:
        """What can be checked of a block whose parent is unknown: its seal (the work
        it claims is really done, within the chain's difficulty range), its
        parameters, and that its body is the one its header commits to. Only then
        may it take room among the orphans."""
        header = block.header
        p = self.params
        try:
            if header.height == 0:
                raise InvalidBlock("bad-height", "a block of height 0 that is not this chain's genesis", height=0)
            if header.params_hash != self.genesis.header.params_hash:
                raise InvalidBlock("wrong-params", "block commits to other protocol parameters",
                                   height=header.height)
            if p.consensus == "pow":
                lo, hi = difficulty_range(p)
                if not lo <= header.difficulty <= hi:
                    raise InvalidBlock("bad-difficulty", f"difficulty {header.difficulty} is outside the chain's "
                                       f"range {lo}..{hi}", height=header.height)
                check_pow(header)
            else:
                check_authority(header, p)
        except InvalidBlock as exc:
            # properties of the header, but judged without the parent: not remembered
            raise self._reject(block, exc, final=False) from None
        bad = self._body_mismatch(block)
        if bad is not None:
            raise self._reject(block, bad, final=False)

    def _body_mismatch(self, block: Block):
        """How the body differs from its header (None: it matches), shared through the
        verdict cache between nodes handed the same block object."""
        if self.verdicts is not None:
            return self.verdicts.body_mismatch(block, self.params.dim)
        return body_mismatch(block, self.params.dim)

    def _add_orphan(self, block: Block) -> None:
        """Keep an orphan; the oldest go first once the pool passes its count or bytes."""
        h = block.hash
        if h in self.orphans:
            self._drop_orphan(h)
        size = block_size(block)
        self.orphans[h] = block
        self._orphan_size[h] = size
        self.orphan_bytes += size
        while len(self.orphans) > 1 and (len(self.orphans) > self.max_orphans
                                         or self.orphan_bytes > self.max_orphan_bytes):
            self._drop_orphan(next(iter(self.orphans)))
        if self.orphan_bytes > self.max_orphan_bytes:  # one block larger than the whole pool
            self._drop_orphan(h)

    def _drop_orphan(self, h: bytes) -> None:
        if self.orphans.pop(h, None) is not None:
            self.orphan_bytes -= self._orphan_size.pop(h)

    def drop_orphan(self, h: bytes) -> None:
        """Forget an orphan (a driver's pool policy, e.g. one peer's share)."""
        self._drop_orphan(h)

    @property
    def orphan_sizes(self) -> dict:
        """Encoded bytes of each orphan kept (read-only view for drivers)."""
        return self._orphan_size

    def _validate(self, block: Block, parent: Block, check_unseen: bool) -> None:
        if self.validation != "none":
            # A body that is not the one its header commits to is a fault of this copy
            # (and of whoever sent it), not of the block: never remembered, so the real
            # block is accepted when it comes, and never cached as a verdict.
            bad = self._body_mismatch(block)
            if bad is not None:
                raise self._reject(block, bad, final=False)
        if self.validation != "full":
            if self.validation == "header":
                try:
                    validate_header_link(block.header, parent.header, self.params, genesis_hash=self.genesis_hash,
                                         ancestor=self.header)
                except InvalidBlock as exc:
                    raise self._reject(block, exc) from None
            return
        if self.min_inclusion > 0 or check_unseen:
            # the header first: a block refused (non-finally) by the policies below may be
            # held by a driver until its messages come, so it must carry its work
            try:
                validate_header_link(block.header, parent.header, self.params, genesis_hash=self.genesis_hash,
                                     ancestor=self.header)
            except InvalidBlock as exc:
                raise self._reject(block, exc) from None
        if self.min_inclusion > 0:
            had = self.mempool.for_base(parent.hash)
            if had:
                included = {m.hash for m in block.messages}
                kept = sum(1 for m in had if m.hash in included)
                if kept < self.min_inclusion * len(had):
                    raise self._reject(block, InvalidBlock(
                        "omitted-messages",
                        f"block includes {kept} of the {len(had)} messages this node holds for its parent "
                        f"(policy: at least {self.min_inclusion:.0%})", height=block.height), final=False)
        if check_unseen:
            m = self.mempool.first_unseen(block)
            if m is not None:
                raise self._reject(block, InvalidBlock(
                    "unseen-message",
                    f"message {hexstr(m.hash)[:14]} from {hexstr(m.identity)} was never broadcast to this node",
                    height=block.height), final=False)
        cache = self.verdicts
        if cache is not None and block.hash in cache.blocks:
            cache.hits += 1
            verdict = cache.blocks[block.hash]
            if verdict is not None:
                raise self._reject(block, verdict)
            return
        try:
            self._verified |= validate_block(block, parent, self.params, genesis_hash=self.genesis_hash,
                           ancestor=self.header, verified=self._verified,
                           spent=self._spend.get(parent.hash) if self.params.budget is not None else None).checked
        except InvalidBlock as exc:
            if cache is not None:
                cache.blocks[block.hash] = exc
            raise self._reject(block, exc) from None
        if cache is not None:
            cache.blocks[block.hash] = None

    def _accept(self, block: Block) -> BlockOutcome:
        h = block.hash
        work = self.work[block.parent] + block_work(block.header, self.params)
        old_head = self.head_hash
        heavier = is_heavier(work, h, self.work[old_head], old_head)
        self.store.add(block, work, head=h if heavier else None)
        self.headers[h] = block.header
        self.work[h] = work
        if self.params.budget is not None:
            self._spend[h] = charge(self._spend[block.parent], block.messages, self.params)
        self.mempool.mark_block_seen(block)
        reorg = False
        if heavier:
            self.head_hash = h
            self.mempool.set_head(h, block.height)
            reorg = block.parent != old_head
            if self.keep_bodies is not None and isinstance(self.store, MemoryStore):
                self.store.prune_bodies(block.height - self.keep_bodies)
                # the models one block deeper than the bodies: every block held with its
                # messages can still be replayed on its parent (a fork, ``replay_last``)
                self.store.prune_models(block.height - self.keep_bodies - 1)
        return BlockOutcome("accepted", h, new_head=heavier, reorg=reorg)

    def _connect_orphans(self, parent_hash: bytes, check_unseen: bool) -> tuple:
        """Accept the orphans that descend from ``parent_hash``; also return those refused
        only for messages this node never saw (a driver may hold them for their messages,
        which could not be admitted before their block's parent was known)."""
        connected, waiting = [], []
        pending = [parent_hash]
        while pending:
            p = pending.pop()
            for oh, orphan in list(self.orphans.items()):
                if orphan.parent != p:
                    continue
                self._drop_orphan(oh)
                parent = self.store.get(p)
                try:
                    if parent is None:
                        raise self._reject(orphan, self._beyond_kept_depth(orphan), final=False)
                    self._validate(orphan, parent, check_unseen)
                except InvalidBlock as exc:
                    if exc.reason == "unseen-message":
                        waiting.append(orphan)
                    continue
                self._accept(orphan)
                connected.append(oh)
                pending.append(oh)
        return connected, waiting

    # -- mining -----------------------------------------------------------------------
    def next_difficulty(self, parent: Optional[Header] = None) -> int:
        parent = parent or self.headers[self.head_hash]
        if self.params.consensus == "pow":
            return expected_difficulty(self.params, parent, self.header)
        return authority_weight(self.params, self.miner, parent.height + 1)

    def template(self, *, timestamp: int, messages=None, parent: Optional[Block] = None) -> Block:
        """An unsealed block on the head (or ``parent``) from the mempool's messages."""
        parent = parent or self.head
        if messages is None:
            messages = self.mempool.for_base(parent.hash)
        if len(messages) < self.params.min_messages:
            raise InvalidBlock("too-few-messages",
                               f"{len(messages)} messages in the mempool, a block needs {self.params.min_messages}")
        return build_block(parent, messages, self.params, genesis_hash=self.genesis_hash, miner=self.miner,
                           timestamp=timestamp, difficulty=self.next_difficulty(parent.header))

    def seal(self, block: Block, *, start: int = 0, max_tries: Optional[int] = None) -> Optional[Block]:
        """Solve the proof of work (or sign, under proof of authority)."""
        if self.params.consensus == "poa":
            if self.key is None:
                raise StoreError("this node has no authority key to seal with")
            header = seal_authority(block.header, self.key)
        else:
            header = solve_pow(block.header, start=start, max_tries=max_tries)
            if header is None:
                return None
        return Block(header, block.messages, block.selection, block.model, block.params)
