"""A verifiable log of a Flower run aggregated by a chain rule, and its replay.

A log directory holds::

    run.json             the rule, its parameters, the server learning rate, the model layout
    model-000000.npy     the initial global model (flat float64)
    rounds.jsonl         one line a round: base model hash, node ids in key order, norms,
                         keys, excluded clients and why, selection, new model hash
    round-NNNNNN.npz     that round's inputs as the rule saw them (q int32, norms float64)

:func:`verify_log` replays it the way ``learningchain chain verify`` replays a chain:
from the initial model, each round's keys are recomputed from its inputs, the rule
is run again and its selection and model hash must match the line, and the next
round must build on exactly that model (as cast to the client arrays' dtypes). The
first mismatch names its round. What the log proves: that the server applied the
rule to the inputs it recorded. It cannot prove that a client sent those inputs
(Flower replies are not signed); a chain run, whose messages are signed, can.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import LearningChainError
from .rounds import RoundInputs, RoundResult, aggregate_round, model_hash, rule_params, update_key

__all__ = ["RunLog", "LogVerdict", "verify_log", "cast_to_layout"]


def cast_to_layout(flat: np.ndarray, layout: list) -> np.ndarray:
    """The flat model as the clients receive it: each array cast to its dtype, then flat float64 again."""
    parts, at = [], 0
    for _, dtype, shape in layout:
        size = int(np.prod(shape, dtype=np.int64)) if shape else 1
        parts.append(np.asarray(flat[at:at + size]).astype(dtype).astype(np.float64))
        at += size
    return np.concatenate(parts) if parts else np.zeros(0)


class RunLog:
    """Writes the log of one run; ``start`` once, then ``record`` each round."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def start(self, *, rule: str, options: dict, quant_bits: int, server_lr: float, holders: Optional[int],
              layout: list, initial: np.ndarray) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        meta = {"rule": rule, "options": options, "quant_bits": quant_bits, "server_lr": server_lr,
                "holders": holders, "layout": [[k, str(dt), list(sh)] for k, dt, sh in layout],
                "format": 1}
        (self.path / "run.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        np.save(self.path / "model-000000.npy", np.asarray(initial, dtype=np.float64), allow_pickle=False)
        (self.path / "rounds.jsonl").write_text("")

    def record(self, base: np.ndarray, result: RoundResult) -> None:
        inputs = result.inputs
        np.savez(self.path / f"round-{inputs.round:06d}.npz", q=inputs.q, norms=inputs.norms)
        line = {"round": inputs.round, "base_hash": model_hash(base), "node_ids": list(inputs.node_ids),
                "norms": [float(s) for s in inputs.norms], "keys": ["0x" + k.hex() for k in inputs.keys],
                "excluded": {str(k): v for k, v in sorted(inputs.excluded.items())},
                "selection": list(result.selection), "model_hash": model_hash(result.model)}
        with open(self.path / "rounds.jsonl", "a") as f:
            f.write(json.dumps(line, sort_keys=True) + "\n")


@dataclass(frozen=True)
class LogVerdict:
    ok: bool
    rounds: int  # rounds replayed and found correct
    bad_round: Optional[int] = None
    reason: str = ""
    model: Optional[np.ndarray] = None  # the replayed final model

    def __str__(self) -> str:
        if self.ok:
            return f"OK: {self.rounds} rounds replayed"
        return f"INVALID at round {self.bad_round}: {self.reason}"


def _read(path: Path):
    try:
        meta = json.loads((path / "run.json").read_text())
        model = np.load(path / "model-000000.npy", allow_pickle=False).astype(np.float64)
        lines = [json.loads(x) for x in (path / "rounds.jsonl").read_text().splitlines() if x.strip()]
    except (OSError, ValueError) as exc:
        raise LearningChainError(f"{path}: not a readable Flower run log ({exc})") from None
    layout = [(k, np.dtype(dt), tuple(sh)) for k, dt, sh in meta["layout"]]
    return meta, model, lines, layout


def _check_round(line: dict, base: np.ndarray, path: Path, meta: dict):
    """The replayed result of one line, or the reason it does not replay."""
    t = int(line["round"])
    if line["base_hash"] != model_hash(base):
        return None, "its base is not the model the previous round produced"
    try:
        data = np.load(path / f"round-{t:06d}.npz", allow_pickle=False)
        q, norms = data["q"].astype(np.int32), data["norms"].astype(np.float64)
    except (OSError, KeyError, ValueError) as exc:
        return None, f"inputs unreadable ({exc})"
    node_ids = tuple(int(n) for n in line["node_ids"])
    if len(node_ids) != q.shape[0] or [float(s) for s in norms] != line["norms"]:
        return None, "the inputs file disagrees with the log line"
    keys = tuple(update_key(t, n, s, q[i]) for i, (n, s) in enumerate(zip(node_ids, norms)))
    if ["0x" + k.hex() for k in keys] != line["keys"] or list(keys) != sorted(keys):
        return None, "the keys do not commit to the inputs, or are not in canonical order"
    holders = meta["holders"] or len(node_ids) + len(line["excluded"])
    params = rule_params(meta["rule"], meta["options"], dim=base.shape[0], holders=holders,
                         quant_bits=meta["quant_bits"])
    inputs = RoundInputs(t, node_ids, norms, q, keys)
    result = aggregate_round(base, inputs, params, server_lr=meta["server_lr"])
    if list(result.selection) != line["selection"]:
        return None, f"selection {line['selection']} but the rule selects {list(result.selection)}"
    if model_hash(result.model) != line["model_hash"]:
        return None, "the model is not what the rule gives"
    return result, ""


def verify_log(path: str | Path) -> LogVerdict:
    """Replay a run log from its initial model; the first round that does not replay is named."""
    path = Path(path)
    meta, model, lines, layout = _read(path)
    base = cast_to_layout(model, layout)
    for count, line in enumerate(lines):
        if int(line.get("round", -1)) != count + 1:
            return LogVerdict(False, count, count + 1, f"rounds out of order: found {line.get('round')}")
        result, why = _check_round(line, base, path, meta)
        if result is None:
            return LogVerdict(False, count, count + 1, why)
        model = result.model
        base = cast_to_layout(model, layout)
    return LogVerdict(True, len(lines), model=model)
