"""The in-process EVMs agree: pyrevm (revm) and py-evm (eth-tester) give the same run bit for bit."""

import json

import numpy as np
import pytest

from learningchain.config import TrainConfig
from learningchain.ethereum import gas as gasmod
from learningchain.ethereum.chain import Chain, EthereumError, Reverted
from learningchain.experiments.train import run_training_ethereum

pytest.importorskip("pyrevm")


def _run(tmp_path, evm):
    chain = Chain.embedded(evm=evm)
    chain.keep_receipts = True
    cfg = TrainConfig(out=str(tmp_path / evm), force=True, backend="ethereum", progress=False,
                      dataset="breast-cancer", rounds=3, epsilon=0.5, holders=5, miners=2, seed=3)
    s = run_training_ethereum(cfg, chain=chain)
    abi = json.loads((tmp_path / evm / "contract.abi.json").read_text())
    c = chain.w3.eth.contract(address=s["contract_address"], abi=abi)
    stored = c.functions.get_model().call()
    return s, chain, np.load(tmp_path / evm / "model.npy"), stored


@pytest.mark.slow
def test_a_seeded_run_is_the_same_on_pyrevm_and_py_evm(tmp_path):
    s_r, chain_r, model_r, stored_r = _run(tmp_path, "pyrevm")
    s_p, chain_p, model_p, stored_p = _run(tmp_path, "py-evm")
    assert chain_r.evm == "pyrevm" and chain_p.evm == "py-evm"
    assert "pyrevm" in s_r["chain"] and "py-evm" in s_p["chain"]
    assert model_r.tobytes() == model_p.tobytes()
    assert stored_r == stored_p and len(stored_r) == 31
    # every transaction of the run (deployment, funding, deposits, submissions, aggregations,
    # claims, finish, withdrawals) used the same gas, so every round did
    gas_r = [(int(r["gasUsed"]), int(r["status"])) for r in chain_r.receipts]
    gas_p = [(int(r["gasUsed"]), int(r["status"])) for r in chain_p.receipts]
    assert len(gas_r) > 40 and gas_r == gas_p
    assert s_r["gas"] == s_p["gas"] and s_r["gas_per_round"] == s_p["gas_per_round"]
    assert s_r["incentives"]["conserved"] and s_p["incentives"]["conserved"]


@pytest.mark.slow
def test_a_multi_chunk_round_costs_the_same_gas_on_both():
    # d = 64 in chunks of 2 words: four aggregation transactions a round, two rounds (fresh, then
    # reused storage): cold/warm access and EIP-2200 original values are what a reused EVM
    # journal would get wrong (it charged 100 gas for a slot read that costs 2,100)
    rows = [gasmod.measure(Chain.embedded(evm=evm), 64, 4, chunk_words=2) for evm in ("pyrevm", "py-evm")]
    assert rows[0].chunks == 4
    assert rows[0] == rows[1]


def test_the_pyrevm_node_checks_signatures_chain_id_nonce_and_funds():
    chain = Chain.embedded(evm="pyrevm")
    faucet = chain.faucet()
    to = "0x" + "22" * 20
    base = dict(to=to, value=5, gas=21_000, maxFeePerGas=10**10, maxPriorityFeePerGas=10**9,
                chainId=chain.chain_id)
    raw = faucet.key.sign_transaction(dict(base, nonce=0)).raw_transaction
    tx_hash = chain.w3.eth.send_raw_transaction(raw)
    assert chain.w3.eth.get_transaction_receipt(tx_hash)["from"] == faucet.address
    assert chain.balance(to) == 5
    with pytest.raises(Exception, match="nonce too low"):  # a replay of the same signed bytes
        chain.w3.eth.send_raw_transaction(raw)
    other = faucet.key.sign_transaction(dict(base, nonce=1, chainId=1)).raw_transaction
    with pytest.raises(Exception, match="chain id"):
        chain.w3.eth.send_raw_transaction(other)
    # a flipped bit in the signed payload recovers another sender, who has no funds
    good = bytearray(faucet.key.sign_transaction(dict(base, nonce=1)).raw_transaction)
    good[-40] ^= 1
    with pytest.raises(Exception, match="insufficient funds|nonce|signature|invalid"):
        chain.w3.eth.send_raw_transaction(bytes(good))
    assert chain.balance(to) == 5
    # the fee is gas used x (base fee + tip), the tip within the cap
    before = chain.balance(faucet.address)
    r = chain.transfer(faucet, to, 7)
    assert before - chain.balance(faucet.address) == 7 + 21_000 * int(r["effectiveGasPrice"])


def test_the_pyrevm_node_reports_revert_reasons_and_charges_reverted_transactions(embedded_pyrevm):
    chain = embedded_pyrevm
    from tests.ethereum.helpers import deploy

    owner = chain.faucet()
    dep = deploy(chain, owner, d=11, l=2)
    with pytest.raises(Reverted, match="wrong round"):
        dep.submit(owner, 5, 1 << 32, b"\0" * 64)
    nonce = chain.w3.eth.get_transaction_count(owner.address)
    data = dep.contract.encode_abi("submit", args=[5, 1 << 32, b"\0" * 64])
    with pytest.raises(Reverted, match="wrong round"):
        chain.send(owner, {"to": dep.address, "data": data}, gas=200_000)
    assert chain.w3.eth.get_transaction_count(owner.address) == nonce + 1  # mined, failed, paid


def test_an_unknown_evm_is_refused(monkeypatch):
    from learningchain.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown in-process EVM"):
        Chain.embedded(evm="geth")
    monkeypatch.setenv("LEARNINGCHAIN_EVM", "py-evm")
    assert Chain.embedded().evm == "py-evm"
    assert isinstance(EthereumError("x"), Exception)


@pytest.fixture
def embedded_pyrevm():
    chain = Chain.embedded(evm="pyrevm")
    chain.fixed_gas = 12_000_000
    return chain
