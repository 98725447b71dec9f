"""The contract's fixed-point arithmetic, in Python (the contract's twin).

The EVM has no floats, so the contract performs the l-nearest update of
DESIGN.md section 3 on integers. This module is the same arithmetic in Python:
every function here computes, bit for bit, what ``contracts/learningchain.vy``
computes, and the tests hold the two to exact equality.

Scales (all powers of two, so converting a float is one exact scaling and one
rounding to the nearest integer, ties to even):

* unit gradient  q_i = round(u_i * 2**quant_bits), int32 (the native message's q);
* norm           S_k = round(s_k * 2**NORM_BITS), 0 < S_k < 2**64;
* learning rate  LR  = round(lr * 2**RATE_BITS), and the same for lambda (LAM);
* model          W_i = round(w_i * 2**MODEL_BITS), |W_i| < 2**127.

The update is the native one (protocol.transition.apply_update on the
l-nearest gradient), step by step, each division rounded to the nearest
integer with ties away from zero (:func:`rdiv`)::

    A_i     = sum over selected k of S_k * q_{k,i}                   (exact)
    g_i     = rdiv(A_i * 2**MODEL_BITS, 2**(NORM_BITS + quant_bits) * l * m)
    decay_i = rdiv(LAM * W_i, 2**RATE_BITS)
    W'_i    = W_i - rdiv(LR * (g_i + decay_i), 2**RATE_BITS)

with l the number of selected messages (min(l, n)) and m the batch size.
Every intermediate fits an int256 within the contract's limits (n <= 256
messages, S_k < 2**64, |q_i| < 2**27 for quant_bits <= 26, LR and LAM below
2**(RATE_BITS+16), |W_i| < 2**127): |A_i| < 2**99, A_i * 2**40 < 2**139,
|LAM * W_i| < 2**175, |g_i + decay_i| < 2**144 and LR * (g_i + decay_i)
< 2**192. A model that would leave int128 makes the aggregation revert.

The selection is the native rule itself (protocol.aggregation.compute_l_nearest)
with the tie-break key the contract uses: keccak256(abi.encode(round, sender)).

Messages travel packed, eight int32 lanes per 32-byte word: lane j of word w
holds q_{8w+j} + 2**31 (offset binary, so the contract decodes a lane with one
subtraction) in bits 32j..32j+31, words big-endian; lanes past d encode 0
(they hold 2**31), so they add nothing to any sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..crypto import keccak256
from ..errors import ConfigError, InvalidMessage
from ..protocol.aggregation import Batch, compute_l_nearest
from ..protocol.quantize import unit_norm_bounds

__all__ = [
    "MODEL_BITS",
    "NORM_BITS",
    "RATE_BITS",
    "LANES",
    "MAX_MESSAGES",
    "MAX_DIM",
    "to_fixed",
    "encode_norm",
    "encode_rate",
    "encode_model",
    "decode_model",
    "pack_q",
    "unpack_q",
    "words_for",
    "rdiv",
    "message_header",
    "chunk_span",
    "chunk_hash",
    "aggregation_data",
    "tie_key",
    "select_l_nearest",
    "fixed_update",
    "selection_mask",
    "mask_selection",
    "FixedRule",
]

MODEL_BITS = 40
NORM_BITS = 32
RATE_BITS = 32
LANES = 8
LANE_BIAS = 2**31
MODEL_BIAS = 2**127
#: The contract's compile-time bounds: messages per round (the selection is a
#: 256-bit mask) and model dimension.
MAX_MESSAGES = 256
MAX_DIM = 8192
MAX_RATE = 2**16  # lr and lambda must be below this


def to_fixed(x: float, bits: int) -> int:
    """round(x * 2**bits) to the nearest integer, ties to even; exact for finite x."""
    x = float(x)
    if not np.isfinite(x):
        raise ConfigError(f"cannot encode {x!r} in fixed point")
    return int(round(x * float(2**bits)))


def encode_norm(s: float) -> int:
    """The norm s_k of a message as the contract takes it (uint64, scale 2**NORM_BITS)."""
    value = to_fixed(s, NORM_BITS)
    if not 0 < value < 2**64:
        raise InvalidMessage("bad-norm", f"norm {s!r} is outside the contract's range (0, 2^{64 - NORM_BITS})")
    return value


def encode_rate(r: float, name: str = "rate") -> int:
    value = to_fixed(r, RATE_BITS)
    if not 0 <= value < MAX_RATE * 2**RATE_BITS:
        raise ConfigError(f"{name} {r!r} is outside the contract's range [0, {MAX_RATE})")
    return value


def encode_model(w: np.ndarray) -> list[int]:
    out = [to_fixed(x, MODEL_BITS) for x in np.asarray(w, dtype=np.float64)]
    for i, v in enumerate(out):
        if not -MODEL_BIAS <= v < MODEL_BIAS:
            raise ConfigError(f"model coordinate {i} ({w[i]!r}) does not fit the contract's int128")
    return out


def decode_model(W: Sequence[int]) -> np.ndarray:
    """The float64 view of a fixed-point model (W_i / 2**MODEL_BITS, correctly rounded)."""
    scale = 2**MODEL_BITS
    return np.array([int(v) / scale for v in W], dtype=np.float64)


def words_for(dim: int) -> int:
    return (dim + LANES - 1) // LANES


def pack_q(q: np.ndarray) -> bytes:
    """Pack a fixed-point unit vector into the contract's words (see the module doc)."""
    q = np.asarray(q)
    if q.ndim != 1:
        raise ConfigError(f"pack_q expects a vector, got shape {q.shape}")
    n = words_for(q.shape[0])
    lanes = np.full(n * LANES, LANE_BIAS, dtype=np.uint64)
    lanes[: q.shape[0]] = (q.astype(np.int64) + LANE_BIAS).astype(np.uint64)
    # lane j of a word sits at bits 32j: as a big-endian word, lane 7 comes first.
    be = lanes.reshape(n, LANES)[:, ::-1].astype(">u4")
    return be.tobytes()


def unpack_q(data: bytes, dim: int) -> np.ndarray:
    n = words_for(dim)
    if len(data) != 32 * n:
        raise ConfigError(f"packed vector has {len(data)} bytes, expected {32 * n} for d={dim}")
    lanes = np.frombuffer(data, dtype=">u4").reshape(n, LANES)[:, ::-1].reshape(-1).astype(np.int64)
    if np.any(lanes[dim:] != LANE_BIAS):
        raise ConfigError("padding lanes do not encode zero")
    return (lanes[:dim] - LANE_BIAS).astype(np.int32)


def message_header(sender: bytes, norm: int, packed: bytes) -> bytes:
    """The two words that precede a message's words in the contract's chunk hashes:
    sender | norm << 160, then the squared norm the contract computed at submission."""
    if len(sender) != 20 or not 0 < norm < 2**64:
        raise ValueError("a header needs a 20-byte sender and a norm in (0, 2^64)")
    lanes = [int(x) - LANE_BIAS for x in np.frombuffer(packed, dtype=">u4")]
    n2 = sum(x * x for x in lanes)
    return (int.from_bytes(sender, "big") | (int(norm) << 160)).to_bytes(32, "big") + n2.to_bytes(32, "big")


def chunk_span(words: int, chunk: int, chunk_words: int) -> tuple[int, int]:
    """Byte range of chunk ``chunk`` inside a packed message of ``words`` words."""
    start = chunk * chunk_words
    if not 0 <= start < words:
        raise ValueError(f"chunk {chunk} is outside a message of {words} words")
    return 32 * start, 32 * min(words, start + chunk_words)


def chunk_hash(sender: bytes, norm: int, packed: bytes, chunk: int, chunk_words: int) -> bytes:
    a, b = chunk_span(len(packed) // 32, chunk, chunk_words)
    return keccak256(message_header(sender, norm, packed) + packed[a:b])


def aggregation_data(messages: Sequence[tuple], chunk: int, chunk_words: int) -> bytes:
    """The ``data`` of ``aggregate(chunk, ...)``: for each (sender, norm, packed) in
    submission order, its two header words then its words of that chunk."""
    parts = []
    for sender, norm, packed in messages:
        a, b = chunk_span(len(packed) // 32, chunk, chunk_words)
        parts.append(message_header(sender, norm, packed) + packed[a:b])
    return b"".join(parts)


def rdiv(x: int, y: int) -> int:
    """x / y rounded to the nearest integer, ties away from zero (y > 0)."""
    if y <= 0:
        raise ValueError("rdiv needs a positive divisor")
    r = (abs(x) + y // 2) // y
    return r if x >= 0 else -r


def tie_key(round_: int, sender: bytes) -> bytes:
    """keccak256(abi.encode(round, sender)): the contract's tie-break key for a message."""
    if len(sender) != 20:
        raise ValueError("a sender is a 20-byte address")
    return keccak256(int(round_).to_bytes(32, "big") + b"\x00" * 12 + bytes(sender))


def select_l_nearest(q: np.ndarray, keys: Sequence[bytes], l: int, quant_bits: int) -> tuple:
    """The native l-nearest selection (ascending indices) with the contract's keys."""
    q = np.asarray(q, dtype=np.int32)
    batch = Batch(q, np.ones(q.shape[0]), tuple(keys), quant_bits)
    return compute_l_nearest(batch, l)


def selection_mask(selection: Sequence[int]) -> int:
    mask = 0
    for i in selection:
        mask |= 1 << int(i)
    return mask


def mask_selection(mask: int) -> tuple:
    return tuple(i for i in range(mask.bit_length()) if mask >> i & 1)


def fixed_update(W: Sequence[int], q: np.ndarray, norms: Sequence[int], selection: Sequence[int], *,
                 batch_size: int, lr: int, lam: int, quant_bits: int) -> list[int]:
    """The contract's model update (module doc), from fixed-point inputs."""
    if not selection:
        raise ConfigError("the update needs at least one selected message")
    q = np.asarray(q)
    sel = list(selection)
    rows = q[sel].astype(object)  # Python ints: A_i reaches 2**93
    weights = np.array([int(norms[k]) for k in sel], dtype=object)
    A = weights @ rows  # exact integer sums
    den = 2 ** (NORM_BITS + quant_bits) * len(sel) * int(batch_size)
    out = []
    for i, w in enumerate(W):
        g = rdiv(int(A[i]) * 2**MODEL_BITS, den)
        decay = rdiv(int(lam) * int(w), 2**RATE_BITS)
        new = int(w) - rdiv(int(lr) * (g + decay), 2**RATE_BITS)
        if not -2**127 <= new < 2**127:
            raise ConfigError(f"model overflow at coordinate {i}: the contract refuses the update")
        out.append(new)
    return out


@dataclass(frozen=True)
class FixedRule:
    """The protocol parameters the contract enforces, in the contract's units."""

    dim: int
    quant_bits: int
    norm_tol_bits: int
    l: int
    batch_size: int
    lr: int  # scale 2**RATE_BITS
    lam: int  # scale 2**RATE_BITS

    @classmethod
    def from_params(cls, params) -> "FixedRule":
        if params.aggregator != "l-nearest":
            raise ConfigError(f"the Ethereum backend implements l-nearest only, not {params.aggregator!r}")
        if params.aggregator_options.get("pre"):
            raise ConfigError("the Ethereum backend implements l-nearest only, without a pre-aggregation")
        if params.dim > MAX_DIM:
            raise ConfigError(f"the contract supports d <= {MAX_DIM}, the model has {params.dim} parameters")
        if params.message_bits != 32:
            raise ConfigError(f"the Ethereum backend takes 32-bit messages, this genesis sets message_bits = "
                              f"{params.message_bits}")
        return cls(params.dim, params.quant_bits, params.norm_tol_bits, params.l, params.batch_size,
                   encode_rate(params.lr, "lr"), encode_rate(params.lam, "lam"))

    @property
    def unit_bounds(self) -> tuple[int, int]:
        return unit_norm_bounds(self.quant_bits, self.norm_tol_bits)

    def select(self, q: np.ndarray, keys: Sequence[bytes]) -> tuple:
        return select_l_nearest(q, keys, self.l, self.quant_bits)

    def update(self, W: Sequence[int], q: np.ndarray, norms: Sequence[int], selection: Sequence[int]) -> list[int]:
        return fixed_update(W, q, norms, selection, batch_size=self.batch_size, lr=self.lr, lam=self.lam,
                            quant_bits=self.quant_bits)
