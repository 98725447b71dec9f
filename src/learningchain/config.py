"""Run configuration: every option of ``learningchain train``, loaded from TOML
and/or the command line, checked on load (an unknown key or a wrong type is
refused with a message that names it)."""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import ConfigError

__all__ = ["TrainConfig", "DATASET_DEFAULTS", "load_toml", "parse_set", "check_types"]

#: Per-dataset defaults (the paper's holder counts; learning rates chosen on the
#: centralized baseline, see docs/ARCHITECTURE.md).
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "synthetic": {"holders": 30, "rounds": 200, "lr": 1.0},
    "breast-cancer": {"holders": 10, "rounds": 300, "lr": 0.5},
    "mnist": {"holders": 100, "rounds": 300, "lr": 0.5},
    "fashion-mnist": {"holders": 100, "rounds": 300, "lr": 0.5},
}


def _kind(value) -> str:
    """How a value reads to a user: 'a string', 'a boolean', ..."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _expected(tp) -> tuple[str, Any]:
    """(what a value of type ``tp`` must be, a predicate) for the types config fields use."""
    if tp is bool:
        return "true or false", lambda v: isinstance(v, bool)
    if tp is int:
        return "an integer", _is_int
    if tp is float:
        return "a number", lambda v: _is_int(v) or isinstance(v, float)
    if tp is str:
        return "a string", lambda v: isinstance(v, str)
    if tp is dict or get_origin(tp) is dict:
        return "a table", lambda v: isinstance(v, dict)
    if tp is tuple or get_origin(tp) is tuple:
        args = get_args(tp)
        if args and args[-1] is Ellipsis:
            what, ok = _expected(args[0])
            plural = {"an integer": "integers", "a string": "strings", "a number": "numbers"}.get(what, what)
            return f"a list of {plural}", lambda v: isinstance(v, (list, tuple)) and all(ok(x) for x in v)
        return "a list", lambda v: isinstance(v, (list, tuple))
    raise TypeError(f"no check for config type {tp!r}")  # pragma: no cover - a new field type needs one


def _check(tp):
    if get_origin(tp) is Union:
        args = [a for a in get_args(tp) if a is not type(None)]
        what, ok = _check(args[0]) if len(args) == 1 else ("?", lambda v: False)
        return what, lambda v: v is None or ok(v)
    return _expected(tp)


@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return get_type_hints(cls)


def check_types(cls, values: dict, where: str = "") -> None:
    """Refuse any value of ``values`` whose type is not its dataclass field's type
    (derived from the annotations of ``cls``), with a message naming the key, the
    value and the type expected: ``no_dp must be true or false, got 'false' (a string)``.
    Booleans are never numbers, integers are never booleans or floats, a float field
    takes an integer; an Optional field takes None."""
    hints = _hints(cls)
    for name, value in values.items():
        if name not in hints:
            continue
        what, ok = _check(hints[name])
        if not ok(value):
            raise ConfigError(f"{where}{name} must be {what}, got {value!r} ({_kind(value)})")


def field_type(cls, name: str):
    """The annotation of field ``name`` of ``cls`` (Optional unwrapped), or None."""
    tp = _hints(cls).get(name)
    if get_origin(tp) is Union:
        args = [a for a in get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else tp
    return tp


@dataclass(frozen=True)
class TrainConfig:
    # data and model
    dataset: str = "synthetic"
    idx_dir: Optional[str] = None  # directory with IDX files (mnist, fashion-mnist)
    partition: str = "iid"
    model: str = "logistic"
    hidden: tuple[int, ...] = (100,)
    # parties
    holders: Optional[int] = None  # K; default per data set
    miners: Optional[int] = None  # M; default K (every holder is also a computing node)
    byzantine: int = 0  # Byzantine holders
    attack: str = "gaussian"
    attack_options: dict = field(default_factory=dict)
    fresh_identities: bool = False
    # Byzantine computing nodes
    byzantine_miners: int = 0
    byzantine_power: float = 0.0
    miner_attack: str = "wrong-model"
    miner_attack_options: dict = field(default_factory=dict)
    check_unseen: bool = True  # honest nodes refuse blocks with messages never broadcast to them (Sec. V-B)
    min_inclusion: float = 0.0  # honest nodes refuse blocks omitting more of their mempool (0 = off)
    verify_last: int = 6  # s of the holders' final check reported in the summary
    keep_attacker_chain: bool = False  # store the heaviest chain (the one Byzantine miners write) as attacker-chain.sqlite
    # learning and aggregation
    aggregator: str = "l-nearest"
    l: Optional[int] = None  # default ceil(K/2)
    aggregator_options: dict = field(default_factory=dict)
    rounds: Optional[int] = None  # T
    lr: Optional[float] = None
    lam: float = 0.0
    batch_size: Optional[int] = None  # m; default all local data
    sampling: str = "fixed"  # how a batch of m is drawn: fixed (m without replacement) or poisson (each with q = m/N_k)
    # privacy
    epsilon: float = 0.1
    no_dp: bool = False
    mechanism: str = "l2-laplace"
    delta: float = 1e-5
    noise_multiplier: Optional[float] = None  # gaussian: sigma / (2G); default calibrated to (epsilon, delta)
    target_epsilon: Optional[float] = None  # whole run: per-round epsilon (l2-laplace) or z (gaussian) chosen for it
    schedule: str = "constant"
    secure_rng: Optional[bool] = None  # noise and fresh keys from the OS CSPRNG; default: node processes yes, train no
    clip: float = 1.0
    clip_mode: str = "auto"  # auto: per-example with noise, none with --no-dp
    # chain
    backend: str = "native"
    rpc_url: Optional[str] = None
    difficulty: int = 8
    consensus: str = "pow"
    target_error: Optional[float] = None
    rewards: dict = field(default_factory=lambda: {"mode": "split", "block_reward": 1_000_000})
    # run
    seed: int = 0
    out: Optional[str] = None
    force: bool = False
    eval_every: int = 1
    progress: bool = True
    threads: int = 1  # torch threads for the holders' gradients (the simulation is mostly small ops)
    keep_bodies: Optional[int] = 16
    keep_chain: bool = True  # False: no chain.sqlite (large models and grids; nodes keep recent blocks in memory)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        from .data import DATASETS
        from .models import MODEL_KINDS

        def need(cond, what):
            if not cond:
                raise ConfigError(what)

        check_types(type(self), {f.name: getattr(self, f.name) for f in fields(self)})
        need(self.dataset in DATASETS, f"unknown dataset {self.dataset!r}; known: {', '.join(DATASETS)}")
        need(self.model in MODEL_KINDS, f"unknown model {self.model!r}; known: {', '.join(MODEL_KINDS)}")
        for name in ("holders", "miners", "rounds", "batch_size", "l"):
            v = getattr(self, name)
            need(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
                 f"{name} must be a positive integer, got {v!r}")
        need(isinstance(self.byzantine, int) and self.byzantine >= 0, f"byzantine must be >= 0, got {self.byzantine!r}")
        if self.holders is not None:
            need(self.byzantine < self.holders,
                 f"byzantine ({self.byzantine}) must be below holders ({self.holders}): "
                 "at least one data holder must be honest")
        need(isinstance(self.byzantine_miners, int) and self.byzantine_miners >= 0,
             f"byzantine_miners must be >= 0, got {self.byzantine_miners!r}")
        need(0.0 <= self.byzantine_power < 1.0 or (self.byzantine_power == 1.0 and self.byzantine_miners > 0),
             f"byzantine_power must be in [0, 1), got {self.byzantine_power!r}")
        if self.byzantine_power > 0:
            need(self.byzantine_miners > 0, "byzantine_power > 0 needs byzantine_miners >= 1")
        for name in ("epsilon", "clip", "delta", "lam"):
            v = getattr(self, name)
            need(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0, f"{name} must be a finite number >= 0")
        need(self.lr is None or (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0),
             f"lr must be > 0, got {self.lr!r}")
        need(self.no_dp or self.epsilon > 0, "epsilon must be > 0 (or use --no-dp)")
        need(self.sampling in ("fixed", "poisson"),
             f"sampling must be fixed (m examples without replacement) or poisson (each example with "
             f"probability m / N_k), got {self.sampling!r}")
        need(self.clip_mode in ("auto", "per-example", "total", "none"),
             f"clip_mode must be auto, per-example, total or none, got {self.clip_mode!r}")
        need(self.no_dp or self.clip_mode != "none", "clip_mode none gives no bounded sensitivity: use it with --no-dp")
        if self.noise_multiplier is not None:
            z = self.noise_multiplier
            need(isinstance(z, (int, float)) and not isinstance(z, bool) and math.isfinite(z) and z > 0,
                 f"noise_multiplier must be a finite number > 0, got {z!r}")
            need(self.mechanism == "gaussian",
                 f"noise_multiplier applies to the gaussian mechanism, not {self.mechanism!r}")
        if self.target_epsilon is not None:
            e = self.target_epsilon
            need(isinstance(e, (int, float)) and not isinstance(e, bool) and math.isfinite(e) and e > 0,
                 f"target_epsilon must be a finite number > 0, got {e!r}")
            need(not self.no_dp, "target_epsilon is a privacy budget: it cannot be used with --no-dp")
            need(self.noise_multiplier is None,
                 "target_epsilon chooses the noise multiplier: give --target-epsilon or --noise-multiplier, not both")
            need(self.mechanism in ("l2-laplace", "gaussian"),
                 f"target_epsilon applies to the l2-laplace and gaussian mechanisms, not {self.mechanism!r}")
            need(0 < self.delta < 1, f"target_epsilon is met at delta, which must be in (0, 1), got {self.delta!r}")
        from .attacks.holders import HOLDER_ATTACKS
        from .protocol.aggregation import RULES

        need(self.attack in HOLDER_ATTACKS,
             f"unknown attack {self.attack!r}; known: {', '.join(sorted(HOLDER_ATTACKS))}")
        need(self.aggregator in RULES,
             f"unknown aggregator {self.aggregator!r}; known: {', '.join(sorted(RULES))}")
        need(isinstance(self.attack_options, dict), "attack_options must be a table of options")
        need(isinstance(self.aggregator_options, dict), "aggregator_options must be a table of options")
        need(self.backend in ("native", "ethereum"), f"unknown backend {self.backend!r}; known: native, ethereum")
        need(self.rpc_url is None or self.backend == "ethereum",
             f"rpc_url ({self.rpc_url}) applies to backend ethereum only, not {self.backend!r}; "
             "add --backend ethereum or drop --rpc-url")
        need(isinstance(self.difficulty, int) and 0 <= self.difficulty <= 40,
             f"difficulty must be an integer number of bits in 0..40, got {self.difficulty!r}")
        need(isinstance(self.eval_every, int) and self.eval_every >= 1, "eval_every must be >= 1")
        need(self.target_error is None or 0 <= self.target_error <= 1, "target_error must be in [0, 1]")
        need(isinstance(self.min_inclusion, (int, float)) and 0 <= self.min_inclusion <= 1,
             f"min_inclusion must be in [0, 1], got {self.min_inclusion!r}")
        need(isinstance(self.verify_last, int) and self.verify_last >= 1, "verify_last must be >= 1")
        need(not self.keep_attacker_chain or self.byzantine_miners > 0,
             "keep_attacker_chain needs Byzantine miners (--byzantine-miners N): without them there is no "
             "attacker's chain to keep")

    # -- resolved views ------------------------------------------------------------
    def resolved(self) -> "TrainConfig":
        """The config with per-dataset defaults filled in."""
        d = DATASET_DEFAULTS[self.dataset]
        holders = self.holders or d["holders"]
        return replace(
            self,
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
        known = {f.name: f for f in fields(cls)}
        clean = {}
        for key, value in data.items():
            name = key.replace("-", "_")
            if name in _RENAMED:
                raise ConfigError(f"option {key!r} is now called {_RENAMED[name]!r}: {_RENAMED_WHY[name]}")
            if name not in known:
                raise ConfigError(f"unknown option {key!r}; known: {', '.join(sorted(known))}")
            clean[name] = value
        check_types(cls, clean)  # before any conversion, so a message quotes the value as given
        if isinstance(clean.get("hidden"), list):
            clean["hidden"] = tuple(clean["hidden"])
        return cls(**clean)


#: Keys that were renamed: the old name is refused with a message giving the new one.
_RENAMED = {"data_dir": "idx_dir"}
_RENAMED_WHY = {"data_dir": "the directory with IDX files (--idx-dir on the command line); "
                            "--data-dir is a node's own directory"}


def read_toml(path: str | Path, what: str = "config file") -> dict:
    """A TOML file as a dict; a missing or malformed file is a ConfigError that names it."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory, not a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None


def load_toml(path: str | Path) -> dict:
    data = read_toml(path)
    if "train" in data and isinstance(data["train"], dict):
        data = data["train"]
    return data


#: What ``--set KEY=VALUE`` accepts for a boolean key (any case).
_BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def parse_set(items: list[str], schema=None) -> dict:
    """``key=value`` overrides; values parsed as TOML scalars (numbers, booleans,
    strings, arrays), bare words as strings. For a boolean key of ``schema``
    (default TrainConfig; ``network.KEY`` is a key of the node's NetworkConfig)
    the unquoted words true/false, yes/no and 1/0 (any case) are booleans; a quoted
    string stays a string, which the config then refuses."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if _set_field_type(key, schema) is bool and raw.strip().lower() in _BOOL_WORDS:
            out[key] = _BOOL_WORDS[raw.strip().lower()]
            continue
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out[key] = value
    return out


def _set_field_type(key: str, schema):
    if key.startswith("network.") and schema is None:
        from .network.config import NetworkConfig

        return field_type(NetworkConfig, key.removeprefix("network.").replace("-", "_"))
    return field_type(schema or TrainConfig, key.replace("-", "_"))
