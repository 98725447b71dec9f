"""The chain every party of a run derives from the config alone.

A pure function of the config and its seed: the data set, each holder's shard
(D_k), the protocol parameters and the genesis block, so separate processes
given one config build the same genesis. :func:`build_parties` adds the holders
and the Byzantine holders' attacks; every driver (the in-process simulation,
the TCP nodes, the Ethereum backend) starts from these.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional

import numpy as np

from ..attacks.holders import make_holder_attack
from ..config import NetConfigFile, TrainConfig
from ..data import data_fingerprint, from_object, load_dataset, load_user_data, partition_indices
from ..errors import ConfigError, DataError
from ..holder import DataHolder
from ..models import imported_spec, initial_vector, is_factory_path, model_spec
from ..models.custom import load_factory
from ..privacy.accounting import calibrate_noise_multiplier, calibrate_round_epsilon
from ..privacy.secure import SecureRandom
from ..protocol.aggregation import get_rule
from ..protocol.block import Block
from ..protocol.codec import NORM_TOL_BITS, QUANT_BITS
from ..protocol.params import ProtocolParams, parse_address
from ..protocol.quantize import max_exact_messages, max_quant_bits
from ..protocol.transition import make_genesis

__all__ = ["GENESIS_TIME_MS", "ChainSetup", "Parties", "apply_target_epsilon", "build_chain_setup", "build_params",
           "build_parties", "load_run_data", "network_setup", "resolve_noise_multiplier"]

#: Genesis timestamp of simulated chains (fixed, so a seed reproduces a chain).
GENESIS_TIME_MS = 1_700_000_000_000


def resolve_noise_multiplier(cfg: TrainConfig, *, batch_size: int, smallest_holder: int) -> float:
    """The gaussian mechanism's z: as configured, or the smallest that keeps the
    holder with the fewest examples within (epsilon, delta) over the T rounds
    according to the RDP accountant (privacy/accounting.py)."""
    if cfg.no_dp or cfg.mechanism != "gaussian":
        return 0.0
    if cfg.noise_multiplier is not None:
        return float(cfg.noise_multiplier)
    return calibrate_noise_multiplier(epsilon=float(cfg.epsilon), delta=float(cfg.delta), rounds=int(cfg.rounds),
                                      examples=int(smallest_holder), batch_size=int(batch_size),
                                      sampling=cfg.sampling, clip_mode=cfg.clip_mode)


def apply_target_epsilon(cfg: TrainConfig) -> TrainConfig:
    """A resolved config with ``target_epsilon`` turned into the budget the chain
    uses: the l2-laplace schedule's epsilon for which the T rounds spend at most
    the target by the tight accountant at ``delta``; for the gaussian mechanism
    the target is the whole run's epsilon its noise multiplier is calibrated to."""
    if cfg.target_epsilon is None or cfg.no_dp:
        return cfg
    target = float(cfg.target_epsilon)
    if cfg.mechanism == "gaussian":
        return replace(cfg, epsilon=target)
    eps = calibrate_round_epsilon(target_epsilon=target, delta=float(cfg.delta), schedule=cfg.schedule,
                                  rounds=int(cfg.rounds))
    return replace(cfg, epsilon=eps)


def build_params(cfg: TrainConfig, *, spec: dict, dim: int, batch_size: int, extra_messages: int = 0,
                 noise_multiplier: float = 0.0, data_record: Optional[dict] = None) -> ProtocolParams:
    """The protocol parameters genesis fixes, from the config."""
    options = dict(cfg.aggregator_options)
    if cfg.l is not None:
        options["l"] = cfg.l
    # the scale: 2^20 in int32 entries, or the largest whose unit bound fits int16 entries
    bits, tol = (QUANT_BITS if cfg.message_bits == 32 else max_quant_bits(16)), NORM_TOL_BITS
    max_messages = min(max_exact_messages(bits, tol), max(1024, 4 * (cfg.holders + extra_messages)))
    cap = get_rule(cfg.aggregator).message_cap
    if cap is not None:  # a rule whose work grows fast with n (mda) sizes the block limit itself
        max_messages = min(max_messages, max(cfg.holders + extra_messages, cap(options, cfg.holders)))
    return ProtocolParams(
        model=spec,
        dim=dim,
        lr=float(cfg.lr),
        lam=float(cfg.lam),
        batch_size=batch_size,
        holders=cfg.holders,
        aggregator=cfg.aggregator,
        aggregator_options=options,
        min_messages=1,
        max_messages=max_messages,
        clip=float(cfg.clip),
        clip_mode=cfg.clip_mode,
        mechanism="none" if cfg.no_dp else cfg.mechanism,
        epsilon=0.0 if cfg.no_dp else float(cfg.epsilon),
        delta=float(cfg.delta) if (cfg.mechanism == "gaussian" and not cfg.no_dp) else 0.0,
        noise_multiplier=float(noise_multiplier),
        schedule=cfg.schedule,
        rounds=cfg.rounds,
        quant_bits=bits,
        norm_tol_bits=tol,
        consensus="pow",
        difficulty=cfg.difficulty,
        finality_depth=cfg.finality_depth,
        message_bits=cfg.message_bits,
        rewards=dict(cfg.rewards),
        meta=_meta(cfg, data_record),
    )


def _meta(cfg: TrainConfig, data_record: Optional[dict] = None) -> dict:
    """What genesis records of the data: the Dirichlet alpha only where the partition draws with it,
    and, for a user's own data only, its source, sizes, shape and fingerprint."""
    meta = {"dataset": cfg.dataset, "seed": cfg.seed, "partition": cfg.partition}
    if cfg.partition == "dirichlet":
        meta["dirichlet_alpha"] = float(cfg.dirichlet_alpha)
    if data_record is not None:
        meta["data"] = data_record
    return meta


def load_run_data(cfg: TrainConfig, given=None):
    """The run's data set: ``given`` (arrays or a Dataset from Python), the user's
    ``data`` (a file or a factory), or the named built-in data set."""
    if given is not None:
        return from_object(given, "arrays", seed=cfg.seed, classes=cfg.classes)
    if cfg.data is not None:
        if is_factory_path(cfg.data) and not cfg.data.lower().endswith((".npz", ".csv")):
            fn = load_factory(cfg.data, "data")
            try:
                obj = fn()
            except Exception as exc:  # the user's code: any failure is reported as a data error
                raise DataError(f"data factory {cfg.data!r} raised {type(exc).__name__}: {exc}") from None
            return from_object(obj, cfg.data, seed=cfg.seed, classes=cfg.classes)
        return load_user_data(cfg.data, seed=cfg.seed, classes=cfg.classes, label_column=cfg.label_column)
    if cfg.dataset == "user":
        raise ConfigError("dataset 'user' needs your data: --data PATH (an .npz, a .csv or package.module:factory), "
                          "or arrays passed to learningchain.run_training(data=...)")
    return load_dataset(cfg.dataset, seed=cfg.seed, data_dir=cfg.idx_dir)


def _data_record(cfg: TrainConfig, dataset, given) -> Optional[dict]:
    """Genesis's record of a user's data set (None for the built-in ones: their genesis is unchanged)."""
    if cfg.dataset != "user":
        return None
    source = "arrays" if given is not None else (cfg.data if is_factory_path(cfg.data) and not
                                                 cfg.data.lower().endswith((".npz", ".csv")) else dataset.name)
    return {"source": source, "train": int(len(dataset.y_train)), "test": int(len(dataset.y_test)),
            "input_shape": list(dataset.input_shape or (dataset.features,)), "classes": int(dataset.classes),
            "sha256": data_fingerprint(dataset)}


def _model_spec(cfg: TrainConfig, dataset) -> dict:
    if is_factory_path(cfg.model):
        return imported_spec(cfg.model, dict(cfg.model_args), input_shape=dataset.input_shape or (dataset.features,),
                             classes=dataset.classes)
    options = {"hidden": list(cfg.hidden)} if cfg.model == "mlp" else {}
    return model_spec(cfg.model, dataset.features, dataset.classes, **options)


@dataclass
class ChainSetup:
    """What every party derives from the config alone: the same on every machine."""

    dataset: object
    spec: dict
    params: ProtocolParams
    genesis: Block
    parts: list  # index array of each holder's shard (D_k)
    rng: np.random.Generator  # the config's generator, after the partition drew from it


@dataclass
class Parties:
    """The parties of one run, shared by every driver: the chain's genesis, the K
    holders and the attacks of the Byzantine ones (holder index -> attack)."""

    dataset: object
    spec: dict
    params: ProtocolParams
    genesis: Block
    holders: list
    attacks: dict
    byzantine_holders: list


def build_chain_setup(cfg: TrainConfig, *, params_hook: Optional[Callable[[ProtocolParams], ProtocolParams]] = None,
                      genesis_time_ms: int = GENESIS_TIME_MS, data=None) -> ChainSetup:
    """Data set, holder shards, protocol parameters and genesis: a pure function of
    the config and its seed, so separate processes given one config build the same
    genesis. ``params_hook`` adjusts the parameters (e.g. the consensus of a network);
    ``data`` is a user's data given from Python (arrays or a Dataset, see data/user.py)."""
    cfg = apply_target_epsilon(cfg.resolved())
    if data is not None and cfg.dataset != "user":
        raise ConfigError(f"data given from Python needs dataset = 'user', not {cfg.dataset!r}")
    rng = np.random.default_rng(cfg.seed)
    dataset = load_run_data(cfg, data)
    if cfg.holders > len(dataset.y_train):
        raise ConfigError(f"{cfg.holders} holders for {len(dataset.y_train)} training examples")
    parts = partition_indices(dataset.y_train, cfg.holders, rng, scheme=cfg.partition, alpha=cfg.dirichlet_alpha)
    spec = _model_spec(cfg, dataset)
    w0 = initial_vector(spec, cfg.seed)
    batch_size = cfg.batch_size or max(len(p) for p in parts)
    if cfg.attack == "sybil" and cfg.byzantine:
        identities = int(cfg.attack_options.get("identities", 10)) if isinstance(cfg.attack_options, dict) else 10
        extra = cfg.byzantine * max(0, identities - 1)
    else:
        extra = 0
    z = resolve_noise_multiplier(cfg, batch_size=batch_size, smallest_holder=min(len(p) for p in parts))
    params = build_params(cfg, spec=spec, dim=int(w0.shape[0]), batch_size=batch_size, extra_messages=extra,
                          noise_multiplier=z, data_record=_data_record(cfg, dataset, data))
    if params_hook is not None:
        params = params_hook(params)
    genesis = make_genesis(params, w0, timestamp=genesis_time_ms)
    return ChainSetup(dataset, spec, params, genesis, parts, rng)


def build_parties(cfg: TrainConfig, *, data=None) -> Parties:
    """Data, model, protocol parameters, genesis and holders (shared by every backend);
    ``data``: a user's arrays or Dataset given from Python."""
    setup = build_chain_setup(cfg, data=data)
    dataset, params, rng = setup.dataset, setup.params, setup.rng
    byz = sorted(rng.choice(cfg.holders, size=cfg.byzantine, replace=False).tolist()) if cfg.byzantine else []
    attacks = {i: make_holder_attack(cfg.attack, **cfg.attack_options) for i in byz}
    secure = cfg.secure_rng is True  # in-process runs stay reproducible from --seed unless asked
    holders = [DataHolder(k, dataset.x_train[idx], dataset.y_train[idx], params,
                          rng=SecureRandom() if secure else np.random.default_rng([cfg.seed, 1, k]),
                          fresh_identity=cfg.fresh_identities, sampling=cfg.sampling)
               for k, idx in enumerate(setup.parts)]
    return Parties(dataset, setup.spec, params, setup.genesis, holders, attacks, byz)


def network_setup(conf: NetConfigFile) -> ChainSetup:
    """The chain every node of a network config joins: data, shards, parameters, genesis.

    A pure function of the config (the seed included), so each process, on any
    machine, builds the same genesis from the same file: the ``[train]`` keys, and
    the consensus keys of ``[network]`` (proof of work and its retarget, or
    authorities; enrolled members, one message each a round, and their budget).
    """
    conf.check_node()
    net = conf.network
    consensus = net.consensus or conf.train.consensus
    members = tuple("0x" + parse_address(a).hex() for a in net.members)

    def hook(params):
        if members:
            # one message per enrolled holder per round: no more can be valid
            params = params.replace(members=members, max_messages=len(members), budget=net.budget)
        if consensus == "poa":
            auths = tuple("0x" + parse_address(a).hex() for a in net.authorities)
            return params.replace(consensus="poa", authorities=auths, difficulty=0, retarget={})
        return params.replace(consensus="pow", retarget=net.retarget())

    when = GENESIS_TIME_MS if net.genesis_time_ms is None else net.genesis_time_ms
    return build_chain_setup(conf.train, params_hook=hook, genesis_time_ms=when)
