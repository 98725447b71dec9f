"""Generate tests/vectors/lnearest.json: l-nearest inputs with the expected outcome.

The expected values are computed here from the definitions alone (DESIGN.md
section 3, docs/ETHEREUM.md), with Python integers, fractions and plain floats,
without importing the package:

* selection: sort by the exact cosine sign(a_k) a_k^2 / n_k (a Fraction),
  descending, ties to the lower key; keep the first min(l, n); ascending indices;
* model_float: the native update, w - lr * (g + lam * w) with
  g = (sum over the selection, in ascending order, of s_k * (q_k / 2^bits)) / (l * m),
  each operation one IEEE double rounding (what numpy does elementwise);
* model_fixed: the contract's update (fixed-point, each division rounded to
  nearest with ties away from zero).

Senders are test accounts derived from a public label (their keys are in the
file, so the contract tests can send from them); the tie-break key is the
contract's, keccak256(abi.encode(round, sender)), in round 0.

Run ``python tests/vectors/generate_lnearest.py`` to rewrite the file; the
tests read it and never regenerate it.
"""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path

import coincurve
from Crypto.Hash import keccak

MODEL_BITS, NORM_BITS, RATE_BITS = 40, 32, 32


def keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def tie_key(round_: int, sender: bytes) -> bytes:
    return keccak256(round_.to_bytes(32, "big") + b"\0" * 12 + sender)


def test_account(label: str) -> tuple[bytes, bytes]:
    """A deterministic test key (never a real one) and its Ethereum address."""
    secret = keccak256(b"learningchain test vector " + label.encode())
    public = coincurve.PrivateKey(secret).public_key.format(compressed=False)[1:]
    return secret, keccak256(public)[12:]


def rdiv(x: int, y: int) -> int:
    r = (abs(x) + y // 2) // y
    return r if x >= 0 else -r


def quantize(u, bits):
    return [int(round(x * 2.0**bits)) for x in u]


def unit(v):
    n = sum(x * x for x in v) ** 0.5
    return [x / n for x in v]


def expected(case):
    bits, l, m = case["quant_bits"], case["l"], case["batch_size"]
    msgs = case["messages"]
    q = [msg["q"] for msg in msgs]
    d = len(q[0])
    v = [sum(row[i] for row in q) for i in range(d)]
    scores = []
    for k, row in enumerate(q):
        a = sum(v[i] * row[i] for i in range(d))
        n2 = sum(x * x for x in row)
        scores.append((Fraction(a * abs(a), n2), bytes.fromhex(msgs[k]["key"][2:]), k))
    ranked = sorted(scores, key=lambda s: (-s[0], s[1]))
    sel = sorted(s[2] for s in ranked[: min(l, len(q))])
    # native float update
    w = case["model"]
    acc = [0.0] * d
    for k in sel:
        s = msgs[k]["norm"]
        acc = [acc[i] + s * (q[k][i] * (1.0 / float(2**bits))) for i in range(d)]
    g = [x / float(len(sel) * m) for x in acc]
    lr, lam = case["lr"], case["lam"]
    model_float = [w[i] - lr * (g[i] + lam * w[i]) for i in range(d)]
    # contract update
    W = case["model_fixed"]
    LR, LAM = case["lr_fixed"], case["lam_fixed"]
    den = 2 ** (NORM_BITS + bits) * len(sel) * m
    model_fixed = []
    for i in range(d):
        A = sum(msgs[k]["norm_fixed"] * q[k][i] for k in sel)
        gi = rdiv(A * 2**MODEL_BITS, den)
        decay = rdiv(LAM * W[i], 2**RATE_BITS)
        model_fixed.append(W[i] - rdiv(LR * (gi + decay), 2**RATE_BITS))
    return {"selection": sel, "model_float": model_float, "model_fixed": model_fixed}


def make_case(name, rng, *, d, k, l, m, lr, lam, round_=0, ties=(), flips=0, bits=20):
    direction = [rng.gauss(0, 1) for _ in range(d)]
    vecs = [unit([direction[i] + 0.7 * rng.gauss(0, 1) for i in range(d)]) for _ in range(k)]
    for j in ties[1:]:  # exact copies under other senders: equal scores, broken by key
        vecs[j] = list(vecs[ties[0]])
    for j in range(flips):  # opposite directions: negative cosines
        vecs[j] = [-x for x in vecs[j]]
    msgs = []
    for i, vec in enumerate(vecs):
        secret, sender = test_account(f"{name}/{i}")
        norm = rng.uniform(0.2, 40.0)
        msgs.append({"secret": "0x" + secret.hex(), "sender": "0x" + sender.hex(),
                     "key": "0x" + tie_key(round_, sender).hex(),
                     "q": quantize(vec, bits), "norm": norm, "norm_fixed": int(round(norm * 2.0**NORM_BITS))})
    model = [rng.gauss(0, 0.5) for _ in range(d)]
    case = {"name": name, "round": round_, "quant_bits": bits, "norm_tol_bits": 10, "l": l, "batch_size": m,
            "lr": lr, "lam": lam, "lr_fixed": int(round(lr * 2.0**RATE_BITS)),
            "lam_fixed": int(round(lam * 2.0**RATE_BITS)), "model": model,
            "model_fixed": [int(round(x * 2.0**MODEL_BITS)) for x in model], "messages": msgs}
    case["expected"] = expected(case)
    if ties:
        chosen = set(case["expected"]["selection"])
        assert 0 < len(chosen & set(ties)) < len(ties), "the tie group must straddle the cut"
    return case


def main():
    rng = random.Random(20180810)
    cases = [
        make_case("ten-holders-d31", rng, d=31, k=10, l=5, m=57, lr=0.5, lam=0.0),
        make_case("ties-and-opposites-d9", rng, d=9, k=7, l=2, m=3, lr=0.1, lam=0.01, ties=(2, 5, 6),
                  flips=2),
        make_case("l-above-n-d11", rng, d=11, k=3, l=5, m=1, lr=1.0, lam=0.5),
        make_case("one-holder-d8", rng, d=8, k=1, l=1, m=10, lr=0.25, lam=0.0),
    ]
    doc = {"about": "l-nearest inputs and expected selection/model (see generate_lnearest.py)",
           "scales": {"model_bits": MODEL_BITS, "norm_bits": NORM_BITS, "rate_bits": RATE_BITS},
           "cases": cases}
    out = Path(__file__).with_name("lnearest.json")
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
