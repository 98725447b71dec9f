"""The one canonical byte encoding used for hashing, signing, storage and the wire.

Fixed-width little-endian integers, IEEE-754 binary64 floats, length-prefixed
byte strings and typed arrays. The :class:`Reader` is strict: every read checks
that enough bytes remain, lengths are bounded by the caller, and ``finish()``
refuses trailing bytes, so one value has exactly one encoding. Never pickle.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from ..crypto import SIGNATURE_SIZE
from ..errors import DecodeError

__all__ = [
    "Writer",
    "Reader",
    "ADDRESS_SIZE",
    "HASH_SIZE",
    "SIGNATURE_SIZE",
    "MESSAGE_VERSION",
    "COMPACT_MESSAGE_VERSION",
    "MESSAGE_FIXED_SIZE",
    "BLOCK_VERSION",
    "HEADER_MAX",
    "MAX_SEAL",
    "MAX_PARAMS",
    "QUANT_BITS",
    "NORM_TOL_BITS",
    "message_size",
]

# -- encoding constants: every size and version of the canonical encoding ----------
#: a pseudo-identity (Ethereum-style address) and a keccak-256 hash
ADDRESS_SIZE = 20
HASH_SIZE = 32
MESSAGE_VERSION = 1
#: a message whose gradient entries are int16 (a chain with ``message_bits`` = 16)
COMPACT_MESSAGE_VERSION = 2
#: ``u8 version | 20 identity | u64 round | 32 base | f64 norm | u32 d | 65 signature``
#: without the ``d x i32`` (or ``d x i16``) gradient
MESSAGE_FIXED_SIZE = 1 + ADDRESS_SIZE + 8 + HASH_SIZE + 8 + 4 + SIGNATURE_SIZE
BLOCK_VERSION = 1
#: a header's encoding is well below this (about 260 bytes with a 65-byte seal)
HEADER_MAX = 512
#: a seal: an 8-byte nonce (proof of work) or a 65-byte signature (authority)
MAX_SEAL = 128
#: the canonical JSON of the genesis parameters
MAX_PARAMS = 1 << 20
#: fixed-point scale 2**QUANT_BITS of the unit gradients and the unit-norm
#: tolerance 2**-NORM_TOL_BITS: the defaults a chain's genesis starts from
QUANT_BITS = 20
NORM_TOL_BITS = 10


def message_size(dim: int) -> int:
    """Bytes of one encoded message with a ``dim``-entry gradient of int32 entries (the
    most: a compact message's int16 entries take half)."""
    return MESSAGE_FIXED_SIZE + 4 * dim


_U8 = struct.Struct("<B")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")


class Writer:
    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, value: int) -> "Writer":
        self._parts.append(_U8.pack(value))
        return self

    def u32(self, value: int) -> "Writer":
        self._parts.append(_U32.pack(value))
        return self

    def u64(self, value: int) -> "Writer":
        self._parts.append(_U64.pack(value))
        return self

    def i64(self, value: int) -> "Writer":
        self._parts.append(_I64.pack(value))
        return self

    def f64(self, value: float) -> "Writer":
        self._parts.append(_F64.pack(value))
        return self

    def fixed(self, raw: bytes, size: int) -> "Writer":
        if len(raw) != size:
            raise ValueError(f"expected {size} bytes, got {len(raw)}")
        self._parts.append(bytes(raw))
        return self

    def var(self, raw: bytes) -> "Writer":
        self._parts.append(_U32.pack(len(raw)))
        self._parts.append(bytes(raw))
        return self

    def array(self, values: np.ndarray, dtype: str) -> "Writer":
        """A 1-D array as u32 length then little-endian elements of ``dtype``."""
        arr = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
        if arr.ndim != 1:
            raise ValueError("only 1-D arrays are encoded")
        self._parts.append(_U32.pack(arr.shape[0]))
        self._parts.append(arr.tobytes())
        return self

    def raw(self, raw: bytes) -> "Writer":
        self._parts.append(bytes(raw))
        return self

    def bytes(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    __slots__ = ("_buf", "_pos", "_what")

    def __init__(self, data: bytes, what: str = "record"):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(f"{what}: expected bytes, got {type(data).__name__}")
        self._buf = memoryview(bytes(data))
        self._pos = 0
        self._what = what

    def _take(self, size: int) -> memoryview:
        end = self._pos + size
        if size < 0 or end > len(self._buf):
            raise DecodeError(
                f"{self._what}: truncated at byte {self._pos} (wanted {size} more, "
                f"{len(self._buf) - self._pos} left)"
            )
        chunk = self._buf[self._pos:end]
        self._pos = end
        return chunk

    @property
    def remaining(self) -> int:
        return len(self._buf) - self._pos

    def u8(self) -> int:
        return _U8.unpack(self._take(1))[0]

    def u32(self) -> int:
        return _U32.unpack(self._take(4))[0]

    def u64(self) -> int:
        return _U64.unpack(self._take(8))[0]

    def i64(self) -> int:
        return _I64.unpack(self._take(8))[0]

    def f64(self, *, finite: bool = True, name: str = "float") -> float:
        value = _F64.unpack(self._take(8))[0]
        if finite and not math.isfinite(value):
            raise DecodeError(f"{self._what}: {name} is not finite ({value})")
        return value

    def fixed(self, size: int) -> bytes:
        return bytes(self._take(size))

    def skip(self, size: int) -> None:
        """Step over ``size`` bytes (DecodeError when fewer are left), copying nothing."""
        self._take(size)

    def var(self, max_size: int, name: str = "bytes") -> bytes:
        size = self.u32()
        if size > max_size:
            raise DecodeError(f"{self._what}: {name} of {size} bytes exceeds the limit of {max_size}")
        return bytes(self._take(size))

    def array(self, dtype: str, max_len: int, name: str = "array") -> np.ndarray:
        n = self.u32()
        if n > max_len:
            raise DecodeError(f"{self._what}: {name} has {n} elements, limit is {max_len}")
        dt = np.dtype(dtype).newbyteorder("<")
        raw = self._take(n * dt.itemsize)
        arr = np.frombuffer(raw, dtype=dt).astype(np.dtype(dtype), copy=True)
        return arr

    def finish(self) -> None:
        if self.remaining:
            raise DecodeError(f"{self._what}: {self.remaining} trailing bytes after the record")
