"""The names a name-valued key takes, read from the registries that implement
them, so that a name is checked when the config is read, before any data loads."""

from __future__ import annotations

import inspect

from ..attacks.holders import HOLDER_ATTACKS, make_holder_attack
from ..attacks.miners import MINER_ATTACKS
from ..data import DATASETS
from ..data.partition import PARTITIONS
from ..errors import ConfigError
from ..models import MODEL_KINDS
from ..privacy.accounting import SAMPLING_SCHEMES
from ..protocol.aggregation import RULES, get_rule
from ..protocol.params import CLIP_MODES, CONSENSUS, MECHANISMS, PRIVACY_SCHEDULES
from ..protocol.rewards import check_rewards

__all__ = ["KNOWN", "check_name", "check_rewards", "known_names", "BACKENDS", "UNSEEN_POLICIES", "IDX_DATASETS",
           "IMAGE_DATASETS", "HIDDEN_MODELS", "rule_options", "make_holder_attack"]

BACKENDS = ("native", "ethereum")
#: What a node does with a gossiped block holding messages never broadcast to it.
UNSEEN_POLICIES = ("accept", "wait")

#: The data sets read from a directory of IDX files (their loader takes ``data_dir``).
IDX_DATASETS = tuple(name for name, load in DATASETS.items() if "data_dir" in inspect.signature(load).parameters)
#: The data sets whose examples are square grey-scale images, flattened row by row
#: (what an attack that stamps a trigger, ``needs_images``, works on).
IMAGE_DATASETS = tuple(name for name in DATASETS if name in ("mnist", "fashion-mnist"))
#: The models whose hidden widths the config sets (the run passes ``hidden`` to the mlp only).
HIDDEN_MODELS = ("mlp",)


def rule_options(aggregator: str) -> tuple:
    """The options aggregation rule ``aggregator`` takes."""
    return tuple(sorted(get_rule(aggregator).options))


#: Every name-valued key and the names it takes (in the registry's order).
KNOWN: dict[str, tuple] = {
    "dataset": tuple(DATASETS) + ("user",),  # user: a user's own data (data = PATH, or arrays from Python)
    "partition": tuple(PARTITIONS),
    "model": tuple(MODEL_KINDS),
    "attack": tuple(sorted(HOLDER_ATTACKS)),
    "miner_attack": tuple(MINER_ATTACKS),
    "aggregator": tuple(sorted(RULES)),
    "mechanism": tuple(m for m in MECHANISMS if m != "none"),
    "schedule": tuple(PRIVACY_SCHEDULES),
    "clip_mode": ("auto",) + tuple(CLIP_MODES),
    "sampling": tuple(SAMPLING_SCHEMES),
    "consensus": tuple(CONSENSUS),
    "backend": BACKENDS,
    "unseen": UNSEEN_POLICIES,
}


def known_names(key: str) -> str:
    """The names of ``key`` for a message or a help line: ``a, b or c``."""
    names = KNOWN[key]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


#: Keys whose names are things a registry implements (the rest are a few fixed words).
_REGISTRIES = ("dataset", "partition", "model", "attack", "miner_attack", "aggregator", "backend")
#: Keys whose names read better explained than listed.
_EXPLAINED = {"sampling": "fixed (m examples without replacement) or poisson (each example with probability m / N_k)"}


def check_name(key: str, value, where: str = "") -> None:
    """Refuse a name ``key`` does not know, listing the ones it does."""
    if value in KNOWN[key]:
        return
    if key in _EXPLAINED:
        raise ConfigError(f"{where}{key} must be {_EXPLAINED[key]}, got {value!r}")
    if key in _REGISTRIES:
        raise ConfigError(f"{where}unknown {key.replace('_', ' ')} {value!r}; known: {', '.join(KNOWN[key])}")
    raise ConfigError(f"{where}{key} must be {known_names(key)}, got {value!r}")
