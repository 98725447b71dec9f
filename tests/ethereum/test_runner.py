"""``learningchain train --backend ethereum`` end to end, against the native chain."""

import csv
import json

import numpy as np
import pytest

from learningchain.config import TrainConfig
from learningchain.ethereum.chain import Chain
from learningchain.ethereum.runner import DEFAULT_REWARD_WEI
from learningchain.experiments.train import run_training_ethereum
from learningchain.experiments.train import run_training


def eth_run(tmp_path, chain=None, **kw):
    kw.setdefault("progress", False)
    cfg = TrainConfig(out=str(tmp_path), force=True, backend="ethereum", **kw)
    return run_training_ethereum(cfg, chain=chain)


def test_a_short_run_writes_the_run_directory_and_pays_each_aggregation(tmp_path):
    chain = Chain.embedded()
    s = eth_run(tmp_path, chain=chain, dataset="breast-cancer", rounds=3, epsilon=0.5, holders=5, miners=2)
    for name in ("summary.json", "metrics.csv", "curve.png", "model.npy", "model.json", "contract.abi.json"):
        assert (tmp_path / name).exists(), name
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("test_error", "baseline_test_error", "rounds", "height", "rejected_blocks", "epsilon_per_round",
                "epsilon_total", "wall_seconds", "contract_address", "chain_id", "gas_per_round"):
        assert key in summary, key
    assert s["rounds"] == s["height"] == 3 and s["rejected_blocks"] == 0
    assert s["chain_id"] == chain.chain_id and s["gas_per_round"] > 0
    assert s["epsilon_total"] == pytest.approx(1.5)
    inc = s["incentives"]
    assert inc["conserved"] and inc["rewards_paid_wei"] == 3 * DEFAULT_REWARD_WEI
    assert sum(inc["aggregations_by_node"].values()) == 3
    assert inc["refunds_total_wei"] == inc["deposits_total_wei"] - 3 * DEFAULT_REWARD_WEI
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["round"]) for r in rows] == [1, 2, 3]
    # the model written is the contract's, read back with the ABI the run directory holds
    abi = json.loads((tmp_path / "contract.abi.json").read_text())
    c = chain.w3.eth.contract(address=s["contract_address"], abi=abi)
    stored = np.array(c.functions.get_model().call(), dtype=object) / 2 ** c.functions.MODEL_BITS().call()
    assert np.array_equal(np.load(tmp_path / "model.npy"), stored.astype(np.float64))
    assert c.functions.current_round().call() == 3


def test_byzantine_holders_reach_the_contract_and_are_counted(tmp_path):
    s = eth_run(tmp_path, dataset="breast-cancer", rounds=3, no_dp=True, holders=6, byzantine=2, miners=1)
    assert len(s["byzantine_holders"]) == 2
    # N(0, 200^2 I) vectors point anywhere: the l-nearest rule leaves them out
    assert s["selected_byzantine_total"] == 0
    assert s["height"] == 3


def test_the_run_refuses_what_the_contract_cannot_do(tmp_path):
    from learningchain.errors import ConfigError

    with pytest.raises(ConfigError, match="l-nearest only"):
        eth_run(tmp_path, dataset="breast-cancer", rounds=2, aggregator="mean")
    with pytest.raises(ConfigError, match="Byzantine computing nodes"):
        eth_run(tmp_path, dataset="breast-cancer", rounds=2, byzantine_miners=1, miners=3)


@pytest.mark.slow
def test_same_test_error_as_the_native_chain_on_the_embedded_evm(tmp_path):
    common = dict(dataset="breast-cancer", no_dp=True, rounds=60, progress=False, force=True)
    native = run_training(TrainConfig(out=str(tmp_path / "native"), **common))
    eth = run_training_ethereum(TrainConfig(out=str(tmp_path / "eth"), backend="ethereum", **common))
    assert eth["test_error"] == native["test_error"]
    assert eth["height"] == native["height"] == 60
    # the fixed-point chain follows the float chain closely, not just in its error
    w_native = np.load(tmp_path / "native" / "model.npy")
    w_eth = np.load(tmp_path / "eth" / "model.npy")
    assert np.max(np.abs(w_native - w_eth)) < 1e-6 * (1 + np.max(np.abs(w_native)))


@pytest.mark.slow
def test_same_test_error_as_the_native_chain_against_anvil(tmp_path, anvil_url):
    from learningchain.cli.main import main

    common = ["train", "--dataset", "breast-cancer", "--no-dp", "--rounds", "60", "--quiet", "--force"]
    assert main(common + ["--out", str(tmp_path / "native")]) == 0
    assert main(common + ["--backend", "ethereum", "--rpc-url", anvil_url, "--out", str(tmp_path / "eth")]) == 0
    native = json.loads((tmp_path / "native" / "summary.json").read_text())
    eth = json.loads((tmp_path / "eth" / "summary.json").read_text())
    assert eth["test_error"] == native["test_error"]
    assert eth["chain"] == anvil_url and eth["chain_id"] == 31337
    assert eth["incentives"]["conserved"]


def test_after_a_refused_aggregation_the_round_is_aggregated_again(tmp_path, monkeypatch):
    """One computing node claims a wrong selection: the contract refuses it, the round stays
    open with its messages, and the next step aggregates those messages (no resubmission)."""
    from learningchain.ethereum.fixedpoint import FixedRule

    real = FixedRule.select
    calls = []

    def select_wrong_once(self, q, keys):
        right = real(self, q, keys)
        calls.append(len(keys))
        if len(calls) == 1:
            return tuple(sorted(set(range(len(keys))) - set(right)))[:len(right)]
        return right

    monkeypatch.setattr(FixedRule, "select", select_wrong_once)
    s = eth_run(tmp_path, dataset="breast-cancer", rounds=3, no_dp=True, holders=5, miners=2)
    assert s["rejected_blocks"] == 1 and s["height"] == 2
    # three selections (the refused one, then one a round) and the runner's check of each
    # accepted round's model: the retry saw the same five messages, not ten
    assert calls == [5] * 5
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["height"]) for r in rows] == [0, 1, 2]
    assert s["incentives"]["conserved"] and s["incentives"]["rewards_paid_wei"] == 2 * DEFAULT_REWARD_WEI


def test_contract_parameters_refuse_rounds_beyond_the_protocols_exact_bound():
    from learningchain.errors import ConfigError
    from learningchain.ethereum.contract import ContractParams

    from ..helpers import small_params

    ok = ContractParams.from_params(small_params(dim=11, holders=10), messages=10, rounds=3, reward=0, quorum=10,
                                    window=16)
    assert ok.constructor_args()[-3:] == [10, 16, 0]  # quorum, window, bond
    with pytest.raises(ConfigError, match="exceeds the protocol's max_messages"):
        ContractParams.from_params(small_params(dim=11, holders=10, max_messages=8), messages=10, rounds=3, reward=0)
    with pytest.raises(ConfigError, match="quorum must be in"):
        ContractParams.from_params(small_params(dim=11, holders=10), messages=10, rounds=3, reward=0, quorum=11)


def test_the_privacy_report_is_the_native_ones(tmp_path):
    """The accountant sees the same holders on either backend (its per-holder figures need their sizes)."""
    common = dict(dataset="breast-cancer", rounds=2, holders=5, miners=1, mechanism="gaussian",
                  noise_multiplier=1.5, progress=False, force=True)
    native = run_training(TrainConfig(out=str(tmp_path / "native"), **common))
    eth = run_training_ethereum(TrainConfig(out=str(tmp_path / "eth"), backend="ethereum", **common))
    assert eth["privacy"] == native["privacy"]
    assert eth["privacy"]["composition"] == "rdp" and eth["epsilon_per_round"] is not None


def test_an_interrupted_run_closes_the_contract_and_keeps_its_rounds(tmp_path):
    from learningchain.experiments.rundir import RunInterrupted

    def stop(row):
        if row["round"] == 2:
            raise KeyboardInterrupt

    chain = Chain.embedded()
    cfg = TrainConfig(out=str(tmp_path / "eth"), backend="ethereum", dataset="breast-cancer", rounds=5,
                      epsilon=0.5, holders=4, miners=2, progress=False)
    with pytest.raises(RunInterrupted) as info:
        run_training_ethereum(cfg, chain=chain, on_round=stop)
    s = info.value.summary
    assert s["interrupted"] and s["rounds"] == 2 and s["baseline_test_error"] is None
    assert s["incentives"]["conserved"]
    written = json.loads((tmp_path / "eth" / "summary.json").read_text())
    assert written["interrupted"] is True and written["rounds"] == 2
    abi = json.loads((tmp_path / "eth" / "contract.abi.json").read_text())
    c = chain.w3.eth.contract(address=s["contract_address"], abi=abi)
    assert c.functions.current_round().call() == 2
    assert c.functions.status().call() == 2 and c.functions.withdrawals().call() == 4  # closed, refunded
