"""Per-example clipping cost: ours against plain autograd and against opacus, same run.

For each model, a batch of MNIST-sized inputs: the time of one plain batched
gradient of the summed loss (torch autograd, no clipping), of our clipped sum
(``privacy.clipping.clipped_gradient_sum``: one forward, one backward to the
layer outputs, per-example norms without per-example gradients for linear
layers), and of opacus's per-sample gradients (GradSampleModule hooks) followed
by the same clipping and sum. Ratios are to the plain gradient. Target: at most
2x for the MLP.

    python benchmarks/bench_clipping.py [--batch 256] [--repeat 30]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

from learningchain.models import build_model, loss_fn, model_spec  # noqa: E402
from learningchain.privacy import clipped_gradient_sum, plain_gradient_sum  # noqa: E402


def timeit(fn, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - t) / repeat)
    return best


def opacus_clipped(model, loss, x, y, clip):
    from opacus import GradSampleModule

    gsm = GradSampleModule(model)

    def run():
        for p in gsm.parameters():
            p.grad_sample = None
            p.grad = None
        loss(gsm(x), y).sum().backward()
        per = torch.cat([p.grad_sample.reshape(x.shape[0], -1) for p in gsm.parameters()], dim=1)
        coef = torch.clamp(clip / (per.norm(dim=1) + 1e-12), max=1.0)
        return (per * coef[:, None]).sum(0)

    return gsm, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"batch {args.batch}, 1 thread")
    print(f"{'model':<22}{'params':>9}{'plain ms':>10}{'ours ms':>9}{'ours/plain':>11}{'opacus ms':>11}{'opacus/plain':>13}")
    for kind, opts in (("logistic", {}), ("mlp", {"hidden": [100]}), ("mlp", {"hidden": [256, 128]}), ("cnn", {})):
        spec = model_spec(kind, 784, 10, **opts)
        model = build_model(spec)
        loss = loss_fn(spec)
        x = torch.rand(args.batch, 784)
        y = torch.randint(0, 10, (args.batch,))
        n = sum(p.numel() for p in model.parameters())
        plain = timeit(lambda: plain_gradient_sum(model, loss, x, y), args.repeat)
        ours = timeit(lambda: clipped_gradient_sum(model, loss, x, y, clip=1.0), args.repeat)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                gsm, run = opacus_clipped(build_model(spec), loss, x, y, 1.0)
                theirs = timeit(run, max(3, args.repeat // 4))
            except Exception as exc:  # opacus is an optional extra
                theirs = float("nan")
                print(f"  (opacus unavailable: {exc})")
        label = f"{kind} {opts.get('hidden', '')}".strip()
        print(f"{label:<22}{n:>9}{plain * 1e3:>10.2f}{ours * 1e3:>9.2f}{ours / plain:>11.2f}"
              f"{theirs * 1e3:>11.2f}{theirs / plain:>13.1f}")


if __name__ == "__main__":
    main()
