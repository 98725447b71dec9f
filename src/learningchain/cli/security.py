"""``learningchain security-sweep``: the holders' final check against Byzantine hash power."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..errors import ConfigError
from ..experiments.security import attack_table, plot_sweep, sweep, write_csv
from .progress import Progress


def _values(text: str, option: str, kind: type, *, low, high=None) -> list:
    """A comma-separated list of ``kind`` values, each in [low, high]."""
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        what = "numbers" if kind is float else "integers"
        raise ConfigError(f"{option} takes comma-separated {what}, got {text!r}") from None
    if not values:
        raise ConfigError(f"{option} needs at least one value")
    for v in values:
        if high is not None and not low <= v <= high:  # also refuses nan
            raise ConfigError(f"{option} values must be in [{low:g}, {high:g}], got {v!r}")
        if high is None and not v >= low:
            raise ConfigError(f"{option} values must be at least {low}, got {v}")
    return values


def _at_least(value: int, option: str, low: int = 1) -> None:
    if value < low:
        raise ConfigError(f"{option} must be at least {low}, got {value}")


def _out_dir(text: str) -> Path:
    """--out, created (every option is checked before this)."""
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create the directory: {exc.strerror or exc}") from None
    return out


def cmd_security_sweep(args) -> int:
    powers = _values(args.powers, "--powers", float, low=0.0, high=1.0)
    s_values = _values(args.s, "--s", int, low=1)
    _at_least(args.trials, "--trials")
    _at_least(args.rounds, "--rounds")
    out = _out_dir(args.out)
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
    _at_least(args.rounds, "--rounds")
    out = _out_dir(args.out)
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
    p = sub.add_parser("security-attacks", allow_abbrev=False,
                       help="run every Byzantine-miner attack at 30%% and 60%% hash power and tabulate the outcome")
    p.add_argument("--rounds", type=int, default=100, help="rounds of every run (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the runs (default %(default)s)")
    p.add_argument("--out", default="runs/security", help="where attacks.csv goes (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_security_attacks)

    p = sub.add_parser("security-sweep", allow_abbrev=False,
                       help="measure how often a wrong model survives the holders' final check, per Byzantine power")
    p.add_argument("--powers", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
                   help="Byzantine shares of hash power, comma-separated (default %(default)s)")
    p.add_argument("--s", default="1,2,4,8", help="lengths of the final check, comma-separated (default %(default)s)")
    p.add_argument("--trials", type=int, default=30, help="runs per Byzantine power (default %(default)s)")
    p.add_argument("--rounds", type=int, default=40, help="rounds of every run (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first run (default %(default)s)")
    p.add_argument("--out", default="runs/security",
                   help="where security_sweep.csv and .png go (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_security_sweep)
