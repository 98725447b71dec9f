"""Every rule reproduces the shared JSON vectors bit for bit (tests/vectors/aggregation.json)."""

import json
from pathlib import Path

import numpy as np
import pytest

from learningchain.protocol.aggregation import RULES, Batch, aggregate

from ..helpers import small_params

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "aggregation.json").read_text())


def test_vectors_cover_every_rule():
    assert {c["rule"] for c in VECTORS["cases"]} == set(RULES)


@pytest.mark.parametrize("entry", VECTORS["cases"], ids=lambda c: c["name"])
def test_rule_reproduces_the_vector_exactly(entry):
    q = np.array(entry["q"], dtype=np.int32)
    norms = np.array([float.fromhex(x) for x in entry["norms"]])
    keys = tuple(bytes.fromhex(k) for k in entry["keys"])
    batch = Batch(q, norms, keys, entry["bits"], entry["round"])
    d = q.shape[1]
    params = small_params(dim=d, holders=entry["holders"], batch_size=entry["batch_size"], aggregator=entry["rule"],
                          aggregator_options=entry["options"],
                          max_messages=entry["holders"] if RULES[entry["rule"]].message_cap else 1024,
                          model={"kind": "logistic", "inputs": d - 1, "classes": 2})
    agg = aggregate(batch, params)
    assert list(agg.selection) == entry["selection"]
    assert [float(x).hex() for x in agg.gradient] == entry["gradient"]
