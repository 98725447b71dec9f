"""The shared l-nearest vectors (tests/vectors/lnearest.json) against the native rule.

The same file is fed to the Ethereum contract in tests/ethereum; its expected
values come from tests/vectors/generate_lnearest.py, which works from the
definitions alone (exact fractions for the ranking, plain IEEE floats for the
update) without importing the package.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from learningchain.protocol import ProtocolParams, aggregate, apply_update, compute_l_nearest
from learningchain.protocol.aggregation import Batch
from learningchain.protocol.quantize import check_unit

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "lnearest.json").read_text())["cases"]


def batch_of(case):
    q = np.array([m["q"] for m in case["messages"]], dtype=np.int32)
    norms = np.array([m["norm"] for m in case["messages"]], dtype=np.float64)
    keys = tuple(bytes.fromhex(m["key"][2:]) for m in case["messages"]) 
    return Batch(q, norms, keys, case["quant_bits"])


def params_of(case):
    d = len(case["model"])
    return ProtocolParams(model={"kind": "logistic", "inputs": d - 1, "classes": 2}, dim=d, lr=case["lr"],
                          lam=case["lam"], batch_size=case["batch_size"], holders=len(case["messages"]),
                          aggregator_options={"l": case["l"]}, mechanism="none", epsilon=0.0,
                          quant_bits=case["quant_bits"], norm_tol_bits=case["norm_tol_bits"])


@pytest.mark.parametrize("case", VECTORS, ids=[c["name"] for c in VECTORS])
def test_native_rule_selects_the_vector_selection(case):
    batch = batch_of(case)
    for row in batch.q:
        check_unit(row, case["quant_bits"], case["norm_tol_bits"])
    assert list(compute_l_nearest(batch, case["l"])) == case["expected"]["selection"]


@pytest.mark.parametrize("case", VECTORS, ids=[c["name"] for c in VECTORS])
def test_native_update_gives_the_vector_model_bit_for_bit(case):
    params = params_of(case)
    agg = aggregate(batch_of(case), params)
    model = apply_update(np.array(case["model"]), agg.gradient, params)
    assert list(agg.selection) == case["expected"]["selection"]
    assert model.tobytes() == np.array(case["expected"]["model_float"]).tobytes()


def test_the_vectors_contain_a_tie_broken_by_key():
    case = next(c for c in VECTORS if "ties" in c["name"])
    qs = [tuple(m["q"]) for m in case["messages"]]
    tied = [i for i, q in enumerate(qs) if qs.count(q) > 1]
    chosen = set(case["expected"]["selection"])
    assert 0 < len(chosen & set(tied)) < len(tied)
    # the lowest keys among the tied messages are the ones kept
    by_key = sorted(tied, key=lambda i: case["messages"][i]["key"])
    assert set(by_key[: len(chosen & set(tied))]) == chosen & set(tied)
