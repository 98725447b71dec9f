"""The layers of DESIGN.md section 2, enforced: the import-linter contract in
pyproject.toml passes, and every part of the package sits in one of its layers."""

import pkgutil
import tomllib
from pathlib import Path

from importlinter.cli import lint_imports

import learningchain

ROOT = Path(__file__).resolve().parent.parent


def _contract() -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["id"] == "layers"]
    return contract


def test_no_module_imports_a_higher_layer():
    # 0: every contract kept; the report names the first upward import otherwise
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0


def test_every_part_of_the_package_has_a_layer():
    layered = {name.strip() for layer in _contract()["layers"] for name in layer.replace(":", "|").split("|")}
    parts = {f"learningchain.{m.name}" for m in pkgutil.iter_modules(learningchain.__path__)} - {"learningchain.__main__"}
    assert parts - layered == set()


def test_every_ignored_import_says_why():
    text = (ROOT / "pyproject.toml").read_text()
    block = text[text.index("ignore_imports = ["):]
    block = block[: block.index("]\n")]
    lines = [line.strip() for line in block.splitlines()[1:]]
    for i, line in enumerate(lines):
        if line.startswith('"'):
            assert lines[i - 1].startswith("#"), f"ignored import {line} has no comment above it"
