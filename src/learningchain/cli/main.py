"""The ``learningchain`` command."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Optional

from .. import __version__
from ..config import TrainConfig, check_honoured, load_toml, parse_set
from ..errors import ConfigError, LearningChainError
from ..experiments.rundir import RunInterrupted
from ..experiments.train import resume_training, run_training
from ..node.verify import chain_head, verify_chain
from .options import add_config_options, config_values, option_group

__all__ = ["main", "build_parser"]


def _add_train_options(p: argparse.ArgumentParser) -> None:
    add_config_options(p, TrainConfig, "train")
    g = option_group(p, "run")
    g.add_argument("--config", metavar="FILE", help="TOML file with the same keys (a [train] table or top level)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key (repeatable), e.g. --set attack_options={sigma=50}")
    g.add_argument("--resume", metavar="DIR",
                   help="continue the interrupted run DIR (Ctrl-C, or killed: found beside DIR) from its chain and "
                        "checkpoint, with its own config; an Ethereum run (full mode, JSON-RPC chain) from its "
                        "contract, with --rpc-url when its node moved")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--json", action="store_true", help="print the summary as JSON")


def train_config_from_args(args) -> TrainConfig:
    """The run's config: the --config file, then the options, then --set; checked
    whole (types, names, cross-key rules, and that `train` honours every key given)."""
    data: dict = {}
    if args.config:
        data.update(load_toml(args.config))
    data.update(config_values(args, TrainConfig, "train"))
    data.update(parse_set(args.set))
    cfg = TrainConfig.from_dict(data)
    cfg.check_given(data)
    check_honoured(cfg, "train")
    return cfg


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    return str(v)


def _composition(privacy: dict) -> str:
    kind = privacy.get("composition")
    if kind == "rdp":
        return f" (RDP accountant, delta {privacy.get('delta_total'):.3g})"
    return f" ({kind} composition)" if kind else ""


def _tight(summary: dict) -> str:
    tight = summary.get("epsilon_total_tight")
    if tight is None:
        return ""
    return f"; tight {tight:.4g} at delta {summary.get('delta_tight'):.3g} (optimal composition, PLD)"


def _target_rows(privacy: dict) -> list:
    if privacy.get("target_epsilon") is None:
        return []
    chosen = privacy.get("chosen") or {}
    what = (f"noise multiplier {chosen['noise_multiplier']:.4g}" if "noise_multiplier" in chosen
            else f"epsilon {chosen.get('epsilon', 0.0):.6g} ({chosen.get('schedule')} schedule)")
    return [("target epsilon / chosen", f"{privacy['target_epsilon']:.4g} / {what}")]


def _sampling_rows(privacy: dict) -> list:
    if privacy.get("sampling") != "poisson":
        return []
    amp = privacy.get("amplified")
    if amp:
        return [("sampling / amplified total", f"poisson, q = {amp['sampling_rate']:.4g} / "
                                               f"{amp['epsilon_total']:.4g} (basic); tight "
                                               f"{amp['epsilon_total_tight']:.4g} at delta "
                                               f"{privacy.get('delta_tight'):.3g}")]
    return [("sampling", "poisson (add-or-remove-one neighbours)")]


def _eps(v) -> str:
    if v is None:
        return "none (no noise)"
    if isinstance(v, dict):
        return ", ".join(f"{k} {x:.4g}" for k, x in v.items())
    return f"{v:.4g}"


def print_summary_table(summary: dict) -> None:
    rows = [
        ("dataset", summary.get("dataset")),
        ("holders / miners / byzantine", f"{summary['holders']} / {summary['miners']} / {summary['byzantine']}"),
        ("aggregator", f"{summary['aggregator']}" + (f" (l={summary['l']})" if summary.get("l") else "")),
        ("rounds / height", f"{summary['rounds']} / {summary['height']}"
                            + (" (interrupted)" if summary.get("interrupted") else "")),
        ("test error", _fmt(summary["test_error"])),
        ("baseline test error", _fmt(summary["baseline_test_error"]) if summary["baseline_test_error"] is not None
                                else "not run (interrupted)"),
        ("epsilon per round / total", f"{_eps(summary['epsilon_per_round'])} / {_eps(summary['epsilon_total'])}"
                                      + _composition(summary.get("privacy") or {}) + _tight(summary)),
        *_target_rows(summary.get("privacy") or {}),
        *_sampling_rows(summary.get("privacy") or {}),
        ("rejected blocks", f"{summary['rejected_blocks']} {summary.get('rejected_by_reason') or ''}"),
        ("wall seconds", _fmt(summary["wall_seconds"])),
        ("run directory", summary.get("out")),
    ]
    if summary.get("byzantine_miners"):
        rows.append(("byzantine miners / power", f"{summary['byzantine_miners']} / {summary['byzantine_power']}"
                     f" ({summary['miner_attack']})"))
        rows.append(("heaviest chain accepted", summary["heaviest_chain_accepted_by_honest"]))
    for extra in ("verdict", "gas_per_round", "contract_address"):
        if extra in summary:
            rows.append((extra.replace("_", " "), summary[extra]))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


def cmd_train(args) -> int:
    try:
        if args.resume is not None:
            given = sorted(set(config_values(args, TrainConfig, "train")) - {"rpc_url"})
            if given or args.config or args.set:
                raise ConfigError("--resume continues a run with its own config: drop "
                                  + ", ".join(["--" + g.replace("_", "-") for g in given]
                                              + (["--config"] if args.config else []) + (["--set"] if args.set else [])))
            summary = resume_training(args.resume, progress=not args.quiet,
                                      rpc_url=config_values(args, TrainConfig, "train").get("rpc_url"))
        else:
            summary = run_training(train_config_from_args(args), progress=not args.quiet)
    except RunInterrupted as stop:
        summary = stop.summary
        if args.json:
            print(json.dumps(summary, indent=2, default=str))
        else:
            print_summary_table(summary)
        kept = f"; the old run stays in {stop.kept}" if stop.kept is not None else ""
        total = summary.get("config", {}).get("rounds", "?")
        print(f"learningchain: interrupted after {summary['rounds']} of {total} rounds: the partial run "
              f"(marked interrupted) is in {summary['out']}{kept}; `learningchain train --resume {summary['out']}` "
              "continues it", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print_summary_table(summary)
    return 0


def cmd_chain_verify(args) -> int:
    if args.last is not None and args.last < 1:
        raise ConfigError(f"--last must be at least 1 block, got {args.last}")
    report = verify_chain(args.path, last=args.last, trust_model_code=args.trust_model_code)
    print(report.describe())
    return 0 if report.ok else 1


def cmd_chain_head(args) -> int:
    height, head = chain_head(args.path)
    print(f"{height} 0x{head.hex()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="learningchain", allow_abbrev=False,
                                     description="Decentralized, private and Byzantine-tolerant learning on a blockchain")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("train", allow_abbrev=False, help="train a model on the chain (K holders, M computing nodes)")
    _add_train_options(p)
    p.set_defaults(func=cmd_train)

    chain = sub.add_parser("chain", allow_abbrev=False, help="inspect and verify a stored chain")
    csub = chain.add_subparsers(dest="chain_command", metavar="ACTION")
    csub.required = True
    p = csub.add_parser("verify", allow_abbrev=False, help="replay a stored chain and check every block")
    p.add_argument("path", help="chain.sqlite or a run directory")
    p.add_argument("--last", type=int, metavar="S", help="check only the last S blocks (the holders' final check)")
    p.add_argument("--trust-model-code", metavar="FACTORY",
                   help="rebuild the package.module:factory model genesis names, if it is this FACTORY (imports "
                        "and runs that code), and check its parameter count and shape hash")
    p.set_defaults(func=cmd_chain_verify)
    p = csub.add_parser("head", allow_abbrev=False, help="print the head height and hash")
    p.add_argument("path", help="chain.sqlite or a run directory")
    p.set_defaults(func=cmd_chain_head)

    for register in _EXTENSIONS:
        register(sub, csub)
    return parser


def _version() -> str:
    return f"learningchain {__version__}"


#: Other modules add subcommands here: register(subparsers, chain_subparsers).
_EXTENSIONS: list = []


def _load_extensions() -> None:
    for name in ("reproduce", "grid", "netcmd", "balances", "security", "privacy", "explore"):
        try:
            mod = importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{name}":
                raise
            continue
        if mod.register not in _EXTENSIONS:
            _EXTENSIONS.append(mod.register)


def main(argv: Optional[list] = None) -> int:
    _load_extensions()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LearningChainError as exc:
        print(f"learningchain: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("learningchain: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
