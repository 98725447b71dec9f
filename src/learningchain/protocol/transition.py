"""The state transition: validate a block by recomputing it, and build one.

A block is valid when, given its parent, every commitment in its header is what
the rules give: the proof of work (or authority seal), the links, the messages
(each well-formed, signed, for the parent's round and model) and their Merkle
root, the selection the chain's aggregation rule makes, and the model it
produces (paper Section V-B: "it checks the correctness of the global model
update by repeating the predictive model update process"). The first mismatch
raises :class:`InvalidBlock` with a short reason tag; nothing is mutated.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Collection, Iterable, Mapping, Optional

import numpy as np

from ..crypto import keccak256
from ..errors import InvalidBlock, InvalidMessage
from ..types import Address, Hash32, hexstr
from .aggregation import Aggregate, Batch, aggregate
from .block import Block, Header, genesis_header, merkle_root, model_hash, selection_hash
from .budget import over_budget
from .consensus import check_authority, check_pow, check_signer_recency, expected_difficulty
from .message import Message, validate_message
from .params import ProtocolParams

__all__ = [
    "make_genesis",
    "apply_update",
    "make_batch",
    "canonical_messages",
    "build_block",
    "validate_header_link",
    "validate_block",
    "Validated",
    "params_of_genesis",
]


@dataclass(frozen=True)
class Validated:
    """What :func:`validate_block` established about a valid block."""

    aggregate: Aggregate  # the recomputed selection and gradient
    #: hashes of the messages whose shape, norm and signature this call checked
    #: (those not already in the caller's ``verified``)
    checked: frozenset

    @property
    def selection(self) -> tuple:
        return self.aggregate.selection

    @property
    def gradient(self) -> np.ndarray:
        return self.aggregate.gradient


def make_genesis(params: ProtocolParams, model: np.ndarray, *, timestamp: int = 0) -> Block:
    """The genesis block: height 0, the parameters and the initial model w_0."""
    model = np.ascontiguousarray(model, dtype=np.float64)
    if model.shape != (params.dim,):
        raise ValueError(f"initial model has shape {model.shape}, params say ({params.dim},)")
    raw = params.encode()
    header = genesis_header(params_hash=keccak256(raw), model=model, timestamp=timestamp,
                            difficulty=params.difficulty if params.consensus == "pow" else 0)
    return Block(header, (), (), model, raw)


def params_of_genesis(genesis: Block) -> ProtocolParams:
    if genesis.height != 0:
        raise InvalidBlock("not-genesis", f"block at height {genesis.height} is not a genesis block")
    if keccak256(genesis.params) != genesis.header.params_hash:
        raise InvalidBlock("bad-params-hash", "genesis parameters do not match the header", height=0)
    params = ProtocolParams.decode(genesis.params)
    if model_hash(genesis.model) != genesis.header.model_hash or genesis.model.shape != (params.dim,):
        raise InvalidBlock("bad-model", "genesis model does not match its header or the model size", height=0)
    return params


def apply_update(model: np.ndarray, gradient: np.ndarray, params: ProtocolParams) -> np.ndarray:
    """Eq. 17 as descent, with Eq. 7's regularisation: w' = w - lr * (g + lam * w).

    Written as separate elementwise IEEE operations so every machine rounds alike.
    """
    decay = params.lam * model
    step = gradient + decay
    return model - params.lr * step


def canonical_messages(messages: Iterable[Message]) -> tuple:
    """Messages in canonical block order: ascending message hash, duplicates removed."""
    unique = {m.hash: m for m in messages}
    return tuple(unique[h] for h in sorted(unique))


def make_batch(messages, params: ProtocolParams) -> Batch:
    q = np.stack([m.q for m in messages]) if messages else np.zeros((0, params.dim), np.int32)
    norms = np.array([m.norm for m in messages], dtype=np.float64)
    # Validation has checked that every message is for the parent's round.
    round_ = int(messages[0].round) if messages else 0
    # The exact ||q_k||^2, a cached property of each message (validation computed it).
    sq = np.array([m.sq_norm for m in messages], dtype=np.float64) if messages else None
    return Batch(q, norms, tuple(m.hash for m in messages), params.quant_bits, round_, sq)


#: The last few results of :func:`_recompute`, keyed by what determines them: the parent
#: block (its hash commits to its model), the messages (each hash commits to every byte)
#: and the parameters. A miner's node validating the block it built, or the honest nodes of
#: one simulation validating one block, get the result of the same pure function instead
#: of computing it again; the block's claims are still checked against it.
#:
#: A result is served only for the inputs it was computed from: the parent's model bit
#: for bit (a Block object whose model is not the one its hash commits to must not get,
#: nor leave behind, the result of the real parent's), and the parameters' canonical
#: encoding, read again at every hit (parameters may compare equal and still differ, as
#: 0.0 and -0.0 do, and the same object's option dicts can be changed in place). The
#: entries hold the parent's model, the gradient and the new model: four entries at most.
_RECOMPUTED: "OrderedDict[tuple, tuple]" = OrderedDict()
_RECOMPUTED_SIZE = 4
_RECOMPUTED_LOCK = threading.Lock()


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two float64 models are equal bit for bit (-0.0 is not 0.0), without copies."""
    if a is b:
        return True
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(np.array_equal(np.ascontiguousarray(a).view(np.uint64), np.ascontiguousarray(b).view(np.uint64)))


def _recompute(parent: Block, messages, params: ProtocolParams) -> tuple[Aggregate, np.ndarray]:
    key = (parent.hash, tuple(m.hash for m in messages))
    encoding = params.encode()
    with _RECOMPUTED_LOCK:
        hit = _RECOMPUTED.get(key)
    if hit is not None:
        hit_encoding, hit_parent_model, agg, model = hit
        if hit_encoding == encoding and _same_bits(hit_parent_model, parent.model):
            with _RECOMPUTED_LOCK:
                if key in _RECOMPUTED:
                    _RECOMPUTED.move_to_end(key)
            return agg, model
    agg = aggregate(make_batch(messages, params), params)
    model = apply_update(parent.model, agg.gradient, params)
    agg.gradient.setflags(write=False)  # shared by every caller: nobody may change it in place
    model.setflags(write=False)
    with _RECOMPUTED_LOCK:
        _RECOMPUTED[key] = (encoding, parent.model, agg, model)
        _RECOMPUTED.move_to_end(key)
        while len(_RECOMPUTED) > _RECOMPUTED_SIZE:
            _RECOMPUTED.popitem(last=False)
    return agg, model


def build_block(parent: Block, messages, params: ProtocolParams, *, genesis_hash: bytes,
                miner: Address, timestamp: int, difficulty: int) -> Block:
    """An unsealed block on ``parent``: the rule applied to ``messages`` (any order)."""
    ordered = canonical_messages(messages)
    agg, model = _recompute(parent, ordered, params)
    header = Header(
        height=parent.height + 1,
        parent=parent.hash,
        genesis=Hash32(genesis_hash),
        timestamp=max(int(timestamp), parent.header.timestamp),
        params_hash=parent.header.params_hash,
        messages_root=merkle_root([m.hash for m in ordered]),
        selection_hash=selection_hash(agg.selection),
        model_hash=model_hash(model),
        miner=miner,
        difficulty=difficulty,
    )
    return Block(header, ordered, agg.selection, model)


def validate_header_link(header: Header, parent: Header, params: ProtocolParams, *, genesis_hash: bytes,
                         ancestor: Callable[[bytes], Header]) -> None:
    """Checks that need only headers: chain, link, height, time, difficulty, seal."""
    h = header.height
    if header.genesis != genesis_hash:
        raise InvalidBlock("wrong-chain",
                           f"block belongs to the chain with genesis {hexstr(header.genesis)[:14]}, "
                           f"this node follows {hexstr(genesis_hash)[:14]}", height=h)
    if header.params_hash != parent.params_hash:
        raise InvalidBlock("wrong-params", "block commits to other protocol parameters", height=h)
    if header.parent != parent.hash:
        raise InvalidBlock("bad-parent", f"parent {hexstr(header.parent)[:14]} is not {hexstr(parent.hash)[:14]}",
                           height=h)
    if h != parent.height + 1:
        raise InvalidBlock("bad-height", f"height {h} does not follow parent height {parent.height}", height=h)
    if header.timestamp < parent.timestamp:
        raise InvalidBlock("bad-timestamp", f"timestamp {header.timestamp} is before the parent's {parent.timestamp}",
                           height=h)
    if params.consensus == "pow":
        want = expected_difficulty(params, parent, ancestor)
        if header.difficulty != want:
            raise InvalidBlock("bad-difficulty", f"difficulty {header.difficulty}, the rule requires {want}", height=h)
        check_pow(header)
    else:
        check_authority(header, params)
        check_signer_recency(header, parent, params, ancestor)


def validate_block(block: Block, parent: Block, params: ProtocolParams, *, genesis_hash: bytes,
                   ancestor: Callable[[bytes], Header], verified: Optional[Collection] = None,
                   spent: Optional[Mapping] = None) -> Validated:
    """Validate ``block`` on ``parent`` by recomputation (paper Section V-B).

    Returns the recomputed aggregate and the hashes of the messages this call
    checked. ``verified``, when given, holds hashes of messages whose signature
    and shape the caller has already checked (its mempool); they are not checked
    again (the hash covers every byte, so this is safe). ``verified`` is only
    read: the caller adds ``result.checked`` to it if it wants to remember them.
    ``spent``: on a chain with a per-member budget, each identity's spend on the
    chain ending at ``parent`` (``budget.charge`` over its blocks); required there.
    """
    header = block.header
    h = header.height
    if params.budget is not None and spent is None:
        raise ValueError("this chain has a per-member budget: validate_block needs the parent chain's spend")
    validate_header_link(header, parent.header, params, genesis_hash=genesis_hash, ancestor=ancestor)
    if block.params:
        raise InvalidBlock("unexpected-params", "only the genesis block carries parameters", height=h)
    n = len(block.messages)
    if n < params.min_messages:
        raise InvalidBlock("too-few-messages", f"{n} messages, the chain requires at least {params.min_messages}",
                           height=h)
    if n > params.max_messages:
        raise InvalidBlock("too-many-messages", f"{n} messages, the chain allows at most {params.max_messages}",
                           height=h)
    hashes = [m.hash for m in block.messages]
    for i in range(1, n):
        if not hashes[i - 1] < hashes[i]:
            raise InvalidBlock("non-canonical-order",
                               f"message {i} is out of canonical order or a duplicate", height=h)
    if merkle_root(hashes) != header.messages_root:
        raise InvalidBlock("bad-messages-root", "messages do not match the header's messages root", height=h)
    if selection_hash(block.selection) != header.selection_hash:
        raise InvalidBlock("bad-selection-hash", "selection does not match the header", height=h)
    if block.model.shape != (params.dim,) or model_hash(block.model) != header.model_hash:
        raise InvalidBlock("bad-model-hash", "model does not match the header's model hash", height=h)
    identities = set()
    checked = set()
    for i, m in enumerate(block.messages):
        if verified is None or m.hash not in verified:
            try:
                validate_message(m, params, round=parent.height, base=parent.hash)
            except InvalidMessage as exc:
                raise InvalidBlock("bad-message", f"message {i} ({hexstr(m.hash)[:14]}): {exc}", height=h) from None
            checked.add(m.hash)
        elif m.round != parent.height or m.base != parent.hash:
            raise InvalidBlock("bad-message", f"message {i} is for another round or block", height=h)
        if m.identity in identities:
            raise InvalidBlock("duplicate-identity",
                               f"pseudo-identity {hexstr(m.identity)} appears twice", height=h)
        identities.add(m.identity)
        if spent is not None and params.budget is not None:
            over, before, after = over_budget(spent, m.identity, m.round, params)
            if over:
                raise InvalidBlock("over-budget",
                                   f"message {i} from {hexstr(m.identity)} would spend epsilon {float(after):.6g} "
                                   f"on this chain (spent {float(before):.6g}), over the budget of "
                                   f"{params.budget:g}", height=h)
    agg, model = _recompute(parent, block.messages, params)
    if tuple(agg.selection) != tuple(block.selection):
        raise InvalidBlock("bad-selection",
                           f"block selects {list(block.selection)[:8]}..., the rule selects {list(agg.selection)[:8]}...",
                           height=h)
    if not np.all(np.isfinite(model)):
        raise InvalidBlock("non-finite-model", "the update overflows to a non-finite model", height=h)
    if model.tobytes() != block.model.tobytes():
        diff = float(np.max(np.abs(model - block.model)))
        raise InvalidBlock("bad-model", f"model differs from the recomputed update (max abs diff {diff:.3g})",
                           height=h)
    return Validated(agg, frozenset(checked))
