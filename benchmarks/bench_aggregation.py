"""Time of every aggregation rule, as a ratio to numpy's mean of the same K x d array.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_aggregation.py [--quick] [--markdown FILE]
    python benchmarks/bench_aggregation.py --size 100 1000000 --rules "mean,l-nearest"   # one size, some rules

For each K in {10, 30, 100} and d in {31, 7850, 100000}: K vectors (three
quarters near a common direction, a quarter Gaussian outliers) are encoded as
the chain encodes them (fixed-point unit vectors q, norms s, message hashes as
keys), and each rule runs on a fresh :class:`Batch` (nothing cached from an
earlier call), exactly as validators run it. The batch carries ||q_k||^2 as
message validation computed it (``make_batch`` passes it on); the row
``l-nearest (cold)`` recomputes it too. The baseline is ``np.mean(X, axis=0)``
of the same K x d float64 array, timed in the same run; every figure is a
median over repeated calls.

When the ByzFL package is importable (``pip install --no-deps --target DIR
byzfl==0.0.11`` and DIR on PYTHONPATH) its numpy and torch versions of the
rules it shares are timed on the same array for comparison (float rules, not
exact).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402

from learningchain.protocol.aggregation import RULES, Batch, aggregate  # noqa: E402
from learningchain.protocol.params import ProtocolParams  # noqa: E402
from learningchain.protocol.quantize import quantize_unit  # noqa: E402

KS = (10, 30, 100)
DS = (31, 7850, 100_000)
BITS = 20
RULE_ORDER = ["mean", "l-nearest", "l-nearest (cold)", "l-nearest-bounded", "median", "trimmed-mean", "krum",
              "multi-krum", "bulyan", "centered-clipping"]
BYZFL = {"mean": "Average", "median": "Median", "trimmed-mean": "TrMean", "krum": "Krum",
         "multi-krum": "MultiKrum", "centered-clipping": "CenteredClipping"}


def timed(fn, *, budget: float, min_runs: int = 5, max_runs: int = 2000) -> float:
    """Median seconds per call over as many calls as fit in ``budget``."""
    fn()  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_inputs(k: int, d: int, seed: int = 0):
    rng = np.random.default_rng([seed, k, d])
    honest = k - k // 4
    x = np.empty((k, d))
    x[:honest] = 1.0 + rng.standard_normal((honest, d))
    x[honest:] = 30.0 * rng.standard_normal((k - honest, d))
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    q = np.stack([quantize_unit(x[i] / norms[i], BITS) for i in range(k)])
    qf = q.astype(np.float64)
    sq = np.einsum("ij,ij->i", qf, qf)
    keys = tuple(sorted(bytes(rng.integers(0, 256, 32, dtype=np.uint8)) for _ in range(k)))
    return x, q, norms, keys, sq


def params_for(rule: str, k: int, d: int) -> ProtocolParams:
    f = (k - 1) // 4  # the number of outliers above
    options = {"f": f} if "f" in RULES[rule].options else {}
    return ProtocolParams(model={"kind": "logistic", "inputs": d - 1, "classes": 2}, dim=d, batch_size=10,
                          holders=k, aggregator=rule, aggregator_options=options, mechanism="none", epsilon=0.0,
                          max_messages=1024)


def byzfl_rules():
    """ByzFL's aggregators module, without its package __init__ (which imports
    its training framework and torchvision, not needed to time the rules)."""
    import importlib
    import importlib.util
    import types

    spec = importlib.util.find_spec("byzfl")
    if spec is None or not spec.submodule_search_locations:
        return None
    if "byzfl" not in sys.modules:
        stub = types.ModuleType("byzfl")
        stub.__path__ = list(spec.submodule_search_locations)
        sys.modules["byzfl"] = stub
    try:
        return importlib.import_module("byzfl.aggregators.aggregators")
    except ImportError as exc:
        print(f"(ByzFL found but not importable: {exc})", file=sys.stderr)
        return None


def run(sizes, budget: float, compare: bool, names=tuple(RULE_ORDER)) -> list:
    byzfl = byzfl_rules() if compare else None
    rows = []
    for k, d in sizes:
        x, q, norms, keys, sq = make_inputs(k, d)
        base = [timed(lambda: np.mean(x, axis=0), budget=budget)]
        row = {"K": k, "d": d, "rules": {}, "byzfl_numpy": {}, "byzfl_torch": {}}
        for name in names:
            rule = "l-nearest" if name == "l-nearest (cold)" else name
            params = params_for(rule, k, d)
            cached = None if name == "l-nearest (cold)" else sq
            row["rules"][name] = timed(lambda: aggregate(Batch(q, norms, keys, BITS, 0, cached), params),
                                       budget=budget, min_runs=3)
        if byzfl is not None and names == tuple(RULE_ORDER):
            import torch

            xt = torch.as_tensor(x, dtype=torch.float32)
            f = (k - 1) // 4
            for name, cls in BYZFL.items():
                kwargs = {} if name in ("mean", "median") else ({"tau": 100.0} if name == "centered-clipping"
                                                                 else {"f": f})
                row["byzfl_numpy"][name] = timed(lambda: getattr(byzfl, cls)(**kwargs)(x), budget=budget,
                                                 min_runs=3)
                row["byzfl_torch"][name] = timed(lambda: getattr(byzfl, cls)(**kwargs)(xt), budget=budget,
                                                 min_runs=3)
        base.append(timed(lambda: np.mean(x, axis=0), budget=budget))
        row["mean_s"] = statistics.median(base)
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def format_row(row) -> str:
    m = row["mean_s"]
    parts = [f"K={row['K']:<4} d={row['d']:<7} np.mean {m * 1e3:8.3f} ms |"]
    for name, seconds in row["rules"].items():
        parts.append(f"{name} {seconds / m:7.1f}x")
    return "  ".join(parts)


def markdown(rows) -> str:
    names = list(rows[0]["rules"]) if rows else RULE_ORDER
    lines = ["| K | d | np.mean (ms) | " + " | ".join(names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for row in rows:
        m = row["mean_s"]
        lines.append(f"| {row['K']} | {row['d']} | {m * 1e3:.3f} | "
                     + " | ".join(f"{row['rules'][n] / m:.1f}" for n in names) + " |")
    if any(row["byzfl_numpy"] for row in rows):
        names = list(BYZFL)
        lines += ["", "ByzFL 0.0.11 on the same array, ratio to np.mean (numpy / torch float32):", "",
                  "| K | d | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for row in rows:
            m = row["mean_s"]
            lines.append(f"| {row['K']} | {row['d']} | " + " | ".join(
                f"{row['byzfl_numpy'][n] / m:.1f} / {row['byzfl_torch'][n] / m:.1f}" for n in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only K=100, d=7850 (the targets' size)")
    ap.add_argument("--budget", type=float, default=0.3, help="seconds of repeated calls per measurement")
    ap.add_argument("--no-byzfl", action="store_true", help="skip ByzFL even when it is importable")
    ap.add_argument("--markdown", metavar="FILE", help="also write the table as markdown")
    ap.add_argument("--size", nargs=2, type=int, action="append", metavar=("K", "D"),
                    help="time this K x d only (repeatable), e.g. --size 100 1000000")
    ap.add_argument("--rules", default="", help="comma-separated rows to time (e.g. 'mean,l-nearest'); "
                                                 "ByzFL is timed only with all of them")
    args = ap.parse_args(argv)
    if args.size:
        sizes = [tuple(s) for s in args.size]
    else:
        sizes = [(k, d) for k in ((100,) if args.quick else KS) for d in ((7850,) if args.quick else DS)]
    names = tuple(n.strip() for n in args.rules.split(",") if n.strip()) or tuple(RULE_ORDER)
    unknown = [n for n in names if n not in RULE_ORDER]
    if unknown:
        ap.error(f"unknown rule rows {unknown}; known: {', '.join(RULE_ORDER)}")
    rows = run(sizes, args.budget, compare=not args.no_byzfl, names=names)
    text = markdown(rows)
    print()
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    target = next((r for r in rows if r["K"] == 100 and r["d"] == 7850), None)
    if target and names == tuple(RULE_ORDER):
        m = target["mean_s"]
        ln, mk = target["rules"]["l-nearest"] / m, target["rules"]["multi-krum"] / m
        print(f"targets at K=100, d=7850: l-nearest {ln:.1f}x (target <= 3x), multi-krum {mk:.1f}x (target <= 40x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
