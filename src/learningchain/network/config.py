"""Configuration of a network of ``learningchain node`` processes.

One TOML file describes the chain every node joins and each node's policy::

    [train]                 # the learning problem: same keys as `learningchain train`
    dataset = "synthetic"
    holders = 30
    rounds = 20
    seed = 0

    [network]               # consensus (fixed by genesis) and node policy
    consensus = "pow"       # or "poa" with authorities = ["0x...", ...]
    interval_ms = 500       # proof-of-work retarget toward this block interval (0: fixed difficulty)

Every key of ``[train]`` and the consensus keys of ``[network]`` go into the
genesis block, so processes on different machines that load the same file build
the same genesis and can talk; a node refuses peers and blocks of another genesis.
The other ``[network]`` keys are local policy (limits, timeouts) and may differ
between nodes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional

from ..config import TrainConfig, check_types, load_toml
from ..errors import ConfigError

__all__ = ["NetworkConfig", "NetConfigFile", "load_net_config", "CONSENSUS_KEYS", "parse_address"]

#: Keys of [network] that the genesis block fixes; all nodes of one chain must agree.
CONSENSUS_KEYS = ("consensus", "authorities", "members", "interval_ms", "window", "min_bits", "max_bits",
                  "genesis_time_ms", "budget")


@dataclass(frozen=True)
class NetworkConfig:
    # -- consensus (hashed into genesis) ---------------------------------------------
    consensus: Optional[str] = None  # "pow" or "poa"; default: the [train] table's consensus
    authorities: tuple[str, ...] = ()  # proof-of-authority signer addresses, 0x-hex
    members: tuple[str, ...] = ()  # enrolled holders' addresses (genesis); empty = open membership
    budget: Optional[float] = None  # each member's total epsilon on the chain (genesis); needs members
    interval_ms: int = 500  # proof-of-work target block interval; 0 keeps the genesis difficulty
    window: int = 5  # blocks between two retargets (one bit each)
    min_bits: int = 4
    max_bits: int = 40
    genesis_time_ms: Optional[int] = None  # default: the fixed time of simulated chains
    # -- rounds ------------------------------------------------------------------------
    stop_height: Optional[int] = None  # stop holding and mining here; default: the chain's T (rounds)
    # -- when a computing node writes a block ----------------------------------------------
    collect_ms: int = 3000  # after a new head, wait up to this long for all K holders' messages
    holder_delay_ms: int = 0  # holders wait until the head has stood this long (fewer messages on forks)
    poa_backoff_ms: int = 1000  # an out-of-turn authority waits this long per place behind the in-turn one
    min_peers: int = 0  # neither hold nor mine before this many peers are connected
    unseen: str = "accept"  # a gossiped block with messages never broadcast here: "accept" or "wait"
    unseen_grace_ms: int = 2000  # with "wait": how long such a block waits for its messages
    # -- transport limits ------------------------------------------------------------------
    max_frame_bytes: int = 32 << 20
    max_peers: int = 16
    outbound_slots: int = 4  # of max_peers, kept for the connections this node dials
    max_inbound_per_ip: int = 8  # connections (in handshake or established) accepted from one remote IP
    max_pending: int = 32  # inbound connections in their handshake at once
    max_pending_per_ip: int = 8  # of which from one remote IP
    target_peers: int = 8  # dial known addresses until this many peers are connected
    peer_exchange: bool = True
    rate_frames: float = 2000.0  # unsolicited frames per second one peer may send (sustained)
    burst_frames: int = 4000
    rate_bytes: float = float(32 << 20)  # unsolicited bytes per second one peer may send
    burst_bytes: int = 64 << 20
    max_misbehaviour: int = 100  # penalty points before a peer is disconnected and banned
    ban_seconds: float = 60.0
    sync_batch: int = 256  # blocks per sync response
    sync_timeout_s: float = 20.0
    ping_interval_s: float = 10.0
    idle_timeout_s: float = 60.0
    handshake_timeout_s: float = 10.0
    reconnect_s: float = 1.0  # first retry delay to a bootstrap peer (doubles up to 30 s)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def need(cond, what):
            if not cond:
                raise ConfigError(f"[network] {what}")

        check_types(type(self), {f.name: getattr(self, f.name) for f in fields(self)}, where="[network] ")
        need(self.consensus in (None, "pow", "poa"), f"consensus must be pow or poa, got {self.consensus!r}")
        need(isinstance(self.authorities, (tuple, list)), "authorities must be a list of addresses")
        for a in self.authorities:
            parse_address(a)
        need(isinstance(self.members, (tuple, list)), "members must be a list of addresses")
        for a in self.members:
            parse_address(a)
        ints = ("interval_ms", "window", "min_bits", "max_bits", "collect_ms", "holder_delay_ms", "poa_backoff_ms",
                "min_peers", "unseen_grace_ms", "max_frame_bytes", "max_peers", "target_peers", "burst_frames",
                "burst_bytes", "max_misbehaviour", "sync_batch", "outbound_slots", "max_inbound_per_ip", "max_pending",
                "max_pending_per_ip")
        for name in ints:
            v = getattr(self, name)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                 f"{name} must be a non-negative integer, got {v!r}")
        for name in ("rate_frames", "rate_bytes", "ban_seconds", "sync_timeout_s", "ping_interval_s",
                     "idle_timeout_s", "handshake_timeout_s", "reconnect_s"):
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0,
                 f"{name} must be a number > 0, got {v!r}")
        need(self.budget is None or (math.isfinite(self.budget) and self.budget > 0),
             f"budget must be a finite number > 0 (each member's total epsilon), got {self.budget!r}")
        need(self.genesis_time_ms is None or (isinstance(self.genesis_time_ms, int) and self.genesis_time_ms >= 0),
             f"genesis_time_ms must be a non-negative integer, got {self.genesis_time_ms!r}")
        need(self.stop_height is None or (isinstance(self.stop_height, int) and self.stop_height >= 0),
             f"stop_height must be a non-negative integer, got {self.stop_height!r}")
        need(self.window >= 1, "window must be >= 1")
        need(self.min_bits <= self.max_bits <= 64, "needs min_bits <= max_bits <= 64")
        need(self.unseen in ("accept", "wait"), f"unseen must be accept or wait, got {self.unseen!r}")
        need(1 <= self.sync_batch <= 4096, f"sync_batch must be in 1..4096, got {self.sync_batch}")
        need(self.max_frame_bytes >= 1 << 16, "max_frame_bytes must be at least 65536")
        need(self.max_peers >= 1, "max_peers must be >= 1")
        need(self.outbound_slots < self.max_peers,
             f"outbound_slots ({self.outbound_slots}) must leave room for inbound peers (max_peers {self.max_peers})")
        for name in ("max_inbound_per_ip", "max_pending", "max_pending_per_ip"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1")

    def retarget(self) -> dict:
        if self.interval_ms == 0:
            return {}
        return {"interval_ms": self.interval_ms, "window": self.window, "min_bits": self.min_bits,
                "max_bits": self.max_bits}

    def to_dict(self, *, minimal: bool = False) -> dict:
        """The options as a dict; ``minimal`` keeps the consensus keys and what differs from the defaults."""
        out = asdict(self)
        out["authorities"] = list(self.authorities)
        out["members"] = list(self.members)
        out = {k: v for k, v in out.items() if v is not None}
        if minimal:
            defaults = NetworkConfig().to_dict()
            out = {k: v for k, v in out.items()
                   if (k in CONSENSUS_KEYS and (k not in ("authorities", "members") or v)) or defaults.get(k) != v}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "NetworkConfig":
        known = {f.name for f in fields(cls)}
        clean = {}
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in known:
                raise ConfigError(f"unknown [network] option {key!r}; known: {', '.join(sorted(known))}")
            check_types(cls, {name: value}, where="[network] ")
            if name in ("authorities", "members"):
                if not isinstance(value, (list, tuple)):
                    raise ConfigError(f"[network] {name} must be a list of addresses")
                value = tuple(value)
            if name in ("rate_frames", "rate_bytes", "ban_seconds", "sync_timeout_s", "ping_interval_s",
                        "idle_timeout_s", "handshake_timeout_s", "reconnect_s") and isinstance(value, int) \
                    and not isinstance(value, bool):
                value = float(value)
            clean[name] = value
        return cls(**clean)

    def replace(self, **changes: Any) -> "NetworkConfig":
        return replace(self, **changes)


def parse_address(text) -> bytes:
    """A 20-byte address from ``0x``-hex; ConfigError naming it otherwise."""
    if not isinstance(text, str):
        raise ConfigError(f"an address must be a 0x-hex string, got {text!r}")
    raw = text.removeprefix("0x")
    try:
        value = bytes.fromhex(raw)
    except ValueError:
        raise ConfigError(f"address {text!r} is not hex") from None
    if len(value) != 20:
        raise ConfigError(f"address {text!r} has {len(value)} bytes, an address has 20")
    return value


@dataclass(frozen=True)
class NetConfigFile:
    """A parsed network config: the chain ([train]) and the network ([network])."""

    train: TrainConfig = field(default_factory=TrainConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)

    def to_toml(self) -> str:
        return _toml_table("train", _train_items(self.train)) + "\n" + _toml_table("network", self.network.to_dict(minimal=True))


_TRAIN_DEFAULTS = asdict(TrainConfig())


def _train_items(cfg: TrainConfig) -> dict:
    out = {}
    for key, value in cfg.to_dict().items():
        if value is None or key in ("out", "force", "progress"):
            continue
        default = _TRAIN_DEFAULTS.get(key)
        if key == "hidden":
            default = list(default)
        if value == default and key not in ("dataset", "seed"):
            continue
        out[key] = value
    return out


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int,)):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise ConfigError(f"cannot write {v!r} to TOML")


def _toml_table(name: str, items: dict) -> str:
    lines = [f"[{name}]"]
    for k, v in items.items():
        lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def load_net_config(path: Optional[str | Path] = None, *, train_overrides: Optional[dict] = None,
                    network_overrides: Optional[dict] = None) -> NetConfigFile:
    """Read a network config (a file with [train] and [network] tables, either optional)
    and apply overrides from the command line."""
    train: dict = {}
    network: dict = {}
    if path is not None:
        from ..config import read_toml

        data = read_toml(path)
        if "network" in data or "train" in data:
            unknown = sorted(set(data) - {"train", "network"})
            if unknown:
                raise ConfigError(f"config file {path}: unknown table(s) {unknown}; known: train, network")
            train = dict(data.get("train", {}))
            network = dict(data.get("network", {}))
        else:
            train = load_toml(path)
    train.update(train_overrides or {})
    network.update(network_overrides or {})
    return NetConfigFile(TrainConfig.from_dict(train), NetworkConfig.from_dict(network))
