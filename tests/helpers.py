"""Small builders shared by the tests: a tiny chain with real keys and messages."""

from __future__ import annotations

import numpy as np

from learningchain.crypto import PrivateKey
from learningchain.holder import encode_vector
from learningchain.node import Node
from learningchain.protocol import ProtocolParams, make_genesis, sign_message


def small_params(**over) -> ProtocolParams:
    base = dict(model={"kind": "logistic", "inputs": 4, "classes": 2}, dim=5, lr=0.5, batch_size=10,
                holders=6, aggregator="l-nearest", mechanism="none", epsilon=0.0, difficulty=4,
                max_messages=64)
    base.update(over)
    return ProtocolParams(**base)


def genesis_for(params, seed=0):
    rng = np.random.default_rng(seed)
    return make_genesis(params, rng.normal(size=params.dim) * 0.1, timestamp=1000)


def make_keys(n, seed=7):
    rng = np.random.default_rng(seed)
    return [PrivateKey.generate(rng) for _ in range(n)]


def message_for(key, params, base_block, vector):
    norm, q = encode_vector(np.asarray(vector, dtype=np.float64), params)
    return sign_message(key, round=base_block.height, base=base_block.hash, norm=norm, q=q)


def honest_vectors(params, n, rng, direction=None, spread=0.3):
    direction = np.ones(params.dim) if direction is None else direction
    return [direction + spread * rng.normal(size=params.dim) for _ in range(n)]


def mine_block(node: Node, messages, timestamp=None):
    for m in messages:
        node.on_message(m)
    ts = timestamp if timestamp is not None else node.head.header.timestamp + 1000
    return node.seal(node.template(timestamp=ts))
