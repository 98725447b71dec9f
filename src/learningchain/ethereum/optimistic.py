"""Optimistic mode: the contract keeps commitments, computing nodes post, anyone disputes.

The full mode (``contracts/learningchain.vy``) executes every aggregation on
chain; here (``contracts/optimistic.vy``) holders' messages travel in calldata
tightly packed and the contract keeps one Merkle root per message; a computing
node posts a round's selection and the Merkle leaves of the new model with a
bond; during ``challenge_blocks`` blocks anyone may dispute one chunk of
:data:`CHUNK` coordinates, which the contract recomputes with the full mode's
fixed-point arithmetic (:mod:`.fixedpoint`, the twin) and compares with the
posted leaf. This module is the encoding, the trees, the compiled artefact and
the client of one deployment (:class:`OptDeployment`); the round driver and the
run backend are in :mod:`.optimistic_net`. docs/ETHEREUM.md, "Optimistic mode".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from web3.logs import DISCARD

from ..crypto import keccak256
from .chain import TX_GAS_CAP
from ..errors import ConfigError
from . import fixedpoint as fp
from .chain import Account, Chain
from .contract import compile_source, read_artifact
from .fixedpoint import FixedRule

__all__ = ["CHUNK", "SOURCE_PATH", "ARTIFACT_PATH", "zigzag_width", "encode_message", "decode_message", "parse_widths",
           "chunk_bytes", "message_leaves", "model_leaf", "model_leaves", "depth_for", "merkle_root",
           "merkle_proof", "OptParams", "OptDeployment", "build_artifact", "load_artifact", "dispute_records",
           "TX_GAS_CAP", "max_dispute_gas", "dispute_gas_bound", "max_disputable"]

#: Coordinates per chunk (the contract's CHUNK): a dispute recomputes one chunk.
CHUNK = 256
MAX_DIM = 16384  # the contract's MAX_DIM: a message of 32-bit values stays within 64 KiB
MAX_CHUNKS = MAX_DIM // CHUNK
MAX_RECORDS = 122880
MAX_WIDTH = 32  # the most bits of a value (low + high) the contract accepts (a holder chooses them)
# TX_GAS_CAP (chain.py), the most gas one transaction may use from Osaka on (EIP-7825): the
# full mode keeps every aggregation transaction under it (contract.MAX_CHUNK_WORDS), and a
# deployment here is refused unless its worst-case dispute fits it (:func:`max_dispute_gas`).
HERE = Path(__file__).resolve().parent
SOURCE_PATH = HERE / "contracts" / "optimistic.vy"
ARTIFACT_PATH = HERE / "contracts" / "optimistic.json"


# -- encoding ------------------------------------------------------------------------------
#
# A message is cut into chunks of CHUNK coordinates. Each value is zigzag-mapped to an
# unsigned z (v >= 0: 2v; v < 0: -2v - 1), and each chunk c is sent as two bit planes: the
# low L_c bits of every z, then the high H_c bits (z >> L_c), each value's field big-endian,
# each plane padded with zero to whole 32-byte words. The pair (L_c, H_c) travels in the
# message's ``widths`` (two bytes a chunk, 1 <= L_c, L_c + H_c <= 32). The high plane of a
# noisy message is mostly zero bytes, which calldata prices at a quarter of a non-zero byte
# (EIP-7623 floor: 10 gas against 40); the encoder picks, per chunk, the split that costs
# the least calldata gas.

#: EIP-7623 floor price of a calldata byte: zero, non-zero.
FLOOR_ZERO, FLOOR_NONZERO = 10, 40


def zigzag(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.int64)
    return np.where(q >= 0, 2 * q, -2 * q - 1)


def unzigzag(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.int64)
    return np.where(z & 1, -(z >> 1) - 1, z >> 1)


def zigzag_width(values: np.ndarray) -> int:
    """The fewest bits (1..32) that hold the zigzag of every value; ConfigError beyond 32."""
    top = int(zigzag(values).max(initial=0))
    b = max(1, top.bit_length())
    if b > MAX_WIDTH:
        raise ConfigError("a message value does not fit 32 bits")
    return b


def chunk_len(c: int, dim: int) -> int:
    return min(CHUNK, dim - c * CHUNK)


def plane_words(n: int, bits: int) -> int:
    """32-byte words of a plane of ``n`` fields of ``bits`` bits."""
    return (n * bits + 255) // 256


def chunk_size(c: int, dim: int, low: int, high: int) -> int:
    """Bytes of chunk ``c`` at widths (low, high)."""
    n = chunk_len(c, dim)
    return 32 * (plane_words(n, low) + plane_words(n, high))


def chunks_for(dim: int) -> int:
    return (dim + CHUNK - 1) // CHUNK


def _plane(z: np.ndarray, bits: int) -> bytes:
    """``bits`` bits of each z (big-endian fields), zero padded to whole words."""
    if bits == 0:
        return b""
    u = (z & ((1 << bits) - 1)).astype(np.uint64)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint64)
    flat = ((u[:, None] >> shifts) & np.uint64(1)).astype(np.uint8).reshape(-1)
    pad = plane_words(z.size, bits) * 256 - flat.size
    return np.packbits(np.concatenate([flat, np.zeros(pad, np.uint8)])).tobytes()


def _chunk(z: np.ndarray, low: int, high: int) -> bytes:
    return _plane(z, low) + _plane(z >> low, high)


def floor_gas(data: bytes) -> int:
    """Calldata gas of ``data`` at the EIP-7623 floor."""
    a = np.frombuffer(data, dtype=np.uint8)
    nonzero = int(np.count_nonzero(a))
    return FLOOR_NONZERO * nonzero + FLOOR_ZERO * (a.size - nonzero)


def best_split(z: np.ndarray) -> tuple[int, int]:
    """The widths (low, high) of a chunk of zigzag values whose bytes cost the least
    calldata gas (ties: the widest low plane); low + high is the fewest bits that hold all."""
    w = max(1, int(z.max(initial=0)).bit_length())
    best = None
    for low in range(w, 0, -1):
        gas = floor_gas(_chunk(z, low, w - low)) + (FLOOR_NONZERO if w > low else FLOOR_ZERO)
        if best is None or gas < best[0]:
            best = (gas, low)
    return best[1], w - best[1]


def _check_widths(low: int, high: int) -> None:
    if not (1 <= low and high >= 0 and low + high <= MAX_WIDTH):
        raise ConfigError(f"chunk widths ({low}, {high}): need 1 <= low and low + high <= {MAX_WIDTH}")


def encode_message(q: np.ndarray, width=None) -> tuple[bytes, bytes]:
    """(widths, packed bytes) of a fixed-point unit vector (the encoding above). ``width``:
    an int, every chunk at that many bits in its low plane and none in its high plane; a
    pair (low, high), every chunk at those widths (a value that does not fit raises
    ConfigError); by default each chunk takes its cheapest split."""
    z = zigzag(q)
    zigzag_width(q)
    dim = z.shape[0]
    widths, out = bytearray(), []
    for c in range(chunks_for(dim)):
        zc = z[c * CHUNK:c * CHUNK + chunk_len(c, dim)]
        if width is None:
            low, high = best_split(zc)
        else:
            low, high = (int(width), 0) if np.isscalar(width) else (int(width[0]), int(width[1]))
            _check_widths(low, high)
            if int(zc.max(initial=0)) >> (low + high):
                raise ConfigError(f"a value of chunk {c} does not fit {low + high} bits")
        widths += bytes([low, high])
        out.append(_chunk(zc, low, high))
    return bytes(widths), b"".join(out)


def parse_widths(widths: bytes, dim: int) -> list[tuple[int, int]]:
    """The (low, high) pairs of ``widths``; ConfigError on a wrong length or a pair out of range."""
    if len(widths) != 2 * chunks_for(dim):
        raise ConfigError(f"a message of d={dim} has {2 * chunks_for(dim)} width bytes, got {len(widths)}")
    pairs = [(widths[2 * c], widths[2 * c + 1]) for c in range(chunks_for(dim))]
    for low, high in pairs:
        _check_widths(low, high)
    return pairs


def _offsets(pairs, dim: int) -> list[int]:
    out, at = [], 0
    for c, (low, high) in enumerate(pairs):
        out.append(at)
        at += chunk_size(c, dim, low, high)
    return out + [at]


def chunk_bytes(widths: bytes, data: bytes, dim: int, c: int) -> bytes:
    pairs = parse_widths(widths, dim)
    at = _offsets(pairs, dim)
    return data[at[c]:at[c + 1]]


def _fields(plane: bytes, n: int, bits: int) -> tuple[np.ndarray, bool]:
    """The ``n`` unsigned fields of a plane, and whether its padding bits are zero."""
    if bits == 0:
        return np.zeros(n, dtype=np.int64), True
    flat = np.unpackbits(np.frombuffer(plane, dtype=np.uint8))
    fields = flat[:n * bits].reshape(n, bits).astype(np.int64)
    return fields @ (1 << np.arange(bits - 1, -1, -1, dtype=np.int64)), not flat[n * bits:].any()


def decode_message(widths: bytes, data: bytes, dim: int) -> np.ndarray:
    """The int32 vector of a packed message; refuses bad widths, a wrong length, padding that
    is not zero and a value outside int32."""
    pairs = parse_widths(widths, dim)
    at = _offsets(pairs, dim)
    if len(data) != at[-1]:
        raise ConfigError(f"a packed message of d={dim} at these widths has {at[-1]} bytes, got {len(data)}")
    vals = []
    for c, (low, high) in enumerate(pairs):
        n = chunk_len(c, dim)
        chunk = data[at[c]:at[c + 1]]
        split = 32 * plane_words(n, low)
        lo, ok_lo = _fields(chunk[:split], n, low)
        hi, ok_hi = _fields(chunk[split:], n, high)
        if not (ok_lo and ok_hi):
            raise ConfigError("padding bits of a packed message are not zero")
        vals.append(unzigzag((hi << low) | lo))
    return np.concatenate(vals).astype(np.int32)


# -- Merkle trees ----------------------------------------------------------------------------

def depth_for(chunks: int) -> int:
    return max(0, math.ceil(math.log2(chunks))) if chunks > 1 else 0


def _levels(leaves: Sequence[bytes], depth: int) -> list[list[bytes]]:
    level = list(leaves) + [b"\x00" * 32] * ((1 << depth) - len(leaves))
    levels = [level]
    while len(level) > 1:
        level = [keccak256(level[2 * i] + level[2 * i + 1]) for i in range(len(level) // 2)]
        levels.append(level)
    return levels


def merkle_root(leaves: Sequence[bytes], depth: int) -> bytes:
    return _levels(leaves, depth)[-1][0]


def merkle_proof(leaves: Sequence[bytes], index: int, depth: int) -> list[bytes]:
    """The sibling hashes of leaf ``index``, leaf level first (the contract's order)."""
    levels = _levels(leaves, depth)
    return [levels[lv][(index >> lv) ^ 1] for lv in range(depth)]


def message_leaves(widths: bytes, data: bytes, dim: int) -> list[bytes]:
    """Leaf of chunk c: keccak256(its two width bytes ++ keccak256(its bytes))."""
    pairs = parse_widths(widths, dim)
    at = _offsets(pairs, dim)
    return [keccak256(widths[2 * c:2 * c + 2] + keccak256(data[at[c]:at[c + 1]])) for c in range(len(pairs))]


def model_chunk(W: Sequence[int], c: int) -> list[int]:
    return [int(v) for v in W[c * CHUNK:c * CHUNK + chunk_len(c, len(W))]]


def model_leaf(values: Sequence[int]) -> bytes:
    """keccak256(abi_encode(values as DynArray[int256]))."""
    from eth_abi import encode

    return keccak256(encode(["int256[]"], [[int(v) for v in values]]))


def model_leaves(W: Sequence[int]) -> list[bytes]:
    return [model_leaf(model_chunk(W, c)) for c in range(chunks_for(len(W)))]


def model_root(W: Sequence[int]) -> bytes:
    return merkle_root(model_leaves(W), depth_for(chunks_for(len(W))))


# -- the compiled artefact ----------------------------------------------------------------------

def compile_optimistic() -> dict:
    """Compile optimistic.vy with the full contract's compiler settings (Vyper 0.4.3, Prague)."""
    return compile_source(source_path=SOURCE_PATH, contract="LearningChainOptimistic")


def build_artifact() -> Path:
    ARTIFACT_PATH.write_text(json.dumps(compile_optimistic(), indent=1) + "\n")
    return ARTIFACT_PATH


@lru_cache(maxsize=1)
def load_artifact() -> dict:
    return read_artifact(ARTIFACT_PATH, SOURCE_PATH, "learningchain.ethereum.optimistic")


# -- parameters and the deployment ----------------------------------------------------------------

@dataclass(frozen=True)
class OptParams:
    """The optimistic contract's constructor arguments (w_0 enters as its Merkle root)."""

    rule: FixedRule
    min_messages: int
    max_messages: int
    quorum: int
    window: int
    rounds: int
    challenge_blocks: int
    bond: int

    @classmethod
    def from_params(cls, params, *, messages: int, rounds: int, quorum: int, window: int,
                    challenge_blocks: int, bond: int) -> "OptParams":
        rule = FixedRule.from_params(params)
        if rule.dim > MAX_DIM:
            raise ConfigError(f"the optimistic contract supports d <= {MAX_DIM}, the model has {rule.dim}")
        if not 1 <= messages <= fp.MAX_MESSAGES:
            raise ConfigError(f"at most {fp.MAX_MESSAGES} messages a round, the run needs {messages}")
        if messages > params.max_messages:
            raise ConfigError(f"a round of {messages} messages exceeds the protocol's max_messages "
                              f"({params.max_messages}) for quant_bits={params.quant_bits}")
        low = min(params.min_messages, messages)
        if not low <= quorum <= messages:
            raise ConfigError(f"the quorum must be in {low}..{messages}, got {quorum}")
        if challenge_blocks < 1 or bond <= 0:
            raise ConfigError("the optimistic mode needs challenge_blocks >= 1 and a positive bond")
        keep = min(rule.l, messages)
        worst = max_dispute_bytes(keep, depth_for(chunks_for(rule.dim)))
        if worst > MAX_RECORDS:
            raise ConfigError(f"l = {rule.l} of {messages} messages: disputing a chunk could need {worst} bytes of "
                              f"records (every selected message at {MAX_WIDTH} bits), more than the contract's "
                              f"{MAX_RECORDS}, so a wrong round could not be disputed; lower l or the messages "
                              "per round")
        gas = max_dispute_gas(keep, rule.dim)
        if gas > TX_GAS_CAP:
            raise ConfigError(f"l = {rule.l} of {messages} messages: disputing a chunk could need {gas:,} gas "
                              f"(min(l, K) = {keep} selected messages at the dearest encoding, d = {rule.dim}), more "
                              f"than the {TX_GAS_CAP:,} gas a transaction may use (EIP-7825), so a wrong round could "
                              f"not be disputed; lower l or the messages per round to at most "
                              f"{max_disputable(rule.dim)}")
        return cls(rule, low, messages, quorum, int(window), rounds, int(challenge_blocks), int(bond))

    @property
    def chunks(self) -> int:
        return chunks_for(self.rule.dim)

    @property
    def depth(self) -> int:
        return depth_for(self.chunks)

    def constructor_args(self, w0_root: bytes) -> list:
        r = self.rule
        return [r.dim, r.quant_bits, r.l, r.batch_size, r.lr, r.lam, self.min_messages, self.max_messages,
                self.quorum, self.window, self.rounds, self.challenge_blocks, self.bond, w0_root]


@dataclass(frozen=True)
class OptMessage:
    sender: bytes
    norm: int
    widths: bytes  # two bytes a chunk: (low, high)
    data: bytes


@dataclass(frozen=True)
class Posting:
    round: int
    aggregator: str
    n: int
    selection: int
    leaves: tuple
    block: int
    excluded: int = 0  # the messages left out as invalid (bit k = message k)


def max_dispute_bytes(keep: int, depth: int) -> int:
    """The most ``records`` a dispute of one chunk can need with ``keep`` selected messages:
    each message's header, root, widths word, its chunk at the widest widths (low + high =
    32 bits: 32 words, a partial chunk no more) and its proof, then a zero word (see
    :func:`dispute_records`)."""
    return keep * (3 * 32 + CHUNK * MAX_WIDTH // 8 + 32 * depth) + 32


# The gas of ``dispute(...)`` (contracts/optimistic.vy), term by term along its code path,
# each constant measured on the in-process EVM (pyrevm, Prague) at the dearest data: every
# selected message in two planes (a high plane makes the decoder read a second word a
# coordinate: about 180 gas more than one 32-bit plane), every value odd in zigzag (negative:
# the sign branch), the sums, the previous model and the step negative (the dearer rounding
# branches), the disputed chunk's index 0 (the dearer side at every proof level), and the
# first dispute of the deployment (its counters and the challenger's credit written fresh).
# Gas counted before refunds: the transaction's gas limit must cover it. The calldata is
# priced as if no byte were zero (16 gas each). tests/ethereum/test_optimistic_dispute_gas.py
# runs such disputes and checks the bound against them.
_DISPUTE_GAS_BASE = 416_569  # a dispute: its checks, its memory, the two model proofs, the verdict's writes
_DISPUTE_GAS_COORD = 1_248  # a coordinate of the chunk: the old chunk's hash, the update's rounding
_DISPUTE_GAS_LEVEL = 680  # a level of the model tree: the old and the posted proofs
_DISPUTE_GAS_MESSAGE = 4_551  # a selected message: its commitment (a cold slot), headers, hashes
_DISPUTE_GAS_MESSAGE_COORD = 631  # a message's coordinate: two extract32, shifts, the sum
_DISPUTE_GAS_MESSAGE_WORD = 15  # a word of a message's chunk: hashing its bytes
_DISPUTE_GAS_MESSAGE_LEVEL = 696  # a level of a message's proof: extract32 and keccak
_DISPUTE_GAS_MARGIN = 0.01  # above the measured worst case, for data paths not measured
_CALLDATA_GAS, _FLOOR_GAS = 16, 40  # gas of a non-zero calldata byte: standard, EIP-7623 floor


@lru_cache(maxsize=None)
def max_chunk_words(n: int) -> int:
    """The most 32-byte words a chunk of ``n`` coordinates can take at any widths
    (1 <= low, low + high <= 32): 32 for a full chunk; for a short one two planes may
    take a word more than one plane."""
    return max(plane_words(n, low) + plane_words(n, high)
               for low in range(1, MAX_WIDTH + 1) for high in range(0, MAX_WIDTH + 1 - low))


def dispute_gas_bound(keep: int, depth: int, n: int) -> int:
    """An upper bound on the gas (before refunds) of a dispute of a chunk of ``n``
    coordinates with ``keep`` selected messages in trees of ``depth`` levels, whatever
    the messages' widths and values (see the constants above)."""
    words = max_chunk_words(n)
    records = keep * (3 * 32 + 32 * words + 32 * depth) + 32
    # selector; 7 head words; old (length + n); two proofs (length + depth); records (length + bytes)
    calldata = 4 + 32 * (7 + 1 + n + 2 * (1 + depth) + 1) + records
    execution = (_DISPUTE_GAS_BASE + _DISPUTE_GAS_COORD * n + _DISPUTE_GAS_LEVEL * depth
                 + keep * (_DISPUTE_GAS_MESSAGE + _DISPUTE_GAS_MESSAGE_COORD * n + _DISPUTE_GAS_MESSAGE_WORD * words
                           + _DISPUTE_GAS_MESSAGE_LEVEL * depth))
    gas = max(21_000 + _CALLDATA_GAS * calldata + execution, 21_000 + _FLOOR_GAS * calldata)
    return math.ceil(gas * (1 + _DISPUTE_GAS_MARGIN))


def max_dispute_gas(keep: int, dim: int) -> int:
    """The bound of :func:`dispute_gas_bound` for the dearest chunk of a model of ``dim``
    coordinates (the first: full, and index 0) with ``keep`` selected messages."""
    return dispute_gas_bound(keep, depth_for(chunks_for(dim)), chunk_len(0, dim))


def max_disputable(dim: int) -> int:
    """The most selected messages (min(l, K)) whose worst-case dispute of a model of ``dim``
    coordinates fits both the contract's records and a transaction's gas (0: none)."""
    depth = depth_for(chunks_for(dim))
    return max((k for k in range(1, fp.MAX_MESSAGES + 1)
                if max_dispute_bytes(k, depth) <= MAX_RECORDS and max_dispute_gas(k, dim) <= TX_GAS_CAP), default=0)


def dispute_records(messages: Sequence[OptMessage], selection: Sequence[int], c: int, dim: int) -> bytes:
    """The ``records`` of a dispute of chunk ``c``: each selected message's header, root, the
    chunk's widths (one word: low << 8 | high), its bytes of the chunk and its proof; then a
    zero word."""
    depth = depth_for(chunks_for(dim))
    out = []
    for k in sorted(selection):
        m = messages[k]
        leaves = message_leaves(m.widths, m.data, dim)
        header = int.from_bytes(m.sender, "big") | (int(m.norm) << 160)
        out += [header.to_bytes(32, "big"), merkle_root(leaves, depth), m.widths[2 * c:2 * c + 2].rjust(32, b"\x00"),
                chunk_bytes(m.widths, m.data, dim, c)] + merkle_proof(leaves, c, depth)
    return b"".join(out) + b"\x00" * 32


class OptDeployment:
    """One deployed optimistic contract and the calls made on it."""

    def __init__(self, chain: Chain, address: str, oparams: OptParams, *, block: int = 0):
        self.chain = chain
        self.artifact = load_artifact()
        self.address = address
        self.oparams = oparams
        self.rule = oparams.rule
        self.contract = chain.w3.eth.contract(address=address, abi=self.artifact["abi"])
        self.deploy_block = block
        self.setup_gas: dict = {}

    @classmethod
    def deploy(cls, chain: Chain, owner: Account, oparams: OptParams, W0: Sequence[int]) -> "OptDeployment":
        artifact = load_artifact()
        start = chain.block_number()
        address, gas = chain.deploy(owner, artifact["abi"], artifact["bytecode"],
                                    oparams.constructor_args(model_root(W0)), with_gas=True)
        dep = cls(chain, address, oparams, block=start)
        dep.setup_gas = {"deploy": gas}
        return dep

    @property
    def abi(self) -> list:
        return self.artifact["abi"]

    # -- reads ----------------------------------------------------------------------------
    def _get(self, name: str, *args):
        return getattr(self.contract.functions, name)(*args).call()

    def current_round(self) -> int:
        return int(self._get("current_round"))

    def model_root(self) -> bytes:
        return bytes(self._get("model_root"))

    def credit(self, address: str) -> int:
        return int(self._get("credit", address))

    def round_messages(self, rnd: int, from_block: Optional[int] = None) -> list[OptMessage]:
        logs = self.contract.events.Submitted.get_logs(
            from_block=self.deploy_block if from_block is None else from_block, argument_filters={"round": rnd})
        logs = sorted(logs, key=lambda e: int(e["args"]["index"]))
        out = []
        for i, e in enumerate(logs):
            if int(e["args"]["index"]) != i:
                raise ConfigError(f"round {rnd}: Submitted events are not contiguous at index {i}")
            a = e["args"]
            out.append(OptMessage(bytes.fromhex(a["sender"][2:]), int(a["norm"]), bytes(a["widths"]), bytes(a["q"])))
        return out

    def posting(self) -> Optional[Posting]:
        """The pending posting of the current round, from the contract and its event."""
        at = int(self._get("posted_at"))
        if at == 0:
            return None
        rnd = self.current_round()
        logs = self.contract.events.Posted.get_logs(from_block=at, to_block=at, argument_filters={"round": rnd})
        if not logs:
            raise ConfigError(f"no Posted event in block {at}")
        a = logs[-1]["args"]
        return Posting(rnd, a["aggregator"], int(a["messages"]), int(a["selection"]),
                       tuple(bytes(x) for x in a["leaves"]), at, int(a["excluded"]))

    # -- writes ------------------------------------------------------------------------------
    def submit(self, sender: Account, rnd: int, norm: int, widths: bytes, data: bytes, *, fees=None):
        return self.chain.call_tx(sender, self.contract, "submit", rnd, norm, widths, data, hint="opt-submit",
                                  fees=fees)

    def post(self, sender: Account, rnd: int, n: int, selection: Sequence[int], W_new: Sequence[int],
             excluded: Sequence[int] = ()):
        """Post the aggregation of the round's first ``n`` messages: the selected ones, the
        ones left out as invalid (``excluded``) and the new model."""
        return self.chain.call_tx(sender, self.contract, "post", rnd, n, fp.selection_mask(selection),
                                  fp.selection_mask(excluded), model_leaves(W_new), value=self.oparams.bond,
                                  hint="opt-post")

    def dispute(self, sender: Account, rnd: int, c: int, W_old: Sequence[int], posting: Posting,
                messages: Sequence[OptMessage]) -> tuple[bool, dict]:
        """Dispute chunk ``c`` of ``posting``; (upheld, receipt)."""
        depth, dim = self.oparams.depth, self.rule.dim
        old_leaves = model_leaves(W_old)
        records = dispute_records(messages, fp.mask_selection(posting.selection), c, dim)
        if len(records) > MAX_RECORDS:
            raise ConfigError(f"a dispute of {len(records)} bytes exceeds the contract's {MAX_RECORDS}")
        args = [rnd, c, model_chunk(W_old, c), merkle_proof(old_leaves, c, depth), posting.leaves[c],
                merkle_proof(list(posting.leaves), c, depth), records]
        tx = {"to": self.address, "data": self.contract.encode_abi("dispute", args=args), "value": self.oparams.bond}
        # the gas limit is the bound, not twice an estimate: a deployment's bound fits the
        # 2^24 gas a transaction may use (EIP-7825), twice an estimate of 9M gas would not
        keep = len(fp.mask_selection(posting.selection))
        gas = min(dispute_gas_bound(keep, depth, chunk_len(c, dim)), self.chain.gas_limit())
        self.chain.preflight(dict(tx, **{"from": sender.address}), "dispute")
        r = self.chain.send(sender, tx, what="dispute", gas=gas)
        events = self.contract.events.Disputed().process_receipt(r, errors=DISCARD)
        return bool(events and events[0]["args"]["upheld"]), r

    def finalize(self, sender: Account, rnd: int):
        return self.chain.call_tx(sender, self.contract, "finalize", rnd, hint="opt-finalize")

    def withdraw(self, sender: Account):
        return self.chain.call_tx(sender, self.contract, "withdraw", hint="opt-withdraw")


def _main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m learningchain.ethereum.optimistic",
                                description="build or check the compiled optimistic contract")
    p.add_argument("--build", action="store_true", help=f"recompile {SOURCE_PATH.name} into {ARTIFACT_PATH.name}")
    args = p.parse_args(argv)
    if args.build:
        print(f"wrote {build_artifact()}")
        return 0
    fresh = compile_optimistic()
    committed = json.loads(ARTIFACT_PATH.read_text())
    same = all(fresh[k] == committed.get(k) for k in ("abi", "bytecode", "source_keccak256"))
    print("artefact matches the source" if same else "artefact differs from the source: rebuild it")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(_main())
