"""The committed contract artefact is what the committed source compiles to."""

import json

import pytest

from learningchain.errors import ConfigError
from learningchain.ethereum import contract as contract_mod
from learningchain.ethereum.contract import ARTIFACT_PATH, SOURCE_PATH, compile_source, load_artifact


def test_the_committed_artifact_matches_a_fresh_compilation_of_the_source():
    fresh = compile_source()
    committed = json.loads(ARTIFACT_PATH.read_text())
    assert committed["source_keccak256"] == fresh["source_keccak256"]
    assert committed["abi"] == fresh["abi"]
    assert committed["bytecode"] == fresh["bytecode"]
    assert committed["bytecode_runtime"] == fresh["bytecode_runtime"]
    assert committed["compiler"] == "vyper-0.4.3"


def test_the_runtime_code_fits_the_contract_size_limit():
    assert len(bytes.fromhex(load_artifact()["bytecode_runtime"][2:])) <= 24576  # EIP-170


def test_an_artifact_built_from_another_source_is_refused(tmp_path, monkeypatch):
    edited = tmp_path / "learningchain.vy"
    edited.write_text(SOURCE_PATH.read_text() + "\n# edited\n")
    monkeypatch.setattr(contract_mod, "SOURCE_PATH", edited)
    load_artifact.cache_clear()
    try:
        with pytest.raises(ConfigError, match="not built from the current"):
            load_artifact()
    finally:
        load_artifact.cache_clear()


def test_the_abi_exposes_what_a_plain_client_needs():
    names = {e["name"] for e in load_artifact()["abi"] if e.get("type") in ("function", "event")}
    assert {"current_round", "get_model", "model_at", "MODEL_BITS", "dim", "submit", "aggregate",
            "Submitted", "Aggregated", "RoundOpened", "deposit", "claim_reward", "finish", "withdraw"} <= names
