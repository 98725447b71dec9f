"""Write tests/vectors/aggregation.json: exact inputs and outputs of every rule.

    PYTHONPATH=src python -m tests.vectors.make_aggregation_vectors

Each case gives the fixed-point unit vectors q (integers), the norms and the
outputs as float.hex strings, so another implementation (the EVM twin, a port)
can check bit-for-bit agreement. Before writing, every case is checked against
the slow references in tests/protocol/test_rules.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from learningchain.protocol.aggregation import RULES, Batch, aggregate
from learningchain.protocol.quantize import quantize_unit
from tests.helpers import small_params

BITS = 20
OUT = Path(__file__).with_name("aggregation.json")


def max_messages(rule, n):
    """1024, or the block's own size for a rule that bounds its blocks (mda)."""
    return n if RULES[rule].message_cap else 1024


def case(name, rule, vectors, options=None, batch_size=3, keys=None, round_=0):
    vectors = [np.asarray(v, dtype=np.float64) for v in vectors]
    q = np.stack([quantize_unit(v / np.linalg.norm(v), BITS) for v in vectors])
    norms = np.array([float(np.linalg.norm(v)) for v in vectors])
    keys = keys or [bytes([i + 1]) * 32 for i in range(len(vectors))]
    batch = Batch(q, norms, tuple(keys), BITS, round_)
    d = q.shape[1]
    params = small_params(dim=d, holders=len(vectors), batch_size=batch_size, aggregator=rule,
                          aggregator_options=options or {}, max_messages=max_messages(rule, len(vectors)),
                          model={"kind": "logistic", "inputs": d - 1, "classes": 2})
    agg = aggregate(batch, params)
    return batch, params, {
        "name": name, "rule": rule, "options": options or {}, "batch_size": batch_size, "holders": len(vectors),
        "bits": BITS, "round": round_, "q": q.tolist(), "norms": [float(x).hex() for x in norms],
        "keys": [k.hex() for k in keys], "selection": list(agg.selection),
        "gradient": [float(x).hex() for x in agg.gradient],
    }


def cases():
    rng = np.random.default_rng(2024)
    honest = [np.array([1.0, 2.0, -1.0, 0.5]) + 0.3 * rng.normal(size=4) for _ in range(6)]
    byz = [np.array([40.0, -30.0, 10.0, 5.0]), -3.0 * honest[0]]
    mixed = honest + byz
    v = np.array([1.0, 2.0, 3.0])
    out = [
        case("l-nearest ties break by hash", "l-nearest", [v, v, v, -v], {"l": 2},
             keys=[b"\x09" * 32, b"\x01" * 32, b"\x05" * 32, b"\x02" * 32]),
        case("l-nearest with two outliers", "l-nearest", mixed, {"l": 4}),
        case("l-nearest-bounded caps an inflated norm", "l-nearest-bounded",
             honest + [1e6 * honest[1]], {"l": 4, "bound": 8.0}),
        case("mean", "mean", mixed),
        case("median, even count", "median", mixed),
        case("median, odd count", "median", mixed[:7]),
        case("trimmed mean f=2", "trimmed-mean", mixed, {"f": 2}),
        case("krum f=2", "krum", mixed, {"f": 2}),
        case("multi-krum f=2 m=4", "multi-krum", mixed, {"f": 2, "m": 4}),
        case("bulyan f=1", "bulyan", mixed + [honest[2] * 1.1, honest[3] * 0.9, honest[4]], {"f": 1}),
        case("bulyan with duplicate vectors", "bulyan", [honest[0]] * 4 + honest[1:4] + [byz[0]], {"f": 1}),
        case("centered clipping tau=2", "centered-clipping", mixed, {"tau": 2.0, "iterations": 3}),
        case("geometric median", "geometric-median", mixed),
        case("geometric median, 3 iterations, nu=0.5", "geometric-median", mixed, {"iterations": 3, "nu": 0.5}),
        case("mda f=2", "mda", mixed, {"f": 2}),
        case("nnm then multi-krum f=2", "multi-krum", mixed, {"pre": "nnm", "f": 2}),
        case("bucketing s=3 then median", "median", mixed, {"pre": "bucketing", "bucket": 3}),
        case("arc f=2 then mean", "mean", mixed, {"pre": "arc", "pre_f": 2}),
        case("arc then nnm then krum f=2", "krum", mixed, {"pre": "arc+nnm", "f": 2}),
    ]
    return out


def check(batch, params, entry):
    from tests.protocol import test_rules as ref

    if "pre" in params.aggregator_options:  # pre-aggregations: see tests/protocol/test_defences.py
        return
    x = ref.xs(batch)
    rule, m = entry["rule"], params.batch_size
    grad = np.array([float.fromhex(g) for g in entry["gradient"]])
    if rule == "median":
        assert np.array_equal(grad, np.median(np.array(x), axis=0) / m)
    elif rule == "krum":
        scores = ref.ref_krum_scores(x, params.aggregator_options["f"])
        best = min(range(batch.n), key=lambda i: (scores[i], batch.keys[i]))
        assert entry["selection"] == [best]
    elif rule == "bulyan":
        sel, want = ref.ref_bulyan(x, batch.keys, params.aggregator_options["f"])
        assert tuple(entry["selection"]) == sel
        assert np.allclose(grad, np.array(want) / m, rtol=1e-12)
    elif rule == "geometric-median":
        from tests.protocol.test_defences import ref_geometric_median

        opts = params.aggregator_options
        want = ref_geometric_median(x, opts.get("iterations", 8), opts.get("nu", 1e-6))
        assert np.allclose(grad, want / m, rtol=1e-10)
    elif rule == "mda":
        from tests.protocol.test_defences import ref_mda

        kept, want = ref_mda(x, batch.keys, params.aggregator_options["f"])
        assert tuple(entry["selection"]) == tuple(sorted(kept)) and np.allclose(grad, want / m, rtol=1e-12)
    elif rule == "centered-clipping":
        opts = params.aggregator_options
        assert np.allclose(grad, ref.ref_centered_clipping(x, opts["tau"], opts["iterations"]) / m, rtol=1e-10)


def main():
    data = {"format": "LearningChain aggregation vectors v1: q integers at scale 2^bits, floats as float.hex",
            "cases": []}
    for batch, params, entry in cases():
        check(batch, params, entry)
        data["cases"].append(entry)
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {len(data['cases'])} cases to {OUT}")


if __name__ == "__main__":
    main()
