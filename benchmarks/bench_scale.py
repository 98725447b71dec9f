"""Speed at scale: what the chain adds to learning, as ratios measured in this run.

For each setting, one protocol round (every holder's clipped, noised, quantised and
signed message, admission at every computing node, aggregation, proof of work,
validation by every node, the archive's compression and SQLite write, which its
writer thread does beside the next round: the rounds are timed back to back until
the last block is on disk) against the plain gradient
work of the same holders (each holder's gradient of its summed loss with torch
autograd at the same model, one after another), both timed in this run, in
alternating blocks (the best block of each, ``--blocks``):

- MNIST logistic regression, K = 100 holders (target <= 1.5x)
- MNIST MLP 784-100-10, K = 100 holders (target <= 2x), with 32-bit messages and with
  compact ones (genesis ``message_bits`` = 16)
- synthetic, K = 1,000 holders and M = 1,000 computing nodes (target <= 3x)

Under each, the protocol's floor: the computations the protocol itself asks of a round,
each done once with the project's own functions and nothing around them (the holders'
clipped gradients in one pass, their noise, quantisation and signatures, one signature
recovery per message, the chain's rule over the block), by part and as a ratio to the
same plain gradients. No simulation can take a round below it; what the round costs
beyond it is admission, blocks, fork choice and the store.

and the clipped per-example gradient sum against the plain gradient of a batch of
256 MNIST-sized inputs, for the CNN (target <= 1.5x) and the MLP (target <= 1.2x).

If ``benchmarks/bench_scale_memory.py`` is present, its ``main()`` runs at the end
(``--skip-memory`` leaves it out).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_scale.py [--rounds 5] [--skip-memory]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from learningchain.config import TrainConfig  # noqa: E402
from learningchain.experiments.train import build_miners, build_parties  # noqa: E402
from learningchain.models import build_model, loss_fn, model_spec  # noqa: E402
from learningchain.network.simulation import InProcessNetwork  # noqa: E402
from learningchain.privacy import clipped_gradient_sum, plain_gradient_sum  # noqa: E402

from learningchain.crypto import recover_address  # noqa: E402
from learningchain.holder import clipped_gradients, encode_vector, mechanism_for_round  # noqa: E402
from learningchain.protocol.aggregation import aggregate  # noqa: E402
from learningchain.protocol.message import sign_message  # noqa: E402
from learningchain.protocol.transition import canonical_messages, make_batch  # noqa: E402

from bench_round import plain_round  # noqa: E402

ROUND_SETTINGS = [  # label, config, target
    ("mnist logistic K=100", dict(dataset="mnist", model="logistic", holders=100), 1.5),
    ("mnist mlp K=100", dict(dataset="mnist", model="mlp", holders=100), 2.0),
    ("mnist mlp K=100 16-bit", dict(dataset="mnist", model="mlp", holders=100, message_bits=16), 2.0),
    ("synthetic K=M=1000", dict(dataset="synthetic", holders=1000, miners=1000), 3.0),
]
CLIP_SETTINGS = [("cnn", {}, 1.5), ("mlp", {"hidden": [100]}, 1.2)]



FLOOR_PARTS = ("clip", "noise", "quantise", "sign", "recover", "aggregate")


def protocol_floor(holders: list, base) -> dict:
    """Seconds of each computation the protocol itself asks of one round, done once each
    with the project's own functions and nothing around them: every holder's clipped
    gradient (in one pass, as a round computes them), its noise, normalisation and
    quantisation, signing (the keccak digest of the body and the ECDSA signature), one
    signature recovery per message, and the chain's rule over the block's messages. What
    a round costs beyond their sum is the simulation's own work (admission, blocks, fork
    choice, the store)."""
    params = holders[0].params
    out = dict.fromkeys(FLOOR_PARTS, 0.0)
    mech = mechanism_for_round(params, base.height + 1)
    messages = []
    t = time.perf_counter()
    rows = clipped_gradients(holders, base)
    for i, h in enumerate(holders):  # one gradient alive at a time, as in a round
        t1 = time.perf_counter()
        grad, _ = next(rows)
        t2 = time.perf_counter()
        rng = np.random.default_rng(i)  # the holders' own generators stay untouched
        noise = mech.sample(params.dim, rng)
        noisy = np.add(grad, noise, out=noise)
        t3 = time.perf_counter()
        norm, q = encode_vector(noisy, params)
        t4 = time.perf_counter()
        messages.append(sign_message(h.key, round=base.height, base=base.hash, norm=norm, q=q))
        t5 = time.perf_counter()
        out["clip"] += t2 - t1
        out["noise"] += t3 - t2
        out["quantise"] += t4 - t3
        out["sign"] += t5 - t4
    out["clip"] += time.perf_counter() - t - sum(out.values())  # the forward and backward pass
    t = time.perf_counter()
    for m in messages:
        recover_address(m.signing_digest, m.signature)
    out["recover"] = time.perf_counter() - t
    t = time.perf_counter()
    aggregate(make_batch(canonical_messages(messages), params), params)
    out["aggregate"] = time.perf_counter() - t
    return out


def measure_round(options: dict, rounds: int, warmup: int, blocks: int = 3) -> tuple[float, float, int, dict]:
    """(seconds a protocol round, seconds the plain gradients, computing nodes, the
    protocol's floor by part): the best mean of ``blocks`` blocks of each, alternating,
    so a change in the machine's load falls on all alike."""
    cfg = TrainConfig(epsilon=0.1, rounds=blocks * rounds + warmup, progress=False, **options).resolved()
    parties = build_parties(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        miners, _ = build_miners(cfg, parties.genesis, Path(tmp) / "chain.sqlite")
        net = InProcessNetwork(parties.genesis, parties.holders, miners, rng=np.random.default_rng(0),
                               attacks=parties.attacks)
        archive = miners[0].node.store
        for _ in range(warmup):
            net.step()
        archive.flush()
        proto = plain = float("inf")
        floor: dict = {}
        for _ in range(blocks):
            # the rounds back to back, until the archive has written the last block: its
            # writer thread overlaps a block's compression and SQLite write with the next
            # round's work, as in a run, and every write is counted
            t = time.perf_counter()
            for _ in range(rounds):
                net.step()
            archive.flush()
            proto = min(proto, (time.perf_counter() - t) / rounds)
            t = time.perf_counter()
            for _ in range(rounds):  # with nothing else running
                plain_round(parties.holders, net.head)
            plain = min(plain, (time.perf_counter() - t) / rounds)
            honest = [h for h in parties.holders if h.index not in parties.attacks]
            parts = protocol_floor(honest, net.head)
            if not floor or sum(parts.values()) < sum(floor.values()):
                floor = parts
        archive.close()
    return proto, plain, len(miners), floor


def measure_clipping(kind: str, opts: dict, batch: int, repeat: int) -> tuple[float, float]:
    torch.manual_seed(0)
    spec = model_spec(kind, 784, 10, **opts)
    model = build_model(spec)
    loss = loss_fn(spec)
    x = torch.rand(batch, 784)
    y = torch.randint(0, 10, (batch,))
    return interleaved_best(lambda: clipped_gradient_sum(model, loss, x, y, clip=1.0),
                            lambda: plain_gradient_sum(model, loss, x, y), repeat)


def interleaved_best(first, second, repeat: int, blocks: int = 15) -> tuple[float, float]:
    """Best mean seconds of ``repeat`` calls of each, over ``blocks`` blocks that alternate
    between the two, so a change in the machine's load falls on both alike."""
    first(), second()
    best = [float("inf"), float("inf")]
    for _ in range(blocks):
        for j, fn in enumerate((first, second)):
            t = time.perf_counter()
            for _ in range(repeat):
                fn()
            best[j] = min(best[j], (time.perf_counter() - t) / repeat)
    return best[0], best[1]


def verdict(ratio: float, target: float) -> str:
    return "met" if ratio <= target else "NOT met"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per block")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=3, help="alternating blocks of protocol and plain rounds (best of)")
    ap.add_argument("--batch", type=int, default=256, help="batch of the clipping comparison")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--skip-memory", action="store_true", help="do not run bench_scale_memory.py")
    ap.add_argument("--only", default="", help="run only the round settings whose label contains this "
                                                "(e.g. 'mlp'), and no clipping or memory figures")
    args = ap.parse_args(argv)
    print(f"{'round / plain gradients':<26}{'M':>6}{'round ms':>11}{'plain ms':>10}{'ratio':>8}{'target':>8}")
    for label, options, target in ROUND_SETTINGS:
        if args.only and args.only not in label:
            continue
        try:
            TrainConfig(**options)
        except TypeError as exc:  # an older checkout, to compare with, that lacks a key
            print(f"{label:<26}  not run: {exc}", flush=True)
            continue
        proto, plain, nodes, floor = measure_round(options, args.rounds, args.warmup, args.blocks)
        ratio = proto / plain
        print(f"{label:<26}{nodes:>6}{proto * 1e3:>11.1f}{plain * 1e3:>10.1f}{ratio:>7.2f}x{target:>7.1f}x  "
              f"{verdict(ratio, target)}", flush=True)
        total = sum(floor.values())
        print(f"{'  protocol floor':<26}{'':>6}{total * 1e3:>11.1f}{'':>10}{total / plain:>7.2f}x  "
              + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in floor.items()), flush=True)
    if args.only:
        return
    print(f"\n{'clipped / plain gradient':<26}{'batch':>6}{'clip ms':>11}{'plain ms':>10}{'ratio':>8}{'target':>8}")
    for kind, opts, target in CLIP_SETTINGS:
        clipped, plain = measure_clipping(kind, opts, args.batch, args.repeat)
        ratio = clipped / plain
        label = f"{kind} {opts.get('hidden', '')}".strip()
        print(f"{label:<26}{args.batch:>6}{clipped * 1e3:>11.2f}{plain * 1e3:>10.2f}{ratio:>7.2f}x{target:>7.1f}x  "
              f"{verdict(ratio, target)}", flush=True)
    memory = Path(__file__).with_name("bench_scale_memory.py")
    if memory.exists() and not args.skip_memory:
        spec = importlib.util.spec_from_file_location("bench_scale_memory", memory)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(flush=True)
        sys.argv = [str(memory)]
        module.main()


if __name__ == "__main__":
    main()
