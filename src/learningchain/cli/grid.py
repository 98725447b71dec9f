"""``learningchain grid CONFIG``: attack x aggregator x fraction-Byzantine grids."""

from __future__ import annotations

import sys
from pathlib import Path

from ..config import parse_set
from ..errors import ConfigError
from ..experiments.grid import MAX_WORKERS, grid_cells, load_grid, plot_heatmap, read_results, run_grid
from ..experiments.worstcase import write_worst_case
from .progress import Progress

__all__ = ["register", "cmd_grid"]


def cmd_grid(args) -> int:
    if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
        raise ConfigError(f"--workers must be 1 to {MAX_WORKERS} (the cap on grid processes), got {args.workers}")

    if args.plot_only:
        out = Path(args.out)
        if not (out / "results.csv").is_file():
            raise ConfigError(f"--plot-only: {out} holds no results.csv (run the grid into it first)")
        try:
            rows = read_results(out / "results.csv")
            plot_heatmap(rows, out / "heatmap.png", title=args.title or out.name)
            write_worst_case(rows, out, title=args.title or out.name)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--plot-only: {out / 'results.csv'} is not a grid's results ({type(exc).__name__}: "
                              f"{exc})") from None
        print(f"{out / 'heatmap.png'} and the worst case over attacks from {len(rows)} rows")
        return 0
    spec = load_grid(args.config, overrides=parse_set(args.set))
    out = args.out or f"runs/grid-{spec.name}"

    bar = Progress(len(grid_cells(spec)), quiet=args.quiet)
    if not args.quiet:
        where = f"as tasks of the Ray cluster at {args.ray}" if args.ray else \
            f"{max(1, min(args.workers or spec.workers, MAX_WORKERS))} at a time"
        print(f"{bar.total} cells, {where}; finished cells in {out} are reused", file=sys.stderr, flush=True)

    def report(row, done, total, reused):
        bar.total = total
        err = row.get("test_error")
        status = f"error {err:.4f}" if row.get("status") == "ok" and err is not None else f"{row.get('status')}: " \
                 f"{row.get('error')}"
        bar.step(f"{row['attack']:>15} {row['aggregator']:>18} b={row['byzantine']:<3} seed={row['seed']}  {status}"
                 + (" (reused)" if reused else ""), reused=reused)

    rows = run_grid(spec, out, workers=args.workers, ray=args.ray, on_result=report)
    failed = [r for r in rows if r.get("status") != "ok"]
    print(f"{len(rows)} cells, {len(failed)} failed; results in {out}/results.csv, heatmap in {out}/heatmap.png, "
          f"worst case over attacks in {out}/worst_case.csv, WORST_CASE.md, worst_case.png")
    return 1 if failed else 0


def register(sub, csub) -> None:
    p = sub.add_parser("grid", allow_abbrev=False, help="attack x aggregator x fraction-Byzantine grid (CSV + heatmap)")
    p.add_argument("config", nargs="?", help="grid TOML: [grid] attacks, aggregators, fractions...; [train] options")
    p.add_argument("--out", metavar="DIR", help="output directory (default runs/grid-<name>)")
    p.add_argument("--workers", type=int, metavar="N", help=f"processes, 1 to {MAX_WORKERS} (default: [grid] workers, else {MAX_WORKERS})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a [train] option for every cell (repeatable)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="run the cells as tasks of an existing Ray cluster (ray.init(address=ADDRESS), e.g. "
                        "127.0.0.1:6379 or auto); needs the ray package")
    p.add_argument("--plot-only", action="store_true",
                   help="redraw heatmap.png and the worst-case table from --out/results.csv")
    p.add_argument("--title", help="heatmap title with --plot-only")
    p.add_argument("--quiet", action="store_true", help="no per-cell progress lines")
    p.set_defaults(func=_dispatch)


def _dispatch(args) -> int:
    if not args.plot_only and not args.config:
        raise ConfigError("grid needs a CONFIG file (or --plot-only --out DIR)")
    if args.plot_only and not args.out:
        raise ConfigError("--plot-only needs --out DIR holding results.csv")
    if args.plot_only and args.ray:
        raise ConfigError("--plot-only runs nothing: --ray does not apply")
    if args.ray is not None and args.workers is not None:
        raise ConfigError("--workers is the number of local processes: with --ray the cluster's CPUs decide")
    return cmd_grid(args)
