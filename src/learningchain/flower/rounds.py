"""One round of robust aggregation over clients' model updates, exactly as the chain does it.

Flower clients return their locally trained weights ``w_k``; the server holds the
global weights ``w``. Each update ``delta_k = w_k - w`` becomes what a LearningChain
message carries (Eq. 11-13): its norm ``s_k`` (float64) and its unit direction
quantised to integers, ``q_k = round(delta_k / s_k * 2**bits)``. The rows go in
canonical order (ascending key, the keccak-256 of the round, the client's node id,
the norm and q), and the chain's own rule (:func:`learningchain.protocol.aggregation.aggregate`)
selects and combines them with the same integer dot products and fixed-order sums
that validators recompute. The new global weights are ``w + server_lr * g``, elementwise.

So a round is a pure function of (w, the updates, the parameters): anyone holding
the round's inputs recomputes its selection and its result bit for bit
(:mod:`learningchain.flower.log` replays a run that way). This module does not
import flwr.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np

from ..crypto import keccak256
from ..errors import ConfigError, InvalidMessage
from ..protocol.aggregation import Batch, aggregate, check_rule
from ..protocol.params import ProtocolParams
from ..protocol.quantize import check_unit, quantize_unit

__all__ = ["RoundInputs", "RoundResult", "rule_params", "prepare_updates", "aggregate_round", "model_hash",
           "update_key"]

_KEY_TAG = b"learningchain/flower-update/v1"


def rule_params(rule: str, options: dict | None, *, dim: int, holders: int, quant_bits: int = 20) -> ProtocolParams:
    """The chain parameters a rule reads, for updates of ``dim`` coordinates from ``holders`` clients.

    No privacy mechanism and no clipping: a Flower update is what the client sends.
    ``batch_size`` is 1, so a rule's gradient is its combination of the updates
    (l-nearest: the mean of the l selected updates).
    """
    params = ProtocolParams(dim=int(dim), holders=int(holders), aggregator=rule,
                            aggregator_options=dict(options or {}), batch_size=1, mechanism="none",
                            clip_mode="none", epsilon=0.0, quant_bits=int(quant_bits),
                            max_messages=max(1, int(holders)))
    check_rule(params)
    return params


def model_hash(flat: np.ndarray) -> str:
    """0x-hex keccak-256 of a flat float64 model, little-endian."""
    return "0x" + keccak256(np.ascontiguousarray(flat, dtype="<f8").tobytes()).hex()


def update_key(round_: int, node_id: int, norm: float, q: np.ndarray) -> bytes:
    """The tie-break and canonical order of an update: it commits to every number the rule reads."""
    head = _KEY_TAG + struct.pack("<QQd", int(round_), int(node_id), float(norm))
    return keccak256(head + np.ascontiguousarray(q, dtype="<i4").tobytes())


@dataclass(frozen=True)
class RoundInputs:
    """The updates of one round as the rule sees them, rows in canonical (key) order."""

    round: int  # the server round, from 1
    node_ids: tuple  # client node id of each row
    norms: np.ndarray  # (n,) float64 s_k
    q: np.ndarray  # (n, d) int32 fixed-point unit directions
    keys: tuple  # (n,) 32-byte keys, ascending
    excluded: dict = field(default_factory=dict)  # node id -> why its update was left out

    def batch(self, bits: int) -> Batch:
        # the chain's round is the height the messages build on: server round 1 builds on the initial model
        return Batch(q=self.q, norms=self.norms, keys=self.keys, bits=bits, round=self.round - 1)


@dataclass(frozen=True)
class RoundResult:
    inputs: RoundInputs
    selection: tuple  # node ids whose updates shaped the new model, ascending by key
    model: np.ndarray  # the new flat global model (float64)


def prepare_updates(round_: int, base: np.ndarray, updates, *, bits: int, tol_bits: int = 10,
                    max_norm: float = 1e15) -> RoundInputs:
    """``updates``: (node id, flat client weights) pairs. An update that cannot be a
    message (another shape, not finite, no movement, a norm above ``max_norm``, or a
    node id seen twice) is left out and recorded with the reason."""
    base = np.asarray(base, dtype=np.float64)
    rows, excluded = [], {}
    seen = set()
    for node_id, weights in updates:
        node_id = int(node_id)
        why = None
        weights = np.asarray(weights, dtype=np.float64)
        if node_id in seen:
            why = "duplicate node id"
        elif weights.shape != base.shape:
            why = f"shape {weights.shape}, the model has {base.shape}"
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                delta = weights - base
                norm = float(np.linalg.norm(delta))
            if not np.all(np.isfinite(delta)) or not math.isfinite(norm):
                why = "not finite"
            elif norm == 0.0:
                why = "no change to the model"
            elif norm > max_norm:
                why = f"norm {norm:.3g} above {max_norm:.3g}"
            else:
                q = quantize_unit(delta / norm, bits)
                try:
                    check_unit(q, bits, tol_bits)
                except InvalidMessage as exc:  # a direction too short to quantise (e.g. underflow)
                    why = f"direction not representable: {exc}"
                else:
                    rows.append((update_key(round_, node_id, norm, q), node_id, norm, q))
        seen.add(node_id)
        if why is not None:
            excluded[node_id] = why
    rows.sort(key=lambda r: r[0])
    dim = base.shape[0]
    q = np.stack([r[3] for r in rows]) if rows else np.zeros((0, dim), dtype=np.int32)
    return RoundInputs(round_, tuple(r[1] for r in rows), np.array([r[2] for r in rows], dtype=np.float64), q,
                       tuple(r[0] for r in rows), excluded)


def aggregate_round(base: np.ndarray, inputs: RoundInputs, params: ProtocolParams, *,
                    server_lr: float = 1.0) -> RoundResult:
    """The rule on the round's updates and the new global model ``w + server_lr * g``."""
    if not inputs.node_ids:
        raise ConfigError(f"round {inputs.round}: no update could be aggregated ({inputs.excluded})")
    agg = aggregate(inputs.batch(params.quant_bits), params)
    step = np.multiply(agg.gradient, float(server_lr))
    model = np.add(np.asarray(base, dtype=np.float64), step)
    return RoundResult(inputs, tuple(inputs.node_ids[i] for i in agg.selection), model)
