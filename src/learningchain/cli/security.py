"""``learningchain security-sweep``: the holders' final check against Byzantine hash power."""

from __future__ import annotations

from pathlib import Path


def _floats(text: str) -> list:
    return [float(x) for x in text.split(",") if x]


def _ints(text: str) -> list:
    return [int(x) for x in text.split(",") if x]


def cmd_security_sweep(args) -> int:
    from ..experiments.security import plot_sweep, sweep, write_csv
    from .progress import Progress

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    powers = _floats(args.powers)
    s_values = _ints(args.s)
    bar = Progress(len(powers) * args.trials, quiet=args.quiet, min_interval=10.0)
    rows = sweep(powers=powers, s_values=s_values, trials=args.trials, rounds=args.rounds, seed=args.seed,
                 progress=lambda: bar.step(f"security-sweep: runs of {args.rounds} rounds"))
    write_csv(rows, out / "security_sweep.csv")
    plot_sweep(rows, out / "security_sweep.png", rounds=args.rounds)
    print(f"{'q':>5}{'s':>4}{'wrong head':>12}{'survives':>10}{'(1-p)^s':>9}{'honest in last s':>18}")
    for r in rows:
        print(f"{r['byzantine_power']:>5.2f}{r['s']:>4}{r['wrong_head_rate']:>12.2f}{r['survival_rate']:>10.2f}"
              f"{r['paper_prediction']:>9.3f}{r['honest_in_last_s_rate']:>18.2f}")
    print(f"wrote {out / 'security_sweep.csv'} and {out / 'security_sweep.png'}")
    return 0


def cmd_security_attacks(args) -> int:
    import shutil
    import tempfile

    from ..experiments.security import attack_table, write_csv
    from .progress import Progress

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp())
    bar = Progress(1 + 5 * 2 * 2 + 2, quiet=args.quiet)
    try:
        rows = attack_table(rounds=args.rounds, seed=args.seed, out=work,
                            progress=lambda: bar.step(f"security-attacks: runs of {args.rounds} rounds"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_csv(rows, out / "attacks.csv")
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return 0


def register(sub, csub) -> None:
    p = sub.add_parser("security-attacks",
                       help="run every Byzantine-miner attack at 30%% and 60%% hash power and tabulate the outcome")
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/security")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_security_attacks)

    p = sub.add_parser("security-sweep",
                       help="measure how often a wrong model survives the holders' final check, per Byzantine power")
    p.add_argument("--powers", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
                   help="Byzantine shares of hash power (comma-separated)")
    p.add_argument("--s", default="1,2,4,8", help="lengths of the final check (comma-separated)")
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/security")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_security_sweep)
