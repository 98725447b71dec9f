"""The run's evaluator and report, the same for every backend.

:class:`Evaluator` scores a model vector (an observer, not consensus);
:func:`common_summary` is the end of a run on any backend (final evaluation,
centralized baseline, privacy report); :func:`write_outputs` writes the run
directory (``summary.json``, ``metrics.csv``, ``model.npy``, ``model.json``,
``curve.png``).
"""

from __future__ import annotations

import csv
import json
import math
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from tqdm import tqdm

from ..config import TrainConfig
from ..models import build_model, error_rate, mean_loss, set_flat
from ..parties import Parties
from ..privacy.accounting import privacy_report
from ..privacy.secure import generator_of
from ..types import hexstr
from .baseline import train_centralized

__all__ = ["Evaluator", "backdoor_attack", "common_summary", "count_reasons", "curve_figure", "curve_title",
           "progress_bar", "status_printer", "write_curve", "write_outputs"]


class Evaluator:
    """Test error and training loss of a flat model vector (observer, not consensus).

    With a ``backdoor`` attack (one with ``stamp`` and ``target``), also its
    attack success rate: the share of the test images not of the target class
    that, with the trigger stamped, the model classifies as the target."""

    def __init__(self, spec, dataset, backdoor=None):
        self.spec = spec
        self.model = build_model(spec)
        self.xe = torch.as_tensor(dataset.x_test)
        self.ye = torch.as_tensor(dataset.y_test)
        self.xt = torch.as_tensor(dataset.x_train)
        self.yt = torch.as_tensor(dataset.y_train)
        self.backdoor = backdoor
        if backdoor is not None:
            keep = self.ye != backdoor.target
            self.xb = backdoor.stamp(self.xe[keep])
            self.yb = torch.full((int(keep.sum()),), backdoor.target, dtype=self.ye.dtype)

    def attack_success(self, w: np.ndarray) -> Optional[float]:
        """The backdoor's attack success rate on ``w`` (None without a backdoor)."""
        if self.backdoor is None:
            return None
        if not np.all(np.isfinite(w)):
            return 0.0
        set_flat(self.model, w)
        return 1.0 - error_rate(self.model, self.spec, self.xb, self.yb)

    def __call__(self, w: np.ndarray) -> tuple[float, float]:
        if not np.all(np.isfinite(w)):
            return 1.0, float("inf")
        set_flat(self.model, w)
        return error_rate(self.model, self.spec, self.xe, self.ye), mean_loss(self.model, self.spec, self.xt, self.yt)

    def test_error(self, w: np.ndarray) -> float:
        """The test error of ``w`` alone (what ``self(w)[0]`` is)."""
        if not np.all(np.isfinite(w)):
            return 1.0
        set_flat(self.model, w)
        return error_rate(self.model, self.spec, self.xe, self.ye)


def curve_title(summary: dict, dataset_name: str) -> str:
    """The run plot's title: data set, model, rule, holders and Byzantine ones,
    privacy, backend; a Byzantine-miner run names its miners and their attack."""
    model = summary.get("model") or {}
    kind = model.get("kind", "?") if isinstance(model, dict) else str(model)
    if kind == "mlp" and model.get("hidden"):
        kind = f"mlp {'x'.join(str(h) for h in model['hidden'])}"
    cfg = summary.get("config") or {}
    parties = f"K={summary['holders']}"
    if summary.get("byzantine"):
        parties += f", {summary['byzantine']} Byzantine holders ({summary.get('attack')})"
    if summary.get("byzantine_miners"):
        parties += (f", {summary['byzantine_miners']} Byzantine miners ({summary.get('byzantine_power', 0):.0%} "
                    f"of hash power, {summary.get('miner_attack')})")
    if not summary.get("byzantine") and not summary.get("byzantine_miners"):
        parties += ", no Byzantine"
    privacy = summary.get("privacy") or {}
    if privacy.get("mechanism", "none") == "none":
        dp = "no DP"
    else:
        dp = f"{privacy['mechanism']} eps={cfg.get('epsilon', summary.get('epsilon_per_round'))}"
        if privacy.get("schedule") not in (None, "constant"):
            dp += f" ({privacy['schedule']})"
    backend = summary.get("backend") or cfg.get("backend") or "native"
    return f"{dataset_name}, {kind}, {summary.get('aggregator')}, {dp}, {backend} backend\n{parties}"


def curve_figure(rows: list, baseline_curve: list, title: str):
    """The run plot as a matplotlib Figure: the head block's test error against its
    height (a round whose block honest nodes refused adds no point), the
    centralized baseline up to the same height, and a y-axis fitted to the data,
    logarithmic when the errors span more than a decade."""
    by_height: dict = {}
    for r in rows:
        if r.get("test_error") is not None:
            by_height[int(r.get("height", r["round"]))] = float(r["test_error"])
    xs = sorted(by_height)
    ys = [by_height[x] for x in xs]
    top = max(xs) if xs else max((int(r.get("height", r["round"])) for r in rows), default=0)
    base = [(int(t), float(e)) for t, e in baseline_curve or [] if int(t) <= top]
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(xs, ys, label="LearningChain (head block)")
    if base:
        bx, by = zip(*base)
        ax.plot(bx, by, "--", label="centralized baseline")
    ax.set_xlabel("block height")
    ax.set_ylabel("test error")
    ax.set_xlim(0, max(1, top))
    values = [v for v in ys + [e for _, e in base] if math.isfinite(v)]
    positive = [v for v in values if v > 0]
    if positive and max(positive) > 10 * min(positive):
        lo, hi = min(positive), max(positive)
        if len(positive) == len(values):
            ax.set_yscale("log")
            ax.set_ylim(lo / 1.25, hi * 1.25)
        else:  # an error of exactly 0 has no logarithm: linear below the smallest positive error
            ax.set_yscale("symlog", linthresh=10 ** math.floor(math.log10(lo)), linscale=0.5)
            ax.set_ylim(0.0, hi * 1.25)
    elif values:
        lo, hi = min(values), max(values)
        pad = max(0.05 * (hi - lo), 0.02 * hi, 1e-3)
        ax.set_ylim(max(0.0, lo - pad), hi + pad)
    else:
        ax.set_ylim(0, 1)
    if ax.get_yscale() != "linear":
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:g}" if v > 0 and round(v / 10 ** math.floor(math.log10(v))) in (2, 5) else ""))
    ax.set_title("\n".join(textwrap.fill(line, 78) for line in title.split("\n")), fontsize=9)
    ax.grid(alpha=0.3, which="both" if ax.get_yscale() != "linear" else "major")
    ax.legend(fontsize=8)
    return fig


def write_curve(path: Path, rows: list, baseline_curve: list, title: str) -> None:
    """The run plot, written to ``path``."""
    fig = curve_figure(rows, baseline_curve, title)
    fig.savefig(path, dpi=120)


def progress_bar(cfg: TrainConfig, progress: Optional[bool], desc: str, unit: str, *, initial: int = 0):
    """The run's progress bar (shown when ``progress``, else as the config says);
    ``initial``: rounds a resumed run already played."""
    show = cfg.progress if progress is None else progress
    return tqdm(total=cfg.rounds, initial=initial, disable=None if show else True, desc=desc, unit=unit,
                mininterval=0.5)


def status_printer(cfg: TrainConfig, progress: Optional[bool]) -> Callable[[str], None]:
    """What the end of a run prints, after the progress bar, while it works: one line
    per step on stderr (nothing when the bar is off)."""
    show = cfg.progress if progress is None else progress

    def say(message: str) -> None:
        if show:
            print(f"  {message}", file=sys.stderr, flush=True)

    return say


def common_summary(cfg, parties, rows, head, evaluate, stopped_by, started: float,
                   say: Callable[[str], None] = lambda message: None) -> tuple[dict, dict]:
    """The end of a run on any backend (native chain or Ethereum): the head model's
    final evaluation, the centralized baseline, the privacy report, and the summary
    keys every backend reports. Returns (summary, baseline). An interrupted run
    (``stopped_by`` "interrupted") has no baseline."""
    final_err, final_loss = evaluate(head.model)
    interrupted = stopped_by == "interrupted"
    if interrupted:  # no baseline: the user asked to stop
        baseline = {"test_error": None, "train_loss": None, "curve": []}
    else:
        say(f"centralized baseline: {cfg.rounds} rounds of full-batch gradient descent on the "
            f"{len(parties.dataset.y_train)} pooled training examples ...")
        baseline = train_centralized(parties.spec, parties.genesis.model, parties.dataset.x_train,
                                     parties.dataset.y_train, parties.dataset.x_test, parties.dataset.y_test,
                                     lr=cfg.lr, lam=cfg.lam, rounds=cfg.rounds, eval_every=cfg.eval_every)
    privacy = privacy_report(parties.params, len(rows), holder_examples=[h.examples for h in parties.holders],
                             delta=cfg.delta, target_epsilon=cfg.target_epsilon, sampling=cfg.sampling,
                             generator=generator_of(cfg.secure_rng, in_process=True))
    wall = time.perf_counter() - started
    return {
        "dataset": parties.dataset.describe(),
        "model": parties.spec,
        "parameters": parties.params.dim,
        "holders": cfg.holders,
        "miners": cfg.miners,
        "byzantine": cfg.byzantine,
        "byzantine_holders": parties.byzantine_holders,
        "attack": cfg.attack if cfg.byzantine else None,
        "aggregator": cfg.aggregator,
        "test_error": final_err,
        **({"attack_success_rate": evaluate.attack_success(head.model)} if _backdoor_of(evaluate) else {}),
        "train_loss": final_loss,
        "baseline_test_error": baseline["test_error"],
        "baseline_train_loss": baseline["train_loss"],
        "rounds": len(rows),
        "stopped_by": stopped_by,
        "interrupted": interrupted,
        "height": head.height,
        "head_hash": hexstr(head.hash),
        "genesis_hash": hexstr(parties.genesis.hash),
        "epsilon_per_round": privacy["epsilon_per_round"],
        "epsilon_total": privacy["epsilon_total"],
        "epsilon_total_tight": privacy.get("epsilon_total_tight"),
        "delta_tight": privacy.get("delta_tight"),
        "privacy": privacy,
        "wall_seconds": round(wall, 3),
        "seconds_per_round": round(sum(r["seconds"] for r in rows) / max(1, len(rows)), 6),
        "config": cfg.to_dict(),
    }, baseline


def _backdoor_of(evaluate) -> bool:
    return getattr(evaluate, "backdoor", None) is not None


def backdoor_attack(parties: Parties):
    """The run's backdoor attack (the one the evaluator scores; a Sybil attacker's inner one), or None."""
    inner = (getattr(a, "inner", a) for a in parties.attacks.values())
    return next((a for a in inner if getattr(a, "backdoor", False)), None)


def count_reasons(rejected: dict) -> dict:
    """Blocks refused, by reason."""
    counts: dict = {}
    for reason in rejected.values():
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def write_outputs(out: Path, summary: dict, rows: list, baseline_curve: list, parties: Parties, head) -> None:
    """summary.json, metrics.csv, model.npy, model.json and curve.png of a run on any backend."""
    with open(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2, default=_json_default)
        fh.write("\n")
    with open(out / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0].keys()) if rows else ["round"])
        writer.writeheader()
        writer.writerows(rows)
    np.save(out / "model.npy", np.asarray(head.model, dtype=np.float64))
    with open(out / "model.json", "w") as fh:
        json.dump({"spec": parties.spec, "dim": parties.params.dim, "block": hexstr(head.hash),
                   "height": head.height, "file": "model.npy"}, fh, indent=2)
        fh.write("\n")
    write_curve(out / "curve.png", rows, baseline_curve, curve_title(summary, parties.dataset.name))


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, bytes):
        return hexstr(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")
