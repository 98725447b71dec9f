"""Small domain types shared by every layer."""

from __future__ import annotations

from typing import NewType

__all__ = ["Hash32", "Address", "Round", "ZERO_HASH", "ZERO_ADDRESS", "MAX_DIM", "hexstr"]

#: A 32-byte hash (keccak-256 unless said otherwise).
Hash32 = NewType("Hash32", bytes)
#: A 20-byte Ethereum-style address: keccak-256 of the public key, last 20 bytes.
Address = NewType("Address", bytes)
#: A round number t: the height of the block whose model a gradient was computed at.
Round = NewType("Round", int)

ZERO_HASH = Hash32(b"\x00" * 32)
ZERO_ADDRESS = Address(b"\x00" * 20)
#: The most parameters a chain's model may have (genesis refuses more; the built-in models
#: are refused before they are allocated).
MAX_DIM = 2**22


def hexstr(raw: bytes) -> str:
    """``0x``-prefixed lower-case hex, the way hashes and addresses are printed."""
    return "0x" + raw.hex()
