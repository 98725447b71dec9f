"""Configuration: every key of every command, typed, defaulted and documented
once, and checked when it is read, before any data loads.

Sections: the learning problem and one run (:class:`TrainConfig`, the
``[train]`` table), the chain's consensus keys and a node's policy
(:class:`NetworkConfig`, the ``[network]`` table), the grid and figure tables
(:mod:`.tables`). A key is a dataclass field declared with :func:`~.schema.key`;
the command-line options are generated from those declarations.
"""

from .files import NetConfigFile, load_net_config, load_toml, parse_set
from .names import KNOWN, check_name, known_names
from .network import CONSENSUS_KEYS, NetworkConfig, parse_address
from .schema import SECTIONS, check_types, field_type, key, read_toml
from .train import DATASET_DEFAULTS, TrainConfig, check_honoured

__all__ = ["TrainConfig", "NetworkConfig", "NetConfigFile", "DATASET_DEFAULTS", "CONSENSUS_KEYS", "KNOWN",
           "SECTIONS", "load_toml", "load_net_config", "parse_set", "check_types", "check_name", "check_honoured",
           "field_type", "key", "known_names", "parse_address", "read_toml"]
