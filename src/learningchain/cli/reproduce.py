"""``learningchain reproduce {fig5,fig6,fig7,all}``: the paper's figures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import ConfigError
from ..experiments import reproduce as runs  # the module: its functions are looked up when the command runs
from ..experiments.claims import write_claims
from .progress import Progress


def cmd_reproduce(args) -> int:
    if args.ray and args.workers != parser_default_workers():
        raise ConfigError("--workers is the number of local processes: with --ray the cluster's CPUs decide")
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    names = list(runs.FIGURES) if args.figure == "all" else [args.figure]
    bar = Progress(0, quiet=args.quiet, stream=sys.stdout)

    def report(res, done, total):
        bar.total = total
        if res is None:
            if not args.quiet:
                where = f"as tasks of the Ray cluster at {args.ray}" if args.ray else f"{args.workers} at a time"
                print(f"{total} runs ({', '.join(names)}{', quick' if args.quick else ''}), {where}; a finished "
                      f"run in {args.out} is reused", flush=True)
            return
        s = res["summary"]
        tag = "reused" if res["cached"] else f"{s['wall_seconds']:.0f}s"
        bar.step(f"{res['job'].figure} {res['job'].panel} {res['job'].curve}: test error {s['test_error']:.4f} "
                 f"(baseline {s['baseline_test_error']:.4f}, {tag})", reused=res["cached"])

    runs.reproduce(names, out=Path(args.out), quick=args.quick, workers=args.workers, ray=args.ray, progress=report)
    # the claims table covers every figure finished in this directory, not only this call's
    path = write_claims(runs.collect_results(Path(args.out), quick=args.quick), Path(args.out), quick=args.quick)
    print(f"figures and CSVs in {args.out}/<figure>/; claims in {path}")
    return 0


def parser_default_workers() -> int:
    return min(2, os.cpu_count() or 1)


def register(sub, csub) -> None:
    p = sub.add_parser("reproduce", allow_abbrev=False, help="reproduce the paper's figures 5-7 through the chain")
    p.add_argument("figure", choices=["fig5", "fig6", "fig7", "all"], help="which figure (all: 5, 6 and 7)")
    p.add_argument("--quick", action="store_true", help="a reduced version that finishes in minutes")
    p.add_argument("--out", default="runs/reproduce", help="output directory (default %(default)s)")
    p.add_argument("--workers", type=int, default=parser_default_workers(),
                   help="runs in parallel (default: up to 2)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="run as tasks of an existing Ray cluster (ray.init(address=ADDRESS)); needs the ray package")
    p.add_argument("--quiet", action="store_true", help="no line per finished run")
    p.set_defaults(func=cmd_reproduce)
