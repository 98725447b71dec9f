"""Holders' messages (paper Eq. 13): M = (pseudo-identity, unit gradient, norm, t).

Besides the paper's fields a message names the block whose model the gradient was
computed at (``base``), so a message cannot be replayed on another fork or another
chain, and carries a recoverable secp256k1 signature by its pseudo-identity.

Canonical encoding (all little-endian)::

    u8 version | 20 identity | u64 round | 32 base | f64 norm | u32 d | d x i32 q | 65 signature

Version 1 carries int32 entries; version 2 (a compact message, for a chain whose
genesis sets ``message_bits`` = 16) carries ``d x i16 q`` and is otherwise the same.

The signature covers the signing digest, keccak-256 of a domain tag and
everything before the signature. The message id (its place in a block's
canonical order) is keccak-256 of another tag, the digest and the signature, so
it commits to every byte of the encoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..crypto import PrivateKey, keccak256, keccak256_of, recover_address
from ..errors import DecodeError, InvalidMessage
from ..types import Address, Hash32, hexstr
from .codec import (COMPACT_MESSAGE_VERSION, MESSAGE_FIXED_SIZE, MESSAGE_VERSION, SIGNATURE_SIZE, Reader, Writer,
                    message_size)
from .quantize import check_unit, squared_norm

__all__ = ["Message", "sign_message", "decode_message", "validate_message", "message_id_of", "MESSAGE_VERSION"]

_DOMAIN = b"\x19LearningChain message v1\n"
_ID_TAG = b"\x19LearningChain message id\n"


@dataclass(frozen=True, eq=False)
class Message:
    """One holder's message; immutable. Derived values (digest, id, ``||q||^2``)
    are cached properties: pure functions of the fields, computed at most once.

    A message holds one copy of its gradient: the canonical encoding, built (or
    received) once, and ``q`` a read-only little-endian int32 view into it (at
    byte offset ``_Q_OFFSET``, so not necessarily 4-byte aligned; numpy reads it
    as any array). Before, it kept the array and the encoding apart, twice the
    memory for the same bytes."""

    identity: Address
    round: int
    base: Hash32
    norm: float
    q: np.ndarray  # int32 (int16 in a compact message), read-only
    signature: bytes

    def __post_init__(self) -> None:
        q = np.ascontiguousarray(self.q, dtype=np.int16 if np.asarray(self.q).dtype == np.int16 else np.int32)
        if q.ndim != 1:
            raise ValueError(f"a message's gradient is a 1-D array, got shape {q.shape}")
        encoding = _encode_body(self.identity, self.round, self.base, self.norm, q) + bytes(self.signature)
        object.__setattr__(self, "q", _q_view(encoding, q.shape[0]))
        self.__dict__["encoding"] = encoding

    # -- encoding ----------------------------------------------------------------
    def body_bytes(self) -> bytes:
        return _encode_body(self.identity, self.round, self.base, self.norm, self.q)

    @cached_property
    def encoding(self) -> bytes:
        """The canonical bytes: the body, then the signature."""
        return self.body_bytes() + self.signature

    def encode(self) -> bytes:
        return self.encoding

    @cached_property
    def hash(self) -> Hash32:
        """The message id: keccak-256 of a tag, the signing digest and the signature.

        The digest already commits to every byte of the body, so the id commits
        to the whole encoding without hashing a large gradient twice.
        """
        return keccak256(_ID_TAG + self.signing_digest + self.signature)

    @cached_property
    def signing_digest(self) -> Hash32:
        return keccak256_of(_DOMAIN, memoryview(self.encoding)[:-SIGNATURE_SIZE])

    @cached_property
    def sq_norm(self) -> int:
        """Exact ``||q||^2`` (the unit check and the aggregation rules both need it)."""
        return squared_norm(self.q)

    @property
    def dim(self) -> int:
        return int(self.q.shape[0])

    @property
    def width(self) -> int:
        """Bits of each gradient entry: 32, or 16 in a compact message."""
        return 8 * self.q.dtype.itemsize

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and self.encode() == other.encode()

    def __hash__(self) -> int:
        return hash(self.hash)

    def __repr__(self) -> str:
        return (f"Message(id={hexstr(self.hash)[:12]}, identity={hexstr(self.identity)}, "
                f"round={self.round}, d={self.dim}, norm={self.norm:.6g})")


#: where the gradient's entries start in the encoding (after version, identity, round, base, norm, d)
_Q_OFFSET = 1 + 20 + 8 + 32 + 8 + 4
_NATIVE_LE = np.dtype("<i4") == np.dtype(np.int32)
#: a version's gradient entries: (little-endian dtype, native dtype)
_ENTRIES = {MESSAGE_VERSION: (np.dtype("<i4"), np.dtype(np.int32)),
            COMPACT_MESSAGE_VERSION: (np.dtype("<i2"), np.dtype(np.int16))}


def _q_view(encoding: bytes, dim: int) -> np.ndarray:
    """The gradient as a read-only view into ``encoding``, int32 or int16 as its version
    byte says (a copy on a big-endian host)."""
    little, native = _ENTRIES[encoding[0]]
    q = np.frombuffer(encoding, dtype=little, count=dim, offset=_Q_OFFSET)
    return q if _NATIVE_LE else q.astype(native)


def _adopt(identity: Address, round_: int, base: Hash32, norm: float, signature: bytes, encoding: bytes,
           dim: int, digest: Hash32 | None = None) -> Message:
    """A message over ``encoding``, which the caller has built from (or checked against)
    the fields: no second copy of the gradient is made."""
    msg = object.__new__(Message)
    for name, value in (("identity", identity), ("round", round_), ("base", base), ("norm", norm),
                        ("q", _q_view(encoding, dim)), ("signature", signature)):
        object.__setattr__(msg, name, value)
    msg.__dict__["encoding"] = encoding
    if digest is not None:
        msg.__dict__["signing_digest"] = digest
    return msg


def _encode_body(identity: bytes, round_: int, base: bytes, norm: float, q: np.ndarray) -> bytes:
    """The signed part of the encoding; int16 entries make a compact (version 2) message."""
    compact = np.asarray(q).dtype == np.int16
    return (
        Writer()
        .u8(COMPACT_MESSAGE_VERSION if compact else MESSAGE_VERSION)
        .fixed(identity, 20)
        .u64(round_)
        .fixed(base, 32)
        .f64(norm)
        .array(q, "int16" if compact else "int32")
        .bytes()
    )


def sign_message(key: PrivateKey, *, round: int, base: bytes, norm: float, q: np.ndarray) -> Message:
    """Build and sign a message under ``key``'s pseudo-identity: an int16 ``q`` makes a
    compact message (for a chain with ``message_bits`` = 16), any other integers int32."""
    if not math.isfinite(norm) or norm <= 0:
        raise InvalidMessage("bad-norm", f"norm must be finite and > 0, got {norm!r}")
    q = np.asarray(q)
    if q.dtype != np.int16:
        q = np.ascontiguousarray(q, dtype=np.int32)
    body = _encode_body(key.address, round, base, norm, q)
    digest = keccak256_of(_DOMAIN, body)
    signature = key.sign(digest)
    # The encoding and digest just computed are the cached properties' values (the
    # body is a pure function of the fields): seed them instead of hashing the body twice,
    # and keep the gradient only inside the encoding.
    dim = (len(body) - _Q_OFFSET) // q.dtype.itemsize
    return _adopt(key.address, round, Hash32(bytes(base)), float(norm), signature, body + signature, dim, digest)


def message_id_of(raw: bytes) -> Hash32:
    """The id of an encoded message without decoding it (for de-duplicating gossip);
    equal to ``decode_message(raw).hash`` for well-formed bytes."""
    if len(raw) < MESSAGE_FIXED_SIZE:
        raise DecodeError(f"message of {len(raw)} bytes is shorter than the fixed part ({MESSAGE_FIXED_SIZE})")
    digest = keccak256_of(_DOMAIN, memoryview(raw)[:-SIGNATURE_SIZE])
    return keccak256(_ID_TAG + digest + bytes(raw[-SIGNATURE_SIZE:]))


def decode_message(raw: bytes, *, max_dim: int) -> Message:
    """Strictly decode one message; DecodeError says what is wrong."""
    max_size = message_size(max_dim)
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise DecodeError(f"message: expected bytes, got {type(raw).__name__}")
    if len(raw) > max_size:
        raise DecodeError(f"message of {len(raw)} bytes exceeds the limit of {max_size} for d={max_dim}")
    r = Reader(raw, "message")
    version = r.u8()
    if version not in _ENTRIES:
        raise DecodeError(f"message: unknown version {version} (this node speaks {MESSAGE_VERSION} and "
                          f"{COMPACT_MESSAGE_VERSION})")
    identity = r.fixed(20)
    round_ = r.u64()
    base = r.fixed(32)
    norm = r.f64(name="norm")
    dim = r.u32()
    if dim > max_dim:
        raise DecodeError(f"message: gradient has {dim} elements, limit is {max_dim}")
    r.skip(_ENTRIES[version][0].itemsize * dim)
    signature = r.fixed(SIGNATURE_SIZE)
    r.finish()
    # A strictly decoded message re-encodes to exactly ``raw`` (fixed widths, a
    # finite norm), so ``raw`` is its encoding and its id is that of the bytes
    # received; the gradient is a view into those bytes.
    return _adopt(Address(identity), round_, Hash32(base), norm, signature, bytes(raw), dim)


def validate_message(msg: Message, params, *, round: int | None = None, base: bytes | None = None) -> None:
    """Check a message against the chain's rules (shape, norm, unit vector, signature)
    and, when given, the round and base block it must belong to."""
    if msg.dim != params.dim:
        raise InvalidMessage("wrong-shape", f"gradient has {msg.dim} entries, the model has {params.dim}")
    if msg.width != params.message_bits:
        raise InvalidMessage("wrong-width", f"gradient entries are {msg.width}-bit, the chain's messages carry "
                                            f"{params.message_bits}-bit entries (message_bits)")
    if not math.isfinite(msg.norm) or msg.norm <= 0:
        raise InvalidMessage("bad-norm", f"norm must be finite and > 0, got {msg.norm!r}")
    if msg.norm > params.max_norm:
        raise InvalidMessage("bad-norm", f"norm {msg.norm:.6g} exceeds the chain's limit of {params.max_norm:.6g}")
    if round is not None and msg.round != round:
        raise InvalidMessage("wrong-round", f"message is for round {msg.round}, expected round {round}")
    if base is not None and msg.base != base:
        raise InvalidMessage(
            "wrong-base", f"message was computed at block {hexstr(msg.base)[:14]}, expected {hexstr(base)[:14]}"
        )
    # ||q||^2 once, after the components are bounded; kept as the message's ``sq_norm``
    n2 = check_unit(msg.q, params.quant_bits, params.norm_tol_bits, sq_norm=msg.__dict__.get("sq_norm"))
    msg.__dict__.setdefault("sq_norm", n2)
    if not params.enrolled(msg.identity):
        raise InvalidMessage("not-enrolled", f"identity {hexstr(msg.identity)} is not an enrolled holder of this chain")
    signer = recover_address(msg.signing_digest, msg.signature)
    if signer != msg.identity:
        raise InvalidMessage(
            "bad-signature", f"signed by {hexstr(signer)}, but claims identity {hexstr(msg.identity)}"
        )
