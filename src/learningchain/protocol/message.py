"""Holders' messages (paper Eq. 13): M = (pseudo-identity, unit gradient, norm, t).

Besides the paper's fields a message names the block whose model the gradient was
computed at (``base``), so a message cannot be replayed on another fork or another
chain, and carries a recoverable secp256k1 signature by its pseudo-identity.

Canonical encoding (all little-endian)::

    u8 version | 20 identity | u64 round | 32 base | f64 norm | u32 d | d x i32 q | 65 signature

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

from ..crypto import PrivateKey, keccak256, recover_address
from ..errors import DecodeError, InvalidMessage
from ..types import Address, Hash32, hexstr
from .codec import MESSAGE_FIXED_SIZE, MESSAGE_VERSION, SIGNATURE_SIZE, Reader, Writer, message_size
from .quantize import check_unit, squared_norm

__all__ = ["Message", "sign_message", "decode_message", "validate_message", "message_id_of", "MESSAGE_VERSION"]

_DOMAIN = b"\x19LearningChain message v1\n"
_ID_TAG = b"\x19LearningChain message id\n"


@dataclass(frozen=True, eq=False)
class Message:
    """One holder's message; immutable. Derived values (encoding, digest, id,
    ``||q||^2``) are cached properties: pure functions of the fields, computed
    at most once."""

    identity: Address
    round: int
    base: Hash32
    norm: float
    q: np.ndarray  # int32, read-only
    signature: bytes

    def __post_init__(self) -> None:
        q = np.ascontiguousarray(self.q, dtype=np.int32)
        q.setflags(write=False)
        object.__setattr__(self, "q", q)

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
        return keccak256(_DOMAIN + self.encoding[: len(self.encoding) - SIGNATURE_SIZE])

    @cached_property
    def sq_norm(self) -> int:
        """Exact ``||q||^2`` (the unit check and the aggregation rules both need it)."""
        return squared_norm(self.q)

    @property
    def dim(self) -> int:
        return int(self.q.shape[0])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and self.encode() == other.encode()

    def __hash__(self) -> int:
        return hash(self.hash)

    def __repr__(self) -> str:
        return (f"Message(id={hexstr(self.hash)[:12]}, identity={hexstr(self.identity)}, "
                f"round={self.round}, d={self.dim}, norm={self.norm:.6g})")


def _encode_body(identity: bytes, round_: int, base: bytes, norm: float, q: np.ndarray) -> bytes:
    return (
        Writer()
        .u8(MESSAGE_VERSION)
        .fixed(identity, 20)
        .u64(round_)
        .fixed(base, 32)
        .f64(norm)
        .array(q, "int32")
        .bytes()
    )


def sign_message(key: PrivateKey, *, round: int, base: bytes, norm: float, q: np.ndarray) -> Message:
    """Build and sign a message under ``key``'s pseudo-identity."""
    if not math.isfinite(norm) or norm <= 0:
        raise InvalidMessage("bad-norm", f"norm must be finite and > 0, got {norm!r}")
    body = _encode_body(key.address, round, base, norm, q)
    digest = keccak256(_DOMAIN + body)
    signature = key.sign(digest)
    msg = Message(key.address, round, Hash32(bytes(base)), float(norm), q, signature)
    # The encoding and digest just computed are the cached properties' values (the
    # body is a pure function of the fields): seed them instead of hashing the body twice.
    msg.__dict__["encoding"] = body + signature
    msg.__dict__["signing_digest"] = digest
    return msg


def message_id_of(raw: bytes) -> Hash32:
    """The id of an encoded message without decoding it (for de-duplicating gossip);
    equal to ``decode_message(raw).hash`` for well-formed bytes."""
    if len(raw) < MESSAGE_FIXED_SIZE:
        raise DecodeError(f"message of {len(raw)} bytes is shorter than the fixed part ({MESSAGE_FIXED_SIZE})")
    digest = keccak256(_DOMAIN + bytes(raw[:-SIGNATURE_SIZE]))
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
    if version != MESSAGE_VERSION:
        raise DecodeError(f"message: unknown version {version} (this node speaks {MESSAGE_VERSION})")
    identity = r.fixed(20)
    round_ = r.u64()
    base = r.fixed(32)
    norm = r.f64(name="norm")
    q = r.array("int32", max_dim, "gradient")
    signature = r.fixed(SIGNATURE_SIZE)
    r.finish()
    # A strictly decoded message re-encodes to exactly ``raw`` (fixed widths, a
    # finite norm), so its id is that of the bytes received.
    return Message(Address(identity), round_, Hash32(base), norm, q, signature)


def validate_message(msg: Message, params, *, round: int | None = None, base: bytes | None = None) -> None:
    """Check a message against the chain's rules (shape, norm, unit vector, signature)
    and, when given, the round and base block it must belong to."""
    if msg.dim != params.dim:
        raise InvalidMessage("wrong-shape", f"gradient has {msg.dim} entries, the model has {params.dim}")
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
    check_unit(msg.q, params.quant_bits, params.norm_tol_bits, sq_norm=msg.sq_norm)
    if not params.enrolled(msg.identity):
        raise InvalidMessage("not-enrolled", f"identity {hexstr(msg.identity)} is not an enrolled holder of this chain")
    signer = recover_address(msg.signing_digest, msg.signature)
    if signer != msg.identity:
        raise InvalidMessage(
            "bad-signature", f"signed by {hexstr(signer)}, but claims identity {hexstr(msg.identity)}"
        )
