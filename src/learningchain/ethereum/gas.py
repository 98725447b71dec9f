"""Gas of one LearningChain round on the contract, against d and K.

    python -m learningchain.ethereum.gas --rpc-url http://127.0.0.1:8545
    python -m learningchain.ethereum.gas --anvil          # start a local anvil for it
    python -m learningchain.ethereum.gas                  # in-process EVM (slow for large d)

For each (d, K) the tool deploys the contract, plays two rounds of K random
unit vectors (the first writes fresh storage, the second is the steady state
every later round pays) and prints, per round, the gas of one submission, of
the aggregation (all its chunks) and of the largest single aggregation
transaction. Gas is a property of the EVM rules (Prague), so any node gives the
same figures; the tool checks that each round's model equals the Python twin's.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..protocol.quantize import quantize_unit
from . import fixedpoint as fp
from .chain import Chain
from .contract import ContractParams, max_chunk_words
from .network import Deployment, new_account

__all__ = ["RoundGas", "measure", "main"]


@dataclass
class RoundGas:
    d: int
    k: int
    chunks: int
    chunk_words: int
    submit_first: int  # one submission, first round (fresh storage)
    submit: int  # one submission, steady state
    aggregate_first: int
    aggregate: int  # the whole aggregation of a steady-state round, every chunk
    aggregate_max_tx: int  # the largest single aggregation transaction
    claim: int
    aggregate_max_tx_first: int  # the largest in the first round (fresh storage)
    commit: int = 0  # the aggregator's commitment (steady state), a transaction of its own

    @property
    def round_total(self) -> int:
        return self.k * self.submit + self.commit + self.aggregate + self.claim


def _unit_rows(rng, k, d, bits=20):
    direction = rng.normal(size=d)
    rows = []
    for _ in range(k):
        u = direction + 0.7 * rng.normal(size=d)
        rows.append(quantize_unit(u / np.linalg.norm(u), bits))
    return np.stack(rows)


def measure(chain: Chain, d: int, k: int, *, seed: int = 0, batch_size: int = 100, reward: int = 10**15,
            chunk_words: Optional[int] = None) -> RoundGas:
    """Deploy, play two rounds of ``k`` messages of dimension ``d``, and return the gas
    (``chunk_words``: smaller chunks than the largest that fits, for tests)."""
    rng = np.random.default_rng([seed, d, k])
    faucet = chain.faucet()
    rule = fp.FixedRule(d, 20, 10, math.ceil(k / 2), batch_size, fp.encode_rate(0.5), fp.encode_rate(0.0))
    words = fp.words_for(d)
    cw = min(words, max_chunk_words(k)) if chunk_words is None else chunk_words
    cparams = ContractParams(rule, 1, k, cw, 10, reward, bond=reward)  # the runner bonds the reward
    dep = Deployment.deploy(chain, faucet, cparams, rng.normal(size=d) * 0.1)
    if reward:
        dep.deposit(faucet, 10 * reward)
    node = new_account(rng, "node")
    chain.transfer(faucet, node.address, 10**19)
    out = {}
    W = dep.fixed_model()
    for rnd in range(2):
        rows = _unit_rows(rng, k, d)
        norms = [int(x) for x in rng.integers(2**31, 2**36, size=k)]
        msgs, gas_sub = [], []
        for q, s in zip(rows, norms):
            acct = new_account(rng, "holder")
            chain.transfer(faucet, acct.address, 10**18)
            packed = fp.pack_q(q)
            r = dep.submit(acct, rnd, s, packed)
            gas_sub.append(int(r["gasUsed"]))
            msgs.append((bytes.fromhex(acct.address[2:]), s, packed))
        keys = [fp.tie_key(rnd, m[0]) for m in msgs]
        sel = rule.select(rows, keys)
        accepted, gas_agg, receipts = dep.aggregate(node, msgs, sel)
        # the commitment (its own transaction, before the first chunk) is counted apart
        commit = int(receipts[0]["gasUsed"])
        gas_agg -= commit
        receipts = receipts[1:]
        if not accepted:
            raise RuntimeError(f"d={d} K={k}: the contract refused the Python rule's selection")
        W = rule.update(W, rows, norms, sel)
        if dep.fixed_model() != W:
            raise RuntimeError(f"d={d} K={k}: the contract's model differs from the twin's")
        claim = int(dep.claim_reward(node, rnd)["gasUsed"]) if reward else 0
        out[rnd] = (int(np.mean(gas_sub)), gas_agg, max(int(r["gasUsed"]) for r in receipts), claim, commit)
    return RoundGas(d, k, cparams.chunks, cw, out[0][0], out[1][0], out[0][1], out[1][1], out[1][2], out[1][3],
                    out[0][2], out[1][4])


def largest_d(chain: Chain, k: int, budget: int, *, part: str = "aggregate", lo: int = 8, hi: int = 8192,
              step: int = 64) -> tuple[int, RoundGas]:
    """The largest d (to ``step``) whose steady-state ``part`` ("aggregate" or "round") fits
    ``budget`` gas, by bisection on measured rounds; with the measurement at that d."""
    def cost(g: RoundGas) -> int:
        return g.aggregate if part == "aggregate" else g.round_total

    best = measure(chain, lo, k)
    if cost(best) > budget:
        return 0, best
    top = measure(chain, hi, k)
    if cost(top) <= budget:
        return hi, top
    while hi - lo > step:
        mid = (lo + hi) // 2
        g = measure(chain, mid, k)
        if cost(g) <= budget:
            lo, best = mid, g
        else:
            hi = mid
    return lo, best


def _start_anvil():
    here = Path.cwd() / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
    binary = str(here) if here.exists() else shutil.which("anvil")
    if binary is None:
        raise SystemExit("anvil not found (npm install puts it in node_modules/@foundry-rs)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--hardfork", "prague", "--silent",
                             "--gas-limit", str(10**9), "--prune-history", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m learningchain.ethereum.gas", description=__doc__.splitlines()[0])
    p.add_argument("--rpc-url", help="JSON-RPC node (default: in-process EVM)")
    p.add_argument("--anvil", action="store_true", help="start a local anvil with a 1e9 block gas limit")
    p.add_argument("--d", type=int, nargs="+", default=[11, 31, 100, 300, 1000, 3000, 7850])
    p.add_argument("--k", type=int, nargs="+", default=[10, 30, 100])
    p.add_argument("--block-gas", type=int, default=30_000_000, help="block gas limit for the 'fits' column")
    p.add_argument("--largest", action="store_true",
                   help="instead of the table: for each K, the largest d whose aggregation, and whose "
                        "whole round, fits --block-gas")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    proc = None
    try:
        if args.anvil:
            proc, url = _start_anvil()
            chain = Chain.connect(url)
        else:
            chain = Chain.connect(args.rpc_url) if args.rpc_url else Chain.embedded(gas_limit=10**9)
        if args.largest:
            print(f"| K | largest d, aggregation <= {args.block_gas:,} gas | its aggregation gas | chunks | "
                  f"largest d, whole round <= {args.block_gas:,} gas | its round gas |")
            print("|---:|---:|---:|---:|---:|---:|")
            for k in args.k:
                d_agg, g_agg = largest_d(chain, k, args.block_gas, part="aggregate")
                d_round, g_round = largest_d(chain, k, args.block_gas, part="round")
                print(f"| {k} | {d_agg} | {g_agg.aggregate:,} | {g_agg.chunks} | {d_round} | "
                      f"{g_round.round_total:,} |", flush=True)
            return 0
        rows = []
        if not args.json:
            print("| d | K | chunks | submit (1st round) | submit | aggregate (1st round) | aggregate | "
                  "largest aggregate tx (1st round) | claim | round total | blocks of "
                  f"{args.block_gas // 10**6}M |")
            print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")  # noqa
        for d in args.d:
            for k in args.k:
                g = measure(chain, d, k)
                rows.append(g)
                if args.json:
                    continue
                blocks = g.round_total / args.block_gas
                print(f"| {d} | {k} | {g.chunks} | {g.submit_first:,} | {g.submit:,} | {g.aggregate_first:,} | "
                      f"{g.aggregate:,} | {g.aggregate_max_tx:,} ({g.aggregate_max_tx_first:,}) | {g.claim:,} | "
                      f"{g.round_total:,} | "
                      f"{blocks:.2f} |", flush=True)
        if args.json:
            print(json.dumps([dict(asdict(g), round_total=g.round_total) for g in rows], indent=1))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
