"""``learningchain train``: one LearningChain run, end to end, on the real protocol.

Builds the data holders, the genesis block and the computing nodes from a
:class:`~learningchain.config.TrainConfig`, drives them through the in-process
network for T rounds (or until the head model meets ``target_error``), trains
the centralized baseline on the pooled data, and writes the run directory:
``summary.json``, ``metrics.csv``, ``curve.png``, ``chain.sqlite``, ``model.npy``
and ``model.json``. The model reported is the one on the head block that the
honest nodes accepted: nothing bypasses the chain.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import textwrap
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..attacks.holders import make_holder_attack
from ..config import TrainConfig
from ..data import load_dataset, partition_indices
from ..errors import ConfigError
from ..holder import DataHolder
from ..models import build_model, error_rate, initial_vector, mean_loss, model_spec, set_flat
from ..network.simulation import HonestMiner, InProcessNetwork, Miner
from ..node import Node, SQLiteStore, VerdictCache
from ..privacy.accounting import privacy_report
from ..protocol.params import ProtocolParams
from ..protocol.quantize import max_exact_messages
from ..protocol.transition import make_genesis
from ..types import hexstr
from .baseline import train_centralized
from .rundir import check_out_dir, in_run_dir
from ..privacy.secure import generator_of

__all__ = ["run_training", "build_params", "build_chain_setup", "ChainSetup", "check_out_dir", "write_curve", "curve_figure", "curve_title", "Evaluator", "GENESIS_TIME_MS"]

#: Genesis timestamp of simulated chains (fixed, so a seed reproduces a chain).
GENESIS_TIME_MS = 1_700_000_000_000

#: The heaviest chain of a Byzantine-miner run, as a holder that does not validate
#: would follow it (``keep_attacker_chain``).
ATTACKER_CHAIN = "attacker-chain.sqlite"


def resolve_noise_multiplier(cfg: TrainConfig, *, batch_size: int, smallest_holder: int) -> float:
    """The gaussian mechanism's z: as configured, or the smallest that keeps the
    holder with the fewest examples within (epsilon, delta) over the T rounds
    according to the RDP accountant (privacy/accounting.py)."""
    if cfg.no_dp or cfg.mechanism != "gaussian":
        return 0.0
    if cfg.noise_multiplier is not None:
        return float(cfg.noise_multiplier)
    from ..privacy.accounting import calibrate_noise_multiplier

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
    from ..privacy.accounting import calibrate_round_epsilon

    eps = calibrate_round_epsilon(target_epsilon=target, delta=float(cfg.delta), schedule=cfg.schedule,
                                  rounds=int(cfg.rounds))
    return replace(cfg, epsilon=eps)


def build_params(cfg: TrainConfig, *, spec: dict, dim: int, batch_size: int, extra_messages: int = 0,
                 noise_multiplier: float = 0.0) -> ProtocolParams:
    options = dict(cfg.aggregator_options)
    if cfg.l is not None:
        options["l"] = cfg.l
    bits, tol = 20, 10
    max_messages = min(max_exact_messages(bits, tol), max(1024, 4 * (cfg.holders + extra_messages)))
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
        rewards=dict(cfg.rewards),
        meta={"dataset": cfg.dataset, "seed": cfg.seed, "partition": cfg.partition},
    )


class Evaluator:
    """Test error and training loss of a flat model vector (observer, not consensus)."""

    def __init__(self, spec, dataset):
        self.spec = spec
        self.model = build_model(spec)
        self.xe = torch.as_tensor(dataset.x_test)
        self.ye = torch.as_tensor(dataset.y_test)
        self.xt = torch.as_tensor(dataset.x_train)
        self.yt = torch.as_tensor(dataset.y_train)

    def __call__(self, w: np.ndarray) -> tuple[float, float]:
        if not np.all(np.isfinite(w)):
            return 1.0, float("inf")
        set_flat(self.model, w)
        return error_rate(self.model, self.spec, self.xe, self.ye), mean_loss(self.model, self.spec, self.xt, self.yt)


def curve_title(summary: dict, dataset_name: str) -> str:
    """The run plot's title: data set, model, rule, holders and Byzantine ones,
    privacy, backend; a Byzantine-miner run names its miners and their attack."""
    model = summary.get("model") or {}
    kind = model.get("kind", "?") if isinstance(model, dict) else str(model)
    if kind == "mlp" and model.get("hidden"):
        kind = f"mlp {'x'.join(str(h) for h in model['hidden'])}"
    cfg = summary.get("config") or {}
    parties = f"K={summary['holders']}"
    if summary.get("byzantine"):
        parties += f", {summary['byzantine']} Byzantine holders ({summary.get('attack')})"
    if summary.get("byzantine_miners"):
        parties += (f", {summary['byzantine_miners']} Byzantine miners ({summary.get('byzantine_power', 0):.0%} "
                    f"of hash power, {summary.get('miner_attack')})")
    if not summary.get("byzantine") and not summary.get("byzantine_miners"):
        parties += ", no Byzantine"
    privacy = summary.get("privacy") or {}
    if privacy.get("mechanism", "none") == "none":
        dp = "no DP"
    else:
        dp = f"{privacy['mechanism']} eps={cfg.get('epsilon', summary.get('epsilon_per_round'))}"
        if privacy.get("schedule") not in (None, "constant"):
            dp += f" ({privacy['schedule']})"
    backend = summary.get("backend") or cfg.get("backend") or "native"
    return f"{dataset_name}, {kind}, {summary.get('aggregator')}, {dp}, {backend} backend\n{parties}"


def curve_figure(rows: list, baseline_curve: list, title: str):
    """The run plot as a matplotlib Figure: the head block's test error against its
    height (a round whose block honest nodes refused adds no point), the
    centralized baseline up to the same height, and a y-axis fitted to the data,
    logarithmic when the errors span more than a decade."""
    from matplotlib.figure import Figure

    by_height: dict = {}
    for r in rows:
        if r.get("test_error") is not None:
            by_height[int(r.get("height", r["round"]))] = float(r["test_error"])
    xs = sorted(by_height)
    ys = [by_height[x] for x in xs]
    top = max(xs) if xs else max((int(r.get("height", r["round"])) for r in rows), default=0)
    base = [(int(t), float(e)) for t, e in baseline_curve or [] if int(t) <= top]
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(xs, ys, label="LearningChain (head block)")
    if base:
        bx, by = zip(*base)
        ax.plot(bx, by, "--", label="centralized baseline")
    ax.set_xlabel("block height")
    ax.set_ylabel("test error")
    ax.set_xlim(0, max(1, top))
    values = [v for v in ys + [e for _, e in base] if math.isfinite(v)]
    positive = [v for v in values if v > 0]
    if positive and max(positive) > 10 * min(positive):
        lo, hi = min(positive), max(positive)
        if len(positive) == len(values):
            ax.set_yscale("log")
            ax.set_ylim(lo / 1.25, hi * 1.25)
        else:  # an error of exactly 0 has no logarithm: linear below the smallest positive error
            ax.set_yscale("symlog", linthresh=10 ** math.floor(math.log10(lo)), linscale=0.5)
            ax.set_ylim(0.0, hi * 1.25)
    elif values:
        lo, hi = min(values), max(values)
        pad = max(0.05 * (hi - lo), 0.02 * hi, 1e-3)
        ax.set_ylim(max(0.0, lo - pad), hi + pad)
    else:
        ax.set_ylim(0, 1)
    if ax.get_yscale() != "linear":
        from matplotlib.ticker import FuncFormatter

        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:g}" if v > 0 and round(v / 10 ** math.floor(math.log10(v))) in (2, 5) else ""))
    ax.set_title("\n".join(textwrap.fill(line, 78) for line in title.split("\n")), fontsize=9)
    ax.grid(alpha=0.3, which="both" if ax.get_yscale() != "linear" else "major")
    ax.legend(fontsize=8)
    return fig


def write_curve(path: Path, rows: list, baseline_curve: list, title: str) -> None:
    fig = curve_figure(rows, baseline_curve, title)
    fig.savefig(path, dpi=120)


@dataclass
class ChainSetup:
    """What every party derives from the config alone: the same on every machine."""

    dataset: object
    spec: dict
    params: ProtocolParams
    genesis: object
    parts: list  # index array of each holder's shard (D_k)
    rng: np.random.Generator  # the config's generator, after the partition drew from it


@dataclass
class _Parties:
    dataset: object
    spec: dict
    params: ProtocolParams
    genesis: object
    holders: list
    attacks: dict
    byzantine_holders: list


def build_chain_setup(cfg: TrainConfig, *, params_hook: Optional[Callable[[ProtocolParams], ProtocolParams]] = None,
                      genesis_time_ms: int = GENESIS_TIME_MS) -> ChainSetup:
    """Data set, holder shards, protocol parameters and genesis: a pure function of
    the config and its seed, so separate processes given one config build the same
    genesis. ``params_hook`` adjusts the parameters (e.g. the consensus of a network)."""
    cfg = apply_target_epsilon(cfg.resolved())
    rng = np.random.default_rng(cfg.seed)
    dataset = load_dataset(cfg.dataset, seed=cfg.seed, data_dir=cfg.idx_dir)
    if cfg.holders > len(dataset.y_train):
        raise ConfigError(f"{cfg.holders} holders for {len(dataset.y_train)} training examples")
    parts = partition_indices(dataset.y_train, cfg.holders, rng, scheme=cfg.partition)
    options = {"hidden": list(cfg.hidden)} if cfg.model == "mlp" else {}
    spec = model_spec(cfg.model, dataset.features, dataset.classes, **options)
    w0 = initial_vector(spec, cfg.seed)
    batch_size = cfg.batch_size or max(len(p) for p in parts)
    if cfg.attack == "sybil" and cfg.byzantine:
        identities = int(cfg.attack_options.get("identities", 10)) if isinstance(cfg.attack_options, dict) else 10
        extra = cfg.byzantine * max(0, identities - 1)
    else:
        extra = 0
    z = resolve_noise_multiplier(cfg, batch_size=batch_size, smallest_holder=min(len(p) for p in parts))
    params = build_params(cfg, spec=spec, dim=int(w0.shape[0]), batch_size=batch_size, extra_messages=extra,
                          noise_multiplier=z)
    if params_hook is not None:
        params = params_hook(params)
    genesis = make_genesis(params, w0, timestamp=genesis_time_ms)
    return ChainSetup(dataset, spec, params, genesis, parts, rng)


def build_parties(cfg: TrainConfig) -> _Parties:
    """Data, model, protocol parameters, genesis and holders (shared by every backend)."""
    setup = build_chain_setup(cfg)
    dataset, params, rng = setup.dataset, setup.params, setup.rng
    byz = sorted(rng.choice(cfg.holders, size=cfg.byzantine, replace=False).tolist()) if cfg.byzantine else []
    attacks = {i: make_holder_attack(cfg.attack, **cfg.attack_options) for i in byz}
    holders = []
    secure = cfg.secure_rng is True  # in-process runs stay reproducible from --seed unless asked
    if secure:
        from ..privacy.secure import SecureRandom
    for k, idx in enumerate(setup.parts):
        holders.append(DataHolder(k, dataset.x_train[idx], dataset.y_train[idx], params,
                                  rng=SecureRandom() if secure else np.random.default_rng([cfg.seed, 1, k]),
                                  fresh_identity=cfg.fresh_identities, sampling=cfg.sampling))
    return _Parties(dataset, setup.spec, params, setup.genesis, holders, attacks, byz)


def build_miners(cfg: TrainConfig, genesis, store_path: Optional[Path]) -> tuple[list, int]:
    """M computing nodes: honest ones share one verdict cache; node 0 archives to SQLite.

    The last ``byzantine_miners`` nodes are Byzantine and share ``byzantine_power``
    of the hash power; the honest ones share the rest equally.
    """
    rng = np.random.default_rng([cfg.seed, 2])
    verdicts = VerdictCache()
    n_byz = cfg.byzantine_miners
    if n_byz >= cfg.miners:
        raise ConfigError(f"byzantine_miners ({n_byz}) must leave at least one honest miner of {cfg.miners}")
    honest_power = (1.0 - cfg.byzantine_power) / (cfg.miners - n_byz)
    miners = []
    factory = None
    if n_byz:
        from ..attacks.miners import miner_strategy_factory

        factory = miner_strategy_factory(cfg.miner_attack, seed=cfg.seed, **cfg.miner_attack_options)
    from ..crypto import PrivateKey

    for j in range(cfg.miners):
        byzantine = j >= cfg.miners - n_byz
        key = PrivateKey.generate(rng)
        if byzantine:
            strategy = factory()
            node = Node(genesis, name=f"byzantine-{j}", miner=key.address, keep_bodies=cfg.keep_bodies,
                        **strategy.node_options())
            miners.append(Miner(node, cfg.byzantine_power / n_byz, strategy))
        else:
            store = SQLiteStore(store_path) if j == 0 and store_path is not None else None
            node = Node(genesis, store=store, name=f"node-{j}", miner=key.address, verdicts=verdicts,
                        check_unseen=cfg.check_unseen, min_inclusion=cfg.min_inclusion,
                        keep_bodies=None if store is not None else cfg.keep_bodies)
            miners.append(Miner(node, honest_power, HonestMiner()))
    return miners, n_byz


def run_training(cfg: TrainConfig, *, progress: Optional[bool] = None,
                 on_round: Optional[Callable[[dict], None]] = None) -> dict:
    cfg = cfg.resolved()
    if cfg.backend == "ethereum":
        from ..ethereum.runner import run_training_ethereum

        return run_training_ethereum(cfg, progress=progress, on_round=on_round)
    started = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    target = check_out_dir(cfg.out, cfg.dataset, force=cfg.force)
    parties = build_parties(cfg)  # refuses a bad configuration before anything is written
    check_miners(cfg)
    return in_run_dir(target, lambda out: _run_native(cfg, parties, out, started, progress, on_round))


def check_miners(cfg: TrainConfig) -> None:
    """Refuse a bad miner configuration (what build_miners would refuse) before anything is written."""
    if cfg.byzantine_miners >= cfg.miners:
        raise ConfigError(f"byzantine_miners ({cfg.byzantine_miners}) must leave at least one honest miner of "
                          f"{cfg.miners}")
    if cfg.byzantine_miners:
        from ..attacks.miners import miner_strategy_factory

        miner_strategy_factory(cfg.miner_attack, seed=cfg.seed, **cfg.miner_attack_options)


def _run_native(cfg: TrainConfig, parties: "_Parties", out: Path, started: float, progress: Optional[bool],
                on_round: Optional[Callable[[dict], None]]) -> dict:
    """The native run, written into ``out``; the summary says ``interrupted`` after Ctrl-C."""
    miners, n_byz_miners = build_miners(cfg, parties.genesis, out / "chain.sqlite" if cfg.keep_chain else None)
    keep = None if cfg.keep_bodies is None else max(cfg.keep_bodies, cfg.verify_last + 2)
    attacker_store = SQLiteStore(out / ATTACKER_CHAIN) if cfg.keep_attacker_chain else None
    net = InProcessNetwork(parties.genesis, parties.holders, miners,
                           rng=np.random.default_rng([cfg.seed, 3]), attacks=parties.attacks, keep_bodies=keep,
                           observer_store=attacker_store)
    evaluate = Evaluator(parties.spec, parties.dataset)
    rows = []
    stopped_by = "rounds"
    bar = progress_bar(cfg, progress, f"{cfg.dataset} K={cfg.holders}", "block")
    selected_byz_total = 0
    try:
        for t in range(1, cfg.rounds + 1):
            res = net.step()
            head = res.head
            err, loss = (None, None)
            if t % cfg.eval_every == 0 or t == cfg.rounds:
                err, loss = evaluate(head.model)
            sel_byz = net.byzantine_selected(head) if head.height > 0 else 0
            selected_byz_total += sel_byz if res.head_changed else 0
            row = {
                "round": t,
                "height": head.height,
                "test_error": err,
                "train_loss": loss,
                "selected_byzantine": sel_byz,
                "winner": res.winner,
                "byzantine_winner": int(miners[res.winner].byzantine),
                "rejected": int(sum(res.rejections.values()) > 0),
                "seconds": round(res.seconds, 6),
            }
            rows.append(row)
            if on_round:
                on_round(row)
            bar.update(1)
            if err is not None:
                bar.set_postfix(err=f"{err:.4f}", h=head.height)
            if cfg.target_error is not None and err is not None and err <= cfg.target_error:
                stopped_by = "target-error"
                break
    except KeyboardInterrupt:
        stopped_by = "interrupted"  # the rounds done so far are written, marked as interrupted
    finally:
        bar.close()
    say = status_printer(cfg, progress)
    head = net.head
    archive = miners[0].node
    try:
        summary, baseline = common_summary(cfg, parties, rows, head, evaluate, stopped_by, started, say=say)
    except KeyboardInterrupt:  # during the baseline: the rounds are done, the baseline is left out
        stopped_by = "interrupted"
        summary, baseline = common_summary(cfg, parties, rows, head, evaluate, stopped_by, started)
    summary.update({
        "l": parties.params.l if cfg.aggregator.startswith("l-nearest") else None,
        "baseline_curve": baseline["curve"],
        "rejected_blocks": len(net.rejected_blocks),
        "rejected_by_reason": dict(sorted(_count_reasons(net.rejected_blocks).items())),
        "rejected_by_node": {miners[i].node.name: n for i, n in sorted(net.rejected_by_node.items())},
        "rejected_messages": dict(net.messages_rejected),
        "selected_byzantine_total": selected_byz_total,
        "delta_total": summary["privacy"].get("delta_total"),
        "difficulty_bits": cfg.difficulty,
        "mining_tries": net.mining_tries,
        "chain": "chain.sqlite" if cfg.keep_chain else None,
    })
    if n_byz_miners:
        from ..attacks.miners import summarize_miner_attack

        say(f"final check of the last {cfg.verify_last} blocks of the honest and the heaviest chain ...")
        summary.update(summarize_miner_attack(net, miners, cfg))
        if attacker_store is not None:
            summary["attacker_chain"] = ATTACKER_CHAIN
    if cfg.keep_chain:
        from ..protocol.rewards import balances_of

        say(f"rewards: reading the {head.height} blocks of chain.sqlite ...")
        paid = balances_of(archive.store.canonical_blocks(0), parties.params.rewards)
        summary["rewards"] = {"rule": parties.params.rewards, "paid_to_miners": paid.paid_to_miners,
                              "paid_by_holders": paid.paid_by_holders, "miners_paid": len(paid.mined)}
    say("writing summary.json, metrics.csv, model.npy and curve.png ...")
    _write_outputs(out, summary, rows, baseline["curve"], parties, head)
    archive.store.close()
    if attacker_store is not None:
        attacker_store.close()
    summary["out"] = str(out)
    return summary


def progress_bar(cfg: TrainConfig, progress: Optional[bool], desc: str, unit: str):
    """The run's progress bar (shown when ``progress``, else as the config says)."""
    from tqdm import tqdm

    show = cfg.progress if progress is None else progress
    return tqdm(total=cfg.rounds, disable=None if show else True, desc=desc, unit=unit, mininterval=0.5)


def status_printer(cfg: TrainConfig, progress: Optional[bool]) -> Callable[[str], None]:
    """What the end of a run prints, after the progress bar, while it works: one line
    per step on stderr (nothing when the bar is off)."""
    show = cfg.progress if progress is None else progress

    def say(message: str) -> None:
        if show:
            print(f"  {message}", file=sys.stderr, flush=True)

    return say


def common_summary(cfg, parties, rows, head, evaluate, stopped_by, started: float,
                   say: Callable[[str], None] = lambda message: None) -> tuple[dict, dict]:
    """The end of a run on any backend (native chain or Ethereum): the head model's
    final evaluation, the centralized baseline, the privacy report, and the summary
    keys every backend reports. Returns (summary, baseline). An interrupted run
    (``stopped_by`` "interrupted") has no baseline."""
    final_err, final_loss = evaluate(head.model)
    interrupted = stopped_by == "interrupted"
    if interrupted:  # no baseline: the user asked to stop
        baseline = {"test_error": None, "train_loss": None, "curve": []}
    else:
        say(f"centralized baseline: {cfg.rounds} rounds of full-batch gradient descent on the "
            f"{len(parties.dataset.y_train)} pooled training examples ...")
        baseline = train_centralized(parties.spec, parties.genesis.model, parties.dataset.x_train,
                                     parties.dataset.y_train, parties.dataset.x_test, parties.dataset.y_test,
                                     lr=cfg.lr, lam=cfg.lam, rounds=cfg.rounds, eval_every=cfg.eval_every)
    privacy = privacy_report(parties.params, len(rows), holder_examples=[h.examples for h in parties.holders],
                             delta=cfg.delta, target_epsilon=cfg.target_epsilon, sampling=cfg.sampling,
                             generator=generator_of(cfg.secure_rng, in_process=True))
    wall = time.perf_counter() - started
    return {
        "dataset": parties.dataset.describe(),
        "model": parties.spec,
        "parameters": parties.params.dim,
        "holders": cfg.holders,
        "miners": cfg.miners,
        "byzantine": cfg.byzantine,
        "byzantine_holders": parties.byzantine_holders,
        "attack": cfg.attack if cfg.byzantine else None,
        "aggregator": cfg.aggregator,
        "test_error": final_err,
        "train_loss": final_loss,
        "baseline_test_error": baseline["test_error"],
        "baseline_train_loss": baseline["train_loss"],
        "rounds": len(rows),
        "stopped_by": stopped_by,
        "interrupted": interrupted,
        "height": head.height,
        "head_hash": hexstr(head.hash),
        "genesis_hash": hexstr(parties.genesis.hash),
        "epsilon_per_round": privacy["epsilon_per_round"],
        "epsilon_total": privacy["epsilon_total"],
        "epsilon_total_tight": privacy.get("epsilon_total_tight"),
        "delta_tight": privacy.get("delta_tight"),
        "privacy": privacy,
        "wall_seconds": round(wall, 3),
        "seconds_per_round": round(sum(r["seconds"] for r in rows) / max(1, len(rows)), 6),
        "config": cfg.to_dict(),
    }, baseline


def _count_reasons(rejected: dict) -> dict:
    counts: dict = {}
    for reason in rejected.values():
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def _write_outputs(out: Path, summary: dict, rows: list, baseline_curve: list, parties: _Parties, head) -> None:
    with open(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2, default=_json_default)
        fh.write("\n")
    with open(out / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0].keys()) if rows else ["round"])
        writer.writeheader()
        writer.writerows(rows)
    np.save(out / "model.npy", np.asarray(head.model, dtype=np.float64))
    with open(out / "model.json", "w") as fh:
        json.dump({"spec": parties.spec, "dim": parties.params.dim, "block": hexstr(head.hash),
                   "height": head.height, "file": "model.npy"}, fh, indent=2)
        fh.write("\n")
    write_curve(out / "curve.png", rows, baseline_curve, curve_title(summary, parties.dataset.name))


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, bytes):
        return hexstr(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")
