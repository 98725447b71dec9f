"""The config package's surface and its place in the layers."""

import ast
from pathlib import Path

import learningchain.config as config
import learningchain.network.config as network_config

ALLOWED = {"errors", "types", "data", "models", "privacy", "attacks", "protocol"}


def test_the_public_names_other_code_imports_are_there():
    for name in ("TrainConfig", "DATASET_DEFAULTS", "load_toml", "parse_set", "check_types", "read_toml",
                 "field_type", "NetworkConfig", "NetConfigFile", "load_net_config", "CONSENSUS_KEYS",
                 "parse_address"):
        assert name in config.__all__ and hasattr(config, name), name
    for name in network_config.__all__:  # the network's names are the package's, not copies
        assert getattr(network_config, name) is getattr(config, name), name


def test_the_package_imports_only_errors_types_and_the_registries_below_it():
    for path in Path(config.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                top = (node.module or "").split(".")[0]
                assert top in ALLOWED, f"{path.name} imports learningchain.{node.module}"
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert not node.module.startswith("learningchain"), f"{path.name} imports {node.module}"
