"""LearningChain's aggregation rules as a Flower strategy (Message API, flwr >= 1.20).

``ChainRule`` is Flower's ``FedAvg`` with its aggregation replaced by one of the
exact rules of :mod:`learningchain.protocol.aggregation`: l-nearest (the paper's
Eq. 14-16), l-nearest-bounded, mean, median, trimmed mean, Krum, multi-Krum,
Bulyan or centered clipping. Sampling, configuration, evaluation and metrics stay
Flower's. With ``log_dir`` it writes a log that :func:`learningchain.flower.verify_log`
replays bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import INFO
from typing import Optional

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore import log

from ..protocol.params import ProtocolParams
from .log import RunLog
from .rounds import aggregate_round, prepare_updates, rule_params

__all__ = ["ChainRule", "flatten", "unflatten"]


def flatten(record: ArrayRecord) -> tuple[np.ndarray, list]:
    """(flat float64 vector, layout [(key, dtype, shape)]) of an ArrayRecord, in its key order."""
    layout, parts = [], []
    for key, array in record.items():
        a = array.numpy()
        layout.append((key, a.dtype, a.shape))
        parts.append(np.asarray(a, dtype=np.float64).ravel())
    return (np.concatenate(parts) if parts else np.zeros(0)), layout


def unflatten(flat: np.ndarray, layout: list) -> ArrayRecord:
    arrays, at = {}, 0
    for key, dtype, shape in layout:
        size = int(np.prod(shape, dtype=np.int64)) if shape else 1
        arrays[key] = Array(np.asarray(flat[at:at + size]).astype(dtype).reshape(shape))
        at += size
    return ArrayRecord(arrays)


class ChainRule(FedAvg):
    """A Flower strategy that aggregates clients' updates with a LearningChain rule.

    Parameters beyond FedAvg's: ``rule`` (default ``"l-nearest"``) and
    ``rule_options`` (e.g. ``{"l": 6}``; l defaults to ceil(K/2), f to ceil(K/2) - 1),
    ``holders`` (K, the number of clients the defaults assume; default: the replies
    of each round), ``server_lr`` (the new model is ``w + server_lr * g``),
    ``quant_bits`` (the fixed-point scale 2**bits of the directions) and ``log_dir``.
    """

    def __init__(self, *, rule: str = "l-nearest", rule_options: Optional[dict] = None,
                 holders: Optional[int] = None, server_lr: float = 1.0, quant_bits: int = 20,
                 log_dir: Optional[str] = None, **fedavg_options) -> None:
        super().__init__(**fedavg_options)
        self.rule = rule
        self.rule_options = dict(rule_options or {})
        self.holders = holders
        self.server_lr = float(server_lr)
        self.quant_bits = int(quant_bits)
        rule_params(rule, self.rule_options, dim=1, holders=holders or 1, quant_bits=quant_bits)  # refuse early
        self.log = RunLog(log_dir) if log_dir is not None else None
        self._base: Optional[np.ndarray] = None
        self._layout: Optional[list] = None
        self.selections: dict[int, tuple] = {}  # round -> node ids selected
        self.excluded: dict[int, dict] = {}  # round -> node id -> why

    def summary(self) -> None:
        log(INFO, "\t├──> LearningChain rule: %s %s", self.rule, self.rule_options or "")
        super().summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        base, layout = flatten(arrays)
        if self.log is not None and self._base is None:
            self.log.start(rule=self.rule, options=self.rule_options, quant_bits=self.quant_bits,
                           server_lr=self.server_lr, holders=self.holders, layout=layout, initial=base)
        self._base, self._layout = base, layout
        return super().configure_train(server_round, arrays, config, grid)

    def params_for(self, replies: int) -> ProtocolParams:
        return rule_params(self.rule, self.rule_options, dim=self._base.shape[0],
                           holders=self.holders or replies, quant_bits=self.quant_bits)

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[Optional[ArrayRecord], Optional[MetricRecord]]:
        valid, _ = self._check_and_log_replies(replies, is_train=True, validate=False)
        if not valid or self._base is None:
            return None, None
        updates = []
        for msg in valid:
            record = msg.content.array_records.get(self.arrayrecord_key)
            flat = flatten(record)[0] if record is not None else np.zeros(0)
            updates.append((msg.metadata.src_node_id, flat))
        params = self.params_for(len(updates))
        inputs = prepare_updates(server_round, self._base, updates, bits=self.quant_bits,
                                 max_norm=params.max_norm)
        self.excluded[server_round] = dict(inputs.excluded)
        if not inputs.node_ids:
            log(INFO, "aggregate_train: no usable update in round %s: %s", server_round, inputs.excluded)
            return None, None
        result = aggregate_round(self._base, inputs, params, server_lr=self.server_lr)
        if self.log is not None:
            self.log.record(self._base, result)
        self.selections[server_round] = result.selection
        log(INFO, "aggregate_train: %s selected %s of %s updates", self.rule, len(result.selection),
            len(inputs.node_ids))
        chosen = set(result.selection)
        selected = [m.content for m in valid if m.metadata.src_node_id in chosen]
        metrics = self.train_metrics_aggr_fn(selected, self.weighted_by_key) if selected else None
        return unflatten(result.model, self._layout), metrics
