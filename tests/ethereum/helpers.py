"""Builders for the contract tests: deploy with explicit parameters, submit from fresh accounts."""

from __future__ import annotations

import numpy as np

from learningchain.ethereum import fixedpoint as fp
from learningchain.ethereum.chain import Account
from learningchain.ethereum.contract import ContractParams, max_chunk_words
from learningchain.ethereum.fixedpoint import FixedRule
from learningchain.ethereum.network import Deployment

_COUNTER = [0]


def fresh_account(chain, funder, value=10**17) -> Account:
    from eth_account import Account as EA

    _COUNTER[0] += 1
    acct = Account(EA.create(extra_entropy=str(_COUNTER[0])))
    chain.transfer(funder, acct.address, value)
    return acct


def deploy(chain, owner, *, d, l, m=1, lr=0.5, lam=0.0, messages=16, rounds=100, reward=0, chunk_words=None,
           w0=None, bits=20, tol=10, min_messages=1, quorum=None, window=0, bond=0):
    rule = FixedRule(d, bits, tol, l, m, fp.encode_rate(lr), fp.encode_rate(lam))
    words = fp.words_for(d)
    most = max_chunk_words(messages)
    cw = min(words, most) if chunk_words is None else chunk_words
    cparams = ContractParams(rule, min_messages, messages, cw, rounds, reward, quorum, window, bond)
    w0 = np.zeros(d) if w0 is None else np.asarray(w0, dtype=np.float64)
    return Deployment.deploy(chain, owner, cparams, w0)


def submit_all(dep, funder, rnd, qs, norms_fixed, accounts=None):
    """Submit each (q, norm) from its own fresh account; returns the (sender, norm, packed) list."""
    out = []
    for i, (q, s) in enumerate(zip(qs, norms_fixed)):
        acct = accounts[i] if accounts is not None else fresh_account(dep.chain, funder)
        packed = fp.pack_q(np.asarray(q))
        dep.submit(acct, rnd, int(s), packed)
        out.append((bytes.fromhex(acct.address[2:]), int(s), packed))
    return out


def random_unit_rows(rng, k, d, bits=20, spread=0.7):
    from learningchain.protocol.quantize import check_unit, quantize_unit

    direction = rng.normal(size=d)
    rows = []
    while len(rows) < k:
        u = direction + spread * rng.normal(size=d)
        u /= np.linalg.norm(u)
        q = quantize_unit(u, bits)
        check_unit(q, bits, 10)
        rows.append(q)
    return np.stack(rows)
