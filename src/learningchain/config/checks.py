"""The rules of a ``TrainConfig`` that do not need the data: names, ranges and
the rules between keys. They run when the config is made, so a wrong name or
an impossible combination is refused before any data set loads."""

from __future__ import annotations

import math

from ..errors import ConfigError
from ..models.custom import check_factory_path, check_model_args, is_factory_path
from .names import (HIDDEN_MODELS, IDX_DATASETS, IMAGE_DATASETS, check_name, check_rewards, make_holder_attack,
                    rule_options)

__all__ = ["check_train"]

_NAMED = ("dataset", "partition", "model", "attack", "miner_attack", "aggregator", "mechanism", "schedule",
          "clip_mode", "sampling", "consensus", "backend")


def _need(cond, what: str) -> None:
    if not cond:
        raise ConfigError(what)


def _default(cfg, name: str):
    return type(cfg).__dataclass_fields__[name].default


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_train(cfg) -> None:
    for name in _NAMED:
        if name == "model" and is_factory_path(cfg.model):
            check_factory_path(cfg.model)  # a user's factory: imported when the run builds it
            continue
        check_name(name, getattr(cfg, name))
    _check_user_data(cfg)
    _check_parties(cfg)
    _check_applies(cfg)
    _check_learning(cfg)
    _check_privacy(cfg)
    _check_chain_and_run(cfg)


def _check_applies(cfg) -> None:
    """A key that only some data sets, models or rules read is refused with the others."""
    _need(cfg.idx_dir is None or cfg.dataset in IDX_DATASETS,
          f"idx_dir applies to the data sets read from IDX files ({', '.join(IDX_DATASETS)}), not {cfg.dataset!r}")
    _need(cfg.hidden == _default(cfg, "hidden") or cfg.model in HIDDEN_MODELS,
          f"hidden applies to the models with hidden layers ({', '.join(HIDDEN_MODELS)}), not {cfg.model!r}")
    options = rule_options(cfg.aggregator)
    _need(cfg.l is None or "l" in options,
          f"l applies to the rules with an l option, not {cfg.aggregator!r} "
          f"(its options: {', '.join(options) or 'none'})")
    for name in cfg.aggregator_options:
        _need(name in options, f"aggregator {cfg.aggregator!r} has no option {name!r}; its options: "
                               f"{', '.join(options) or 'none'}")
    if cfg.byzantine or cfg.attack_options:
        attack = make_holder_attack(cfg.attack, **cfg.attack_options)
        dataset = "user" if cfg.data is not None else cfg.dataset
        _need(not attack.needs_images or dataset in IMAGE_DATASETS,
              f"the {cfg.attack} attack stamps a trigger on images: it needs an image data set "
              f"({', '.join(IMAGE_DATASETS)}), not {dataset!r}")


_DATA_SUFFIXES = (".npz", ".csv")


def _check_user_data(cfg) -> None:
    """The keys of a user's model and data: where they apply and what they take."""
    if cfg.data is not None:
        _need(cfg.dataset in (_default(cfg, "dataset"), "user"),
              f"give dataset ({cfg.dataset!r}) or data ({cfg.data!r}), not both")
        _need(cfg.data.strip() != "", "data must name a file or package.module:factory, got an empty string")
        if not cfg.data.lower().endswith(_DATA_SUFFIXES):
            if not is_factory_path(cfg.data):
                raise ConfigError(f"data {cfg.data!r}: expected an .npz or .csv file or package.module:factory")
            check_factory_path(cfg.data, "data")
    _need(cfg.label_column is None or (cfg.data is not None and cfg.data.lower().endswith(".csv")),
          "label_column applies to CSV data (--data FILE.csv)")
    if cfg.classes is not None:
        _need(cfg.data is not None or cfg.dataset == "user",
              f"classes applies to your own data (--data), not dataset {cfg.dataset!r}")
        _need(cfg.classes >= 2, f"classes must be an integer >= 2, got {cfg.classes!r}")
    if cfg.model_args:
        _need(is_factory_path(cfg.model),
              f"model_args applies to a package.module:factory model, not {cfg.model!r}")
        check_model_args(cfg.model_args, cfg.model)


def _check_parties(cfg) -> None:
    for name in ("holders", "miners", "rounds", "batch_size", "l"):
        v = getattr(cfg, name)
        _need(v is None or (_is_int(v) and v >= 1), f"{name} must be a positive integer, got {v!r}")
    _need(cfg.byzantine >= 0, f"byzantine must be >= 0, got {cfg.byzantine!r}")
    if cfg.holders is not None:
        _need(cfg.byzantine < cfg.holders, f"byzantine ({cfg.byzantine}) must be below holders ({cfg.holders}): "
                                           "at least one data holder must be honest")
    _need(cfg.byzantine_miners >= 0, f"byzantine_miners must be >= 0, got {cfg.byzantine_miners!r}")
    _need(0.0 <= cfg.byzantine_power < 1.0 or (cfg.byzantine_power == 1.0 and cfg.byzantine_miners > 0),
          f"byzantine_power must be in [0, 1), got {cfg.byzantine_power!r}")
    if cfg.byzantine_power > 0:
        _need(cfg.byzantine_miners > 0, "byzantine_power > 0 needs byzantine_miners >= 1")
    _need(0 <= cfg.min_inclusion <= 1, f"min_inclusion must be in [0, 1], got {cfg.min_inclusion!r}")
    _need(cfg.verify_last >= 1, "verify_last must be >= 1")
    _need(cfg.verify_last == _default(cfg, "verify_last") or cfg.byzantine_miners > 0,
          "verify_last is the final check of the honest and the attackers' chains: it needs byzantine_miners >= 1")
    _need(not cfg.keep_attacker_chain or cfg.byzantine_miners > 0,
          "keep_attacker_chain needs Byzantine miners (--byzantine-miners N): without them there is no "
          "attacker's chain to keep")


def _check_learning(cfg) -> None:
    for name in ("clip", "lam"):
        _need(_finite(getattr(cfg, name)) and getattr(cfg, name) >= 0, f"{name} must be a finite number >= 0")
    _need(cfg.lr is None or (_finite(cfg.lr) and cfg.lr > 0), f"lr must be > 0, got {cfg.lr!r}")
    _need(not cfg.hidden or all(h >= 1 for h in cfg.hidden), f"hidden widths must be >= 1, got {list(cfg.hidden)}")
    a = cfg.dirichlet_alpha
    _need(_finite(a) and a > 0, f"dirichlet_alpha must be a finite number > 0, got {a!r}")
    _need(a == _default(cfg, "dirichlet_alpha") or cfg.partition == "dirichlet",
          f"dirichlet_alpha applies to partition = \"dirichlet\", not {cfg.partition!r}")


#: An upper bound on the rounds any dataset's defaults give (for a config that leaves rounds out).
_MOST_DEFAULT_ROUNDS = 1000


def _check_privacy(cfg) -> None:
    for name in ("epsilon", "delta"):
        _need(_finite(getattr(cfg, name)) and getattr(cfg, name) >= 0, f"{name} must be a finite number >= 0")
    _need(cfg.no_dp or cfg.epsilon > 0, "epsilon must be > 0 (or use --no-dp)")
    # the run's total (basic composition) must be a number: past float's range it was inf,
    # and the run was lost after its last round
    rounds = cfg.rounds if cfg.rounds is not None else _MOST_DEFAULT_ROUNDS
    _need(cfg.no_dp or _finite(cfg.epsilon * rounds),
          f"epsilon ({cfg.epsilon!r}) times rounds ({rounds}) must be a finite privacy total")
    _need(cfg.no_dp or cfg.clip_mode != "none", "clip_mode none gives no bounded sensitivity: use it with --no-dp")
    _need(cfg.mechanism != "gaussian" or cfg.no_dp or 0 < cfg.delta < 1,
          f"the gaussian mechanism needs delta in (0, 1), got {cfg.delta!r}")
    if cfg.noise_multiplier is not None:
        z = cfg.noise_multiplier
        _need(_finite(z) and z > 0, f"noise_multiplier must be a finite number > 0, got {z!r}")
        _need(cfg.mechanism == "gaussian", f"noise_multiplier applies to the gaussian mechanism, not {cfg.mechanism!r}")
    if cfg.target_epsilon is not None:
        e = cfg.target_epsilon
        _need(_finite(e) and e > 0, f"target_epsilon must be a finite number > 0, got {e!r}")
        _need(not cfg.no_dp, "target_epsilon is a privacy budget: it cannot be used with --no-dp")
        _need(cfg.noise_multiplier is None,
              "target_epsilon chooses the noise multiplier: give --target-epsilon or --noise-multiplier, not both")
        _need(0 < cfg.delta < 1, f"target_epsilon is met at delta, which must be in (0, 1), got {cfg.delta!r}")


def _check_chain_and_run(cfg) -> None:
    check_rewards(cfg.rewards)
    _need(0 <= cfg.seed < 2**63, f"seed must be an integer in 0..2^63-1, got {cfg.seed}")
    _need(cfg.rpc_url is None or cfg.backend == "ethereum",
          f"rpc_url ({cfg.rpc_url}) applies to backend ethereum only, not {cfg.backend!r}; "
          "add --backend ethereum or drop --rpc-url")
    _need(cfg.chain_id is None or (cfg.backend == "ethereum" and cfg.chain_id > 0),
          f"chain_id ({cfg.chain_id}) is a positive chain id for backend ethereum only")
    _need(cfg.eth_mode in ("full", "optimistic"), f"eth_mode must be full or optimistic, got {cfg.eth_mode!r}")
    _need(cfg.eth_mode == "full" or cfg.backend == "ethereum",
          f"eth_mode {cfg.eth_mode!r} (--mode) applies to backend ethereum only; add --backend ethereum")
    _need(0 <= cfg.priority_fee_gwei <= cfg.max_fee_gwei,
          f"priority_fee_gwei ({cfg.priority_fee_gwei}) must be in 0..max_fee_gwei ({cfg.max_fee_gwei})")
    _need(0 <= cfg.difficulty <= 40, f"difficulty must be an integer number of bits in 0..40, got {cfg.difficulty!r}")
    _need(cfg.eval_every >= 1, "eval_every must be >= 1")
    _need(cfg.target_error is None or 0 <= cfg.target_error <= 1, "target_error must be in [0, 1]")
    # the contract (ethereum/contracts/learningchain.vy) implements the paper's rule only
    _need(cfg.backend != "ethereum" or cfg.aggregator == "l-nearest",
          f"the Ethereum backend implements l-nearest only, not {cfg.aggregator!r}")
    _need(cfg.backend != "ethereum" or not cfg.aggregator_options.get("pre"),
          "the Ethereum backend implements l-nearest only, without a pre-aggregation (aggregator_options.pre)")
    _need(1 <= cfg.threads <= 1024, f"threads must be in 1..1024, got {cfg.threads}")  # far more aborts torch
    _need(cfg.keep_bodies is None or cfg.keep_bodies >= 0, f"keep_bodies must be >= 0, got {cfg.keep_bodies}")
    _need(cfg.mempool_bases >= 1, f"mempool_bases must be >= 1, got {cfg.mempool_bases}")
    _need(cfg.message_bits in (16, 32), f"message_bits must be 16 or 32, got {cfg.message_bits}")
    _need(cfg.finality_depth is None or 1 <= cfg.finality_depth <= 1 << 20,
          f"finality_depth must be none or in 1..{1 << 20}, got {cfg.finality_depth}")
    _need(not cfg.prune or cfg.finality_depth is not None,
          "prune needs finality_depth: genesis must fix how deep a body may be dropped")
    _need(not cfg.prune or cfg.keep_chain, "prune applies to chain.sqlite, which --no-keep-chain does not write")
