"""Reading configuration: TOML files, ``--set KEY=VALUE`` overrides, and the
two-table file of a network (``[train]``, ``[network]``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

from ..errors import ConfigError
from .network import NetworkConfig, parse_address
from .schema import field_type, read_toml, toml_scalar
from .train import TrainConfig, check_honoured

__all__ = ["load_toml", "parse_set", "NetConfigFile", "load_net_config"]


def load_toml(path: str | Path) -> dict:
    """The keys of a train config file: its ``[train]`` table, or its top level.

    A file with a ``[train]`` table may hold nothing else: a key beside it (a top-level
    ``epsilon``, a misspelt ``[trian]``, a network's ``[network]``) is refused, never
    dropped, since a dropped key silently leaves its default (a privacy budget, say)."""
    data = read_toml(path)
    if "train" in data and isinstance(data["train"], dict):
        others = sorted(set(data) - {"train"})
        if others:
            hint = (" ([network] belongs to a network config: `learningchain network up --config` or "
                    "`learningchain node --config` read it)" if "network" in others else "")
            raise ConfigError(f"config file {path}: {others} beside the [train] table would be ignored; put the "
                              f"keys in [train] or remove them{hint}")
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
        name, raw = item.split("=", 1)
        name = name.strip()
        if _set_field_type(name, schema) is bool and raw.strip().lower() in _BOOL_WORDS:
            out[name] = _BOOL_WORDS[raw.strip().lower()]
        else:
            out[name] = toml_scalar(raw)
    return out


def _set_field_type(name: str, schema):
    if name.startswith("network.") and schema is None:
        return field_type(NetworkConfig, name.removeprefix("network.").replace("-", "_"))
    return field_type(schema or TrainConfig, name.replace("-", "_"))


@dataclass(frozen=True)
class NetConfigFile:
    """A parsed network config: the chain ([train]) and the network ([network])."""

    train: TrainConfig = field(default_factory=TrainConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)

    def to_toml(self) -> str:
        """The file every node of this network reads: the [train] keys nodes honour, and [network]."""
        return (_toml_table("train", _train_items(self.train)) + "\n"
                + _toml_table("network", self.network.to_dict(minimal=True)))

    def check_node(self) -> None:
        """The rules a node process needs from the file alone, checked before any data loads."""
        net, train = self.network, self.train
        consensus = net.consensus or train.consensus
        if consensus == "poa" and not net.authorities:
            raise ConfigError("[network] consensus = \"poa\" needs authorities = [\"0x...\", ...] "
                              "(the addresses printed by `learningchain node --init`)")
        if net.members and train.fresh_identities:
            raise ConfigError("[network] members (enrolled holders) and fresh_identities exclude each other: an "
                              "enrolled holder sends every message under its one enrolled key")
        if net.budget is not None and not net.members:
            raise ConfigError("[network] budget needs enrolled holders: list them in [network] members "
                              "(`learningchain network up --permissioned` does it)")


_TRAIN_DEFAULTS = asdict(TrainConfig())
#: The [train] keys node processes honour; the file a node reads holds only these.
_NETWORK_KEYS = {f.name for f in fields(TrainConfig) if "network" in f.metadata["honoured_by"]}


def _train_items(cfg: TrainConfig) -> dict:
    out = {}
    for name, value in cfg.to_dict().items():
        if value is None or name not in _NETWORK_KEYS:
            continue
        default = _TRAIN_DEFAULTS.get(name)
        if name == "hidden":
            default = list(default)
        if value == default and name not in ("dataset", "seed"):
            continue
        out[name] = value
    return out


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise ConfigError(f"cannot write {v!r} to TOML")


def _toml_table(name: str, items: dict) -> str:
    lines = [f"[{name}]"]
    for k, v in items.items():
        lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def load_net_config(path: Optional[str | Path] = None, *, train_overrides: Optional[dict] = None,
                    network_overrides: Optional[dict] = None) -> NetConfigFile:
    """Read a network config (a file with [train] and [network] tables, either optional)
    and apply overrides from the command line. A [train] key that node processes
    would ignore is refused when set to another value than its default."""
    train: dict = {}
    network: dict = {}
    if path is not None:
        data = read_toml(path)
        if "network" in data or "train" in data:
            unknown = sorted(set(data) - {"train", "network"})
            if unknown:
                raise ConfigError(f"config file {path}: unknown table(s) {unknown}; known: train, network")
            train = dict(data.get("train", {}))
            network = dict(data.get("network", {}))
        else:
            train = load_toml(path)
    train.update(train_overrides or {})
    network.update(network_overrides or {})
    conf = NetConfigFile(TrainConfig.from_dict(train), NetworkConfig.from_dict(network))
    try:
        check_honoured(conf.train, "network")
    except ConfigError as exc:
        raise ConfigError(f"[train] {exc}") from None
    return conf


__all__ += ["parse_address"]
