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
from dataclasses import dataclass, field

import numpy as np

from ..crypto import SIGNATURE_SIZE, PrivateKey, keccak256, recover_address
from ..errors import DecodeError, InvalidMessage
from ..types import Address, Hash32, hexstr
from .codec import Reader, Writer
from .quantize import check_unit

__all__ = ["Message", "sign_message", "decode_message", "validate_message", "message_id_of", "MESSAGE_VERSION"]

MESSAGE_VERSION = 1
_DOMAIN = b"\x19LearningChain message v1\n"
_ID_TAG = b"\x19LearningChain message id\n"
_FIXED_SIZE = 1 + 20 + 8 + 32 + 8 + 4 + SIGNATURE_SIZE


@dataclass(frozen=True, eq=False)
class Message:
    identity: Address
    round: int
    base: Hash32
    norm: float
    q: np.ndarray  # int32, read-only
    signature: bytes
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        q = np.ascontiguousarray(self.q, dtype=np.int32)
        q.setflags(write=False)
        object.__setattr__(self, "q", q)

    # -- encoding ----------------------------------------------------------------
    def body_bytes(self) -> bytes:
        return _encode_body(self.identity, self.round, self.base, self.norm, self.q)

    def encode(self) -> bytes:
        raw = self._cache.get("raw")
        if raw is None:
            raw = self.body_bytes() + self.signature
            self._cache["raw"] = raw
        return raw

    @property
    def hash(self) -> Hash32:
        """The message id: keccak-256 of a tag, the signing digest and the signature.

        The digest already commits to every byte of the body, so the id commits
        to the whole encoding without hashing a large gradient twice.
        """
        h = self._cache.get("hash")
        if h is None:
            h = keccak256(_ID_TAG + self.signing_digest + self.signature)
            self._cache["hash"] = h
        return h

    @property
    def signing_digest(self) -> Hash32:
        d = self._cache.get("digest")
        if d is None:
            raw = self._cache.get("raw")
            body = raw[: len(raw) - SIGNATURE_SIZE] if raw is not None else self.body_bytes()
            d = keccak256(_DOMAIN + body)
            self._cache["digest"] = d
        return d

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
    msg._cache["raw"] = body + signature
    msg._cache["digest"] = digest
    return msg


def message_id_of(raw: bytes) -> Hash32:
    """The id of an encoded message without decoding it (for de-duplicating gossip);
    equal to ``decode_message(raw).hash`` for well-formed bytes."""
    if len(raw) < _FIXED_SIZE:
        raise DecodeError(f"message of {len(raw)} bytes is shorter than the fixed part ({_FIXED_SIZE})")
    digest = keccak256(_DOMAIN + bytes(raw[:-SIGNATURE_SIZE]))
    return keccak256(_ID_TAG + digest + bytes(raw[-SIGNATURE_SIZE:]))


def decode_message(raw: bytes, *, max_dim: int) -> Message:
    """Strictly decode one message; DecodeError says what is wrong."""
    max_size = _FIXED_SIZE + 4 * max_dim
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
    msg = Message(Address(identity), round_, Hash32(base), norm, q, signature)
    msg._cache["raw"] = bytes(raw)
    return msg


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
    # ||q||^2 is exact and a property of the immutable message: kept for the
    # aggregation rules, which need it again (aggregation.Batch.sq_norms).
    msg._cache["sq_norm"] = check_unit(msg.q, params.quant_bits, params.norm_tol_bits)
    if not params.enrolled(msg.identity):
        raise InvalidMessage("not-enrolled", f"identity {hexstr(msg.identity)} is not an enrolled holder of this chain")
    signer = recover_address(msg.signing_digest, msg.signature)
    if signer != msg.identity:
        raise InvalidMessage(
            "bad-signature", f"signed by {hexstr(signer)}, but claims identity {hexstr(msg.identity)}"
        )
