"""Blocks (paper Eq. 18 plus a header) and their canonical encoding.

``B_{t+1} = (w_{t+1}, [M_1 .. M_K])``; the header links it to its parent and
commits to every part of the body, so changing any byte of a stored block changes
its hash or breaks a commitment:

* ``messages_root``: Merkle root of the message hashes in canonical order;
* ``selection_hash``: keccak-256 of the selected indices (who shaped the update);
* ``model_hash``: keccak-256 of the model's float64 little-endian bytes;
* ``params_hash``: keccak-256 of the chain's canonical parameters (every block);
* ``genesis``: the genesis block's hash (zero in the genesis block itself).

The proof of work covers the ``seal hash`` (the header without its seal), the way
Ethereum's seal hash leaves the nonce out; ``seal`` is the 8-byte nonce under
proof of work and a 65-byte signature under proof of authority.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np

from ..crypto import keccak256
from ..errors import DecodeError
from ..types import ZERO_ADDRESS, ZERO_HASH, Address, Hash32, hexstr
from .codec import BLOCK_VERSION, HEADER_MAX, MAX_PARAMS, MAX_SEAL, Reader, Writer, message_size
from .message import decode_message

__all__ = [
    "Header",
    "Block",
    "merkle_root",
    "selection_hash",
    "model_hash",
    "decode_block",
    "decode_header",
    "encoded_size",
    "BLOCK_VERSION",
]


def merkle_root(hashes) -> Hash32:
    """Binary keccak tree over domain-separated leaves; an odd node is carried up.
    The leaf count is mixed into the root so that no two lists share a root.

    A block's root is asked for several times (the miner builds it, every node's
    body check and the transition's validation recompute it): the last few roots
    are remembered, keyed by the exact list of hashes."""
    return _merkle_root(tuple(bytes(h) for h in hashes))


@lru_cache(maxsize=16)
def _merkle_root(hashes: tuple) -> Hash32:
    level = [keccak256(b"\x00" + h) for h in hashes]
    while len(level) > 1:
        nxt = [keccak256(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    top = level[0] if level else ZERO_HASH
    return keccak256(b"\x02" + len(hashes).to_bytes(4, "little") + top)


def selection_hash(selection) -> Hash32:
    return keccak256(Writer().array(np.asarray(selection, dtype=np.uint32), "uint32").bytes())


def model_hash(model: np.ndarray) -> Hash32:
    return keccak256(np.ascontiguousarray(model, dtype="<f8").tobytes())


@dataclass(frozen=True)
class Header:
    height: int
    parent: Hash32
    genesis: Hash32
    timestamp: int  # milliseconds since the epoch (a logical clock in simulations)
    params_hash: Hash32
    messages_root: Hash32
    selection_hash: Hash32
    model_hash: Hash32
    miner: Address
    difficulty: int
    seal: bytes = b""
    version: int = BLOCK_VERSION
    def unsealed_bytes(self) -> bytes:
        return (
            Writer()
            .u8(self.version)
            .u64(self.height)
            .fixed(self.parent, 32)
            .fixed(self.genesis, 32)
            .u64(self.timestamp)
            .fixed(self.params_hash, 32)
            .fixed(self.messages_root, 32)
            .fixed(self.selection_hash, 32)
            .fixed(self.model_hash, 32)
            .fixed(self.miner, 20)
            .u8(self.difficulty)
            .bytes()
        )

    # Derived values are cached properties: pure functions of the frozen fields.
    @cached_property
    def encoding(self) -> bytes:
        return self.unsealed_bytes() + Writer().var(self.seal).bytes()

    def encode(self) -> bytes:
        return self.encoding

    @cached_property
    def seal_hash(self) -> Hash32:
        return keccak256(self.unsealed_bytes())

    @cached_property
    def hash(self) -> Hash32:
        return keccak256(self.encoding)

    def with_seal(self, seal: bytes) -> "Header":
        return Header(self.height, self.parent, self.genesis, self.timestamp, self.params_hash,
                      self.messages_root, self.selection_hash, self.model_hash, self.miner,
                      self.difficulty, bytes(seal), self.version)


def _read_header(r: Reader) -> Header:
    version = r.u8()
    if version != BLOCK_VERSION:
        raise DecodeError(f"header: unknown version {version} (this node speaks {BLOCK_VERSION})")
    return Header(
        height=r.u64(),
        parent=Hash32(r.fixed(32)),
        genesis=Hash32(r.fixed(32)),
        timestamp=r.u64(),
        params_hash=Hash32(r.fixed(32)),
        messages_root=Hash32(r.fixed(32)),
        selection_hash=Hash32(r.fixed(32)),
        model_hash=Hash32(r.fixed(32)),
        miner=Address(r.fixed(20)),
        difficulty=r.u8(),
        seal=r.var(MAX_SEAL, "seal"),
        version=version,
    )


def decode_header(raw: bytes) -> Header:
    r = Reader(raw, "header")
    header = _read_header(r)
    r.finish()
    return header


@dataclass(frozen=True, eq=False)
class Block:
    header: Header
    messages: tuple = ()  # Message, in canonical order (ascending message hash)
    selection: tuple = ()  # ascending indices into messages
    model: np.ndarray = field(default_factory=lambda: np.zeros(0))  # float64, read-only
    params: bytes = b""  # canonical protocol parameters; genesis only

    def __post_init__(self) -> None:
        model = np.ascontiguousarray(self.model, dtype=np.float64)
        model.setflags(write=False)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "selection", tuple(int(i) for i in self.selection))
        object.__setattr__(self, "messages", tuple(self.messages))

    @property
    def hash(self) -> Hash32:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def parent(self) -> Hash32:
        return self.header.parent

    def body_bytes(self) -> bytes:
        w = Writer().u32(len(self.messages))
        for m in self.messages:
            w.var(m.encode())
        w.array(np.asarray(self.selection, dtype=np.uint32), "uint32")
        w.array(self.model, "float64")
        w.var(self.params)
        return w.bytes()

    def encode(self) -> bytes:
        return Writer().var(self.header.encode()).raw(self.body_bytes()).bytes()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Block) and self.encode() == other.encode()

    def __hash__(self) -> int:
        return hash(self.hash)

    def __repr__(self) -> str:
        return (f"Block(height={self.height}, hash={hexstr(self.hash)[:14]}, "
                f"messages={len(self.messages)}, selected={len(self.selection)})")


def encoded_size(block: Block) -> int:
    """``len(block.encode())`` from the parts' sizes, without encoding the body."""
    size = 4 + len(block.header.encode())  # the header, length-prefixed
    size += 4 + sum(4 + len(m.encode()) for m in block.messages)  # the encodings are kept: no work
    size += 4 + 4 * len(block.selection) + 4 + 8 * block.model.size + 4 + len(block.params)
    return size


def decode_body(r: Reader, header: Header, *, max_dim: int, max_messages: int) -> Block:
    n = r.u32()
    if n > max_messages:
        raise DecodeError(f"block: {n} messages exceed the limit of {max_messages}")
    per_message = message_size(max_dim)
    messages = []
    for i in range(n):
        raw = r.var(per_message, f"message {i}")
        try:
            messages.append(decode_message(raw, max_dim=max_dim))
        except DecodeError as exc:
            raise DecodeError(f"block: message {i}: {exc}") from None
    selection = r.array("uint32", max_messages, "selection")
    model = r.array("float64", max_dim, "model")
    params = r.var(MAX_PARAMS, "params")
    return Block(header, tuple(messages), tuple(int(i) for i in selection), model, params)


def decode_block(raw: bytes, *, max_dim: int, max_messages: int) -> Block:
    """Strictly decode a block; DecodeError names the first thing that is wrong.

    Only well-formedness is checked here; the consensus rules are in
    :func:`learningchain.protocol.transition.validate_block`.
    """
    r = Reader(raw, "block")
    header_raw = r.var(HEADER_MAX, "header")
    header = decode_header(header_raw)
    block = decode_body(r, header, max_dim=max_dim, max_messages=max_messages)
    r.finish()
    return block


def genesis_header(*, params_hash: bytes, model: np.ndarray, timestamp: int, difficulty: int) -> Header:
    return Header(
        height=0,
        parent=ZERO_HASH,
        genesis=ZERO_HASH,
        timestamp=timestamp,
        params_hash=Hash32(params_hash),
        messages_root=merkle_root([]),
        selection_hash=selection_hash(()),
        model_hash=model_hash(model),
        miner=ZERO_ADDRESS,
        difficulty=difficulty,
        seal=b"",
    )
