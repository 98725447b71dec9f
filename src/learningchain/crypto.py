"""Hashes, keys and signatures.

Pseudo-identities are Ethereum-style: a secp256k1 key pair whose address is the
last 20 bytes of keccak-256 of the uncompressed public key. A signature is the
65-byte recoverable form ``r || s || v`` (v in {0, 1}) over a 32-byte digest; a
verifier recovers the public key and compares the address, as ``ecrecover`` does,
so the same identity works on the Ethereum backend.
"""

from __future__ import annotations

import hashlib
import secrets
import coincurve
import sha3 as _sha3

from .errors import InvalidMessage
from .types import Address, Hash32

__all__ = [
    "keccak256",
    "keccak256_of",
    "sha256",
    "PrivateKey",
    "recover_address",
    "SECP256K1_N",
    "SIGNATURE_SIZE",
]

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2
SIGNATURE_SIZE = 65


def keccak256(data: bytes) -> Hash32:
    """Keccak-256 (Ethereum's hash, not NIST SHA3-256)."""
    return Hash32(_sha3.keccak_256(data).digest())


def keccak256_of(*parts) -> Hash32:
    """keccak256 of the concatenation of ``parts`` (bytes-like: a memoryview of a large
    buffer is hashed where it lies, with no concatenated copy)."""
    h = _sha3.keccak_256()
    for part in parts:
        h.update(part)
    return Hash32(h.digest())


def sha256(data: bytes) -> Hash32:
    return Hash32(hashlib.sha256(data).digest())


def _address_of(public_key: coincurve.PublicKey) -> Address:
    return Address(keccak256(public_key.format(compressed=False)[1:])[12:])


class PrivateKey:
    """A secp256k1 signing key. ``address`` is its pseudo-identity."""

    __slots__ = ("_key", "address")

    def __init__(self, secret: bytes):
        if len(secret) != 32:
            raise ValueError(f"a private key is 32 bytes, got {len(secret)}")
        self._key = coincurve.PrivateKey(secret)  # raises on 0 or >= n
        self.address: Address = _address_of(self._key.public_key)

    @property
    def secret(self) -> bytes:
        return self._key.secret

    @classmethod
    def generate(cls, rng=None) -> "PrivateKey":
        """A fresh key; from ``rng`` (a numpy Generator) when given, for reproducible runs."""
        while True:
            raw = secrets.token_bytes(32) if rng is None else rng.bytes(32)
            if 0 < int.from_bytes(raw, "big") < SECP256K1_N:
                return cls(raw)

    def sign(self, digest: bytes) -> bytes:
        """Recoverable signature ``r || s || v`` of a 32-byte digest (low-s, RFC 6979)."""
        if len(digest) != 32:
            raise ValueError("sign a 32-byte digest")
        return self._key.sign_recoverable(digest, hasher=None)

    def __repr__(self) -> str:  # never print the secret
        return f"PrivateKey(address=0x{self.address.hex()})"


def recover_address(digest: bytes, signature: bytes) -> Address:
    """Address that signed ``digest``; raises InvalidMessage on a malformed signature.

    High-s signatures are refused so that a signed record has exactly one valid
    encoding (otherwise anyone could flip s and mint a second message hash).
    """
    if len(signature) != SIGNATURE_SIZE:
        raise InvalidMessage("bad-signature", f"signature is {len(signature)} bytes, expected 65")
    r = int.from_bytes(signature[0:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (0, 1):
        raise InvalidMessage("bad-signature", f"recovery id {v} is not 0 or 1")
    if not (0 < r < SECP256K1_N) or not (0 < s <= _HALF_N):
        raise InvalidMessage("bad-signature", "signature r/s out of range (high-s is not canonical)")
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(signature, digest, hasher=None)
    except Exception as exc:  # coincurve raises plain Exception/ValueError
        raise InvalidMessage("bad-signature", f"public key cannot be recovered ({exc})") from None
    return _address_of(public_key)
