"""``NetworkConfig``: the ``[network]`` table of a network of node processes.

Its consensus keys (section ``chain``) go into the genesis block with the
``[train]`` table, so every node of one chain must agree on them; the others
(section ``network``) are a node's local policy (limits, timeouts) and may
differ between nodes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Optional

from ..errors import ConfigError
from .names import check_name
from .schema import check_types, field_type, key, refuse_unknown

__all__ = ["NetworkConfig", "CONSENSUS_KEYS", "parse_address"]

_CHAIN, _NET = "chain", "network"
_OPT = ("chain",)


@dataclass(frozen=True)
class NetworkConfig:
    # -- consensus (hashed into genesis) ---------------------------------------------
    consensus: Optional[str] = key(None, section=_CHAIN, option=_OPT, help="proof of work or proof of authority",
                                   default_help="the [train] table's consensus, pow")
    authorities: tuple[str, ...] = key((), section=_CHAIN, help="proof-of-authority signer addresses, 0x-hex")
    members: tuple[str, ...] = key((), section=_CHAIN, help="enrolled holders' addresses; empty: open membership")
    budget: Optional[float] = key(None, section=_CHAIN, help="each member's total epsilon on the chain; needs members",
                                  default_help="no budget")
    interval_ms: int = key(500, section=_CHAIN, option=_OPT, metavar="MS",
                           help="proof-of-work retarget toward this block interval (0: fixed difficulty)")
    window: int = key(5, section=_CHAIN, help="blocks between two retargets (one bit each)")
    min_bits: int = key(4, section=_CHAIN, help="the least proof-of-work difficulty a retarget reaches")
    max_bits: int = key(40, section=_CHAIN, help="the most proof-of-work difficulty a retarget reaches")
    genesis_time_ms: Optional[int] = key(None, section=_CHAIN, help="the genesis block's time",
                                         default_help="the fixed time of simulated chains")
    # -- rounds ------------------------------------------------------------------------
    stop_height: Optional[int] = key(None, section=_NET, help="stop holding and mining here",
                                     default_help="the chain's T (rounds)")
    # -- when a computing node writes a block ----------------------------------------------
    collect_ms: int = key(3000, section=_NET, help="after a new head, wait up to this long for all K holders' "
                                                   "messages")
    holder_delay_ms: int = key(0, section=_NET, help="holders wait until the head has stood this long (fewer "
                                                     "messages on forks)")
    poa_backoff_ms: int = key(1000, section=_NET, help="an out-of-turn authority waits this long per place behind "
                                                       "the in-turn one")
    min_peers: int = key(0, section=_NET, option=("node",), metavar="N",
                         help="hold and mine only once N peers are connected")
    unseen: str = key("accept", section=_NET, help="a gossiped block with messages never broadcast here: accept "
                                                   "it, or wait for them")
    unseen_grace_ms: int = key(2000, section=_NET, help="with unseen = wait: how long such a block waits")
    # -- transport limits ------------------------------------------------------------------
    max_frame_bytes: int = key(32 << 20, section=_NET, help="the largest frame a peer may send")
    max_peers: int = key(16, section=_NET, help="connected peers at most")
    outbound_slots: int = key(4, section=_NET, help="of max_peers, kept for the connections this node dials")
    max_inbound_per_ip: int = key(8, section=_NET, help="connections (in handshake or established) accepted from "
                                                        "one remote IP")
    max_pending: int = key(32, section=_NET, help="inbound connections in their handshake at once")
    max_pending_per_ip: int = key(8, section=_NET, help="of which from one remote IP")
    target_peers: int = key(8, section=_NET, help="dial known addresses until this many peers are connected")
    peer_exchange: bool = key(True, section=_NET, help="learn and share peer addresses")
    rate_frames: float = key(2000.0, section=_NET, help="unsolicited frames per second one peer may send "
                                                        "(sustained)")
    burst_frames: int = key(4000, section=_NET, help="unsolicited frames one peer may send at once")
    rate_bytes: float = key(float(32 << 20), section=_NET, help="unsolicited bytes per second one peer may send")
    burst_bytes: int = key(64 << 20, section=_NET, help="unsolicited bytes one peer may send at once")
    max_misbehaviour: int = key(100, section=_NET, help="penalty points before a peer is disconnected and banned")
    ban_seconds: float = key(60.0, section=_NET, help="how long a banned peer stays banned")
    sync_batch: int = key(256, section=_NET, help="blocks per sync response")
    sync_timeout_s: float = key(20.0, section=_NET, help="how long a sync request waits for its answer")
    ping_interval_s: float = key(10.0, section=_NET, help="seconds between pings to a quiet peer")
    idle_timeout_s: float = key(60.0, section=_NET, help="a peer silent this long is disconnected")
    handshake_timeout_s: float = key(10.0, section=_NET, help="a handshake not done in this long is dropped")
    reconnect_s: float = key(1.0, section=_NET, help="first retry delay to a bootstrap peer (doubles up to 30 s)")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_types(type(self), {f.name: getattr(self, f.name) for f in fields(self)}, where="[network] ")
        if self.consensus is not None:
            check_name("consensus", self.consensus, where="[network] ")
        check_name("unseen", self.unseen, where="[network] ")
        for a in (*self.authorities, *self.members):
            parse_address(a)
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None or field_type(type(self), f.name) not in (int, float):
                continue
            if field_type(type(self), f.name) is float:
                _need(math.isfinite(v) and v > 0, f"{f.name} must be a finite number > 0, got {v!r}")
            else:
                _need(v >= 0, f"{f.name} must be a non-negative integer, got {v!r}")
        _need(self.window >= 1, "window must be >= 1")
        _need(self.min_bits <= self.max_bits <= 64, "needs min_bits <= max_bits <= 64")
        _need(1 <= self.sync_batch <= 4096, f"sync_batch must be in 1..4096, got {self.sync_batch}")
        _need(self.max_frame_bytes >= 1 << 16, "max_frame_bytes must be at least 65536")
        _need(self.max_peers >= 1, "max_peers must be >= 1")
        _need(self.outbound_slots < self.max_peers,
              f"outbound_slots ({self.outbound_slots}) must leave room for inbound peers (max_peers {self.max_peers})")
        for name in ("max_inbound_per_ip", "max_pending", "max_pending_per_ip"):
            _need(getattr(self, name) >= 1, f"{name} must be >= 1")

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
        clean = refuse_unknown(data, cls, "[network] ")
        for name, value in clean.items():
            check_types(cls, {name: value}, where="[network] ")
            if isinstance(value, list):
                clean[name] = tuple(value)
            elif field_type(cls, name) is float and isinstance(value, int):
                clean[name] = float(value)
        return cls(**clean)

    def replace(self, **changes: Any) -> "NetworkConfig":
        return replace(self, **changes)


#: Keys of [network] that the genesis block fixes; all nodes of one chain must agree.
CONSENSUS_KEYS = tuple(f.name for f in fields(NetworkConfig) if f.metadata["section"] == _CHAIN)


def _need(cond, what: str) -> None:
    if not cond:
        raise ConfigError(f"[network] {what}")


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
