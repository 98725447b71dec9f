"""Protocol parameters: everything the genesis block fixes (DESIGN.md section 3).

A node belongs to a chain by its genesis hash, and the genesis block commits to
these parameters through their canonical JSON encoding, so two nodes that accept
the same genesis agree on every rule below.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from typing import Any

from ..errors import ConfigError
from ..types import MAX_DIM, Address
from .aggregation import check_rule
from .budget import check_budget_params
from .codec import ADDRESS_SIZE, NORM_TOL_BITS, QUANT_BITS
from .consensus import check_retarget_options
from .quantize import MESSAGE_BITS, entry_max, max_exact_messages, max_quant_bits, unit_limit
from .rewards import check_rewards

__all__ = ["ProtocolParams", "canonical_json", "parse_address", "PRIVACY_SCHEDULES", "MECHANISMS", "CLIP_MODES"]

MECHANISMS = ("l2-laplace", "gaussian", "none")
#: constant: LearningChain (eps every round); uniform: eps/T; decay: eps/(t(t+1)).
PRIVACY_SCHEDULES = ("constant", "uniform", "decay")
CLIP_MODES = ("per-example", "total", "none")
CONSENSUS = ("pow", "poa")
# Largest model dimension (types.MAX_DIM, which the built-in models also check before
# they are allocated). At quant_bits <= 20 a vector within the unit bound has
# q_i^2 < 2^41, so sum(q_i^2) stays inside int64 at this dimension (one int64 dot
# product); at larger scales quantize.squared_norm splits the entries and stays exact.


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no spaces, no NaN; floats in Python's shortest round-trip form."""
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    except ValueError as exc:
        raise ConfigError(f"parameters must be finite numbers: {exc}") from None


@dataclass(frozen=True)
class ProtocolParams:
    """The rules of one chain. Keyword-only so a call site names what it sets."""

    # model
    model: dict = field(default_factory=dict)  # architecture spec, see learningchain.models
    dim: int = 0  # number of model parameters d
    # update, Eq. 16-17 as descent: w' = w - lr * (rule(messages) / m + lam * w)
    lr: float = 0.1
    lam: float = 0.0
    batch_size: int = 1  # m: examples behind one holder gradient (divides the update)
    # aggregation (Eq. 14-16 and the other rules)
    holders: int = 1  # K, the nominal number of data holders
    aggregator: str = "l-nearest"
    aggregator_options: dict = field(default_factory=dict)  # e.g. {"l": 15}
    min_messages: int = 1
    max_messages: int = 1024
    # privacy as agreed at initialisation (applied by holders, recorded for audit)
    clip: float = 1.0  # G
    clip_mode: str = "per-example"
    mechanism: str = "l2-laplace"
    epsilon: float = 1.0
    delta: float = 0.0
    #: gaussian mechanism: noise standard deviation / L2 sensitivity (sigma = z * 2G).
    #: 0 means the classic per-round calibration from (epsilon_t, delta).
    noise_multiplier: float = 0.0
    # largest reported norm s_k a message may carry: keeps every rule's update
    # finite (a non-finite model would be refused by all and stall the chain)
    max_norm: float = 1e15
    schedule: str = "constant"
    rounds: int = 100  # T, used by the eps/T schedule
    # encoding
    quant_bits: int = QUANT_BITS
    norm_tol_bits: int = NORM_TOL_BITS
    # width of each entry of a message's gradient: 32 (int32) or 16 (int16, half the
    # bytes to hash, send and store; the unit bound 2**quant_bits must then fit int16)
    message_bits: int = 32
    # consensus
    consensus: str = "pow"
    difficulty: int = 12  # leading zero bits of the proof-of-work hash
    retarget: dict = field(default_factory=dict)  # adaptive difficulty, empty = fixed
    authorities: tuple = ()  # proof-of-authority signer addresses (hex)
    # membership: empty = open (the paper's: any key may send a message); else the
    # enrolled holders' identities (0x-hex), the only ones whose messages count
    members: tuple = ()
    # per-member privacy budget: the total epsilon one enrolled identity may spend on
    # the chain under basic composition (protocol/budget.py); None = no limit
    budget: float | None = None
    # storage: blocks with at least this many blocks on top of them are final, and a
    # pruning node may drop their message bodies (headers, the messages root, the
    # selection and the model stay); None = every node keeps every body
    finality_depth: int | None = None
    # incentives
    rewards: dict = field(default_factory=dict)
    # informational: data set, seed... hashed into genesis, not used by validation
    meta: dict = field(default_factory=dict)
    version: int = 1

    def __post_init__(self) -> None:
        self.validate()

    # -- checks ---------------------------------------------------------------
    def validate(self) -> None:
        def need(cond: bool, what: str) -> None:
            if not cond:
                raise ConfigError(what)

        need(isinstance(self.dim, int) and 0 < self.dim <= MAX_DIM,
             f"dim must be an integer in 1..{MAX_DIM}, got {self.dim!r}")
        for name in ("lr", "lam", "clip", "epsilon", "delta", "noise_multiplier", "max_norm"):
            value = getattr(self, name)
            need(isinstance(value, (int, float)) and math.isfinite(value) and value >= 0,
                 f"{name} must be a finite number >= 0, got {value!r}")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(self.clip > 0, f"clip must be > 0, got {self.clip}")
        need(isinstance(self.batch_size, int) and self.batch_size >= 1,
             f"batch_size must be >= 1, got {self.batch_size!r}")
        need(isinstance(self.holders, int) and self.holders >= 1, f"holders must be >= 1, got {self.holders!r}")
        need(self.clip_mode in CLIP_MODES, f"clip_mode must be one of {CLIP_MODES}, got {self.clip_mode!r}")
        need(self.mechanism in MECHANISMS, f"mechanism must be one of {MECHANISMS}, got {self.mechanism!r}")
        need(self.schedule in PRIVACY_SCHEDULES,
             f"schedule must be one of {PRIVACY_SCHEDULES}, got {self.schedule!r}")
        if self.mechanism != "none":
            need(self.epsilon > 0, f"epsilon must be > 0 with mechanism {self.mechanism}")
        if self.mechanism == "gaussian":
            need(0 < self.delta < 1, f"the gaussian mechanism needs 0 < delta < 1, got {self.delta}")
        else:
            need(self.noise_multiplier == 0,
                 f"noise_multiplier applies to the gaussian mechanism only, not {self.mechanism!r}")
        need(isinstance(self.rounds, int) and self.rounds >= 1, f"rounds must be >= 1, got {self.rounds!r}")
        need(isinstance(self.quant_bits, int) and 8 <= self.quant_bits <= 26,
             f"quant_bits must be in 8..26, got {self.quant_bits!r}")
        need(isinstance(self.norm_tol_bits, int) and 4 <= self.norm_tol_bits <= self.quant_bits,
             f"norm_tol_bits must be in 4..quant_bits, got {self.norm_tol_bits!r}")
        # an integer, as the other widths are: 16.0 would compare equal to 16 here and still
        # be another genesis encoding for the same chain rules
        need(isinstance(self.message_bits, int) and not isinstance(self.message_bits, bool)
             and self.message_bits in MESSAGE_BITS,
             f"message_bits must be one of {MESSAGE_BITS}, got {self.message_bits!r}")
        need(unit_limit(self.quant_bits, self.norm_tol_bits) <= entry_max(self.message_bits),
             f"message_bits={self.message_bits} cannot hold the unit bound of quant_bits={self.quant_bits} "
             f"(entries up to {unit_limit(self.quant_bits, self.norm_tol_bits)}, the width holds "
             f"{entry_max(self.message_bits)}): quant_bits <= {max_quant_bits(self.message_bits)} for this width")
        if self.message_bits != 32:
            # rounding d entries moves ||q||^2 by about d/12 units, relative d / (12 * 2^(2 quant_bits)):
            # keep it within a quarter of the tolerance (about 2^(1 - norm_tol_bits) in ||q||^2), or
            # honest holders' messages would fail the unit check
            drift = self.dim / (12.0 * 4.0**self.quant_bits)
            room = 2.0 ** (1 - self.norm_tol_bits) / 4
            need(drift <= room,
                 f"message_bits={self.message_bits} with quant_bits={self.quant_bits} rounds a unit vector of "
                 f"d={self.dim} entries by about {drift:.2g} of its squared norm, more than the unit check's "
                 f"tolerance affords ({room:.2g}): use message_bits=32 or a smaller norm_tol_bits")
        exact = max_exact_messages(self.quant_bits, self.norm_tol_bits)
        need(isinstance(self.max_messages, int) and 1 <= self.max_messages <= exact,
             f"max_messages must be in 1..{exact} (float64 exactness bound for "
             f"quant_bits={self.quant_bits}), got {self.max_messages!r}")
        need(isinstance(self.min_messages, int) and 1 <= self.min_messages <= self.max_messages,
             f"min_messages must be in 1..max_messages, got {self.min_messages!r}")
        need(self.consensus in CONSENSUS, f"consensus must be one of {CONSENSUS}, got {self.consensus!r}")
        need(isinstance(self.difficulty, int) and 0 <= self.difficulty <= 64,
             f"difficulty must be an integer number of bits in 0..64, got {self.difficulty!r}")
        if self.consensus == "poa":
            need(len(self.authorities) >= 1, "proof of authority needs at least one authority address")
        need(isinstance(self.members, tuple), "members must be a list of addresses")
        enrolled = set()
        for a in self.members:
            raw = _address_bytes(a)
            need(raw is not None, f"members: {a!r} is not a 0x-hex 20-byte address")
            need(raw not in enrolled, f"members: {a} is listed twice")
            enrolled.add(raw)
        need(len(enrolled) <= self.max_messages,
             f"members: {len(enrolled)} enrolled holders exceed max_messages ({self.max_messages})")
        need(self.finality_depth is None or (isinstance(self.finality_depth, int)
                                             and not isinstance(self.finality_depth, bool)
                                             and 1 <= self.finality_depth <= 1 << 20),
             f"finality_depth must be None or an integer in 1..{1 << 20}, got {self.finality_depth!r}")
        check_budget_params(self)
        check_retarget_options(self.retarget)
        check_rewards(self.rewards)
        check_rule(self)

    # -- views ----------------------------------------------------------------
    @cached_property
    def authority_addresses(self) -> tuple:
        """The proof-of-authority signers as addresses, in genesis order (the turn order)."""
        return tuple(parse_address(a, what="authority") for a in self.authorities)

    def is_authority(self, address: bytes) -> bool:
        return bytes(address) in self.authority_addresses

    @cached_property
    def enrolled_identities(self) -> frozenset:
        """The enrolled holders' addresses (empty: open membership)."""
        return frozenset(_address_bytes(a) for a in self.members)

    def enrolled(self, identity: bytes) -> bool:
        """May ``identity`` send messages on this chain? (always, when membership is open)"""
        return not self.enrolled_identities or bytes(identity) in self.enrolled_identities

    def to_dict(self) -> dict:
        out = asdict(self)
        out["authorities"] = list(self.authorities)
        out["members"] = list(self.members)
        # Added after the first chains were made: left out at its default so
        # that their genesis encodings (and hashes) stay what they were.
        for name in _OMIT_AT_DEFAULT:
            if out[name] == _DEFAULTS[name]:
                del out[name]
        return out

    def encode(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict) -> "ProtocolParams":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown protocol parameter(s) {unknown}; known: {sorted(known)}")
        data = dict(data)
        for name in ("authorities", "members"):
            if name in data:
                if not isinstance(data[name], (list, tuple)):
                    raise ConfigError(f"{name} must be a list of addresses")
                data[name] = tuple(data[name])
        return cls(**data)

    @classmethod
    def decode(cls, raw: bytes) -> "ProtocolParams":
        try:
            data = json.loads(raw.decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"genesis parameters are not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError("genesis parameters must be a JSON object")
        params = cls.from_dict(data)
        if params.encode() != raw:
            raise ConfigError("genesis parameters are not in canonical form")
        return params

    def replace(self, **changes: Any) -> "ProtocolParams":
        return replace(self, **changes)

    @property
    def l(self) -> int:  # noqa: E743 - the paper's name
        return int(self.aggregator_options.get("l", math.ceil(self.holders / 2)))


def parse_address(text, *, what: str = "address") -> Address:
    """A 20-byte address from hex text, ``0x``-prefixed or not; ConfigError naming it otherwise.

    The one parser of the addresses that parameters and configurations list
    (the authorities of proof of authority, a network's authorities and members).
    """
    if not isinstance(text, str):
        raise ConfigError(f"an address must be a 0x-hex string, got {text!r}")
    try:
        value = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise ConfigError(f"{what} {text!r} is not hex") from None
    if len(value) != ADDRESS_SIZE:
        raise ConfigError(f"{what} {text!r} has {len(value)} bytes, an address has {ADDRESS_SIZE}")
    return Address(value)


def _address_bytes(text) -> bytes | None:
    if not isinstance(text, str) or not text.startswith("0x") or len(text) != 42:
        return None
    try:
        return bytes.fromhex(text[2:])
    except ValueError:
        return None


_DEFAULTS = {f.name: f.default for f in fields(ProtocolParams)}
_DEFAULTS["members"] = []  # as to_dict writes it
_OMIT_AT_DEFAULT = ("noise_multiplier", "max_norm", "members", "budget", "finality_depth", "message_bits")
