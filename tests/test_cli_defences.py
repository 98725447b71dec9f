"""The geometric median, MDA and the pre-aggregations run end to end through
``learningchain train`` on the synthetic task, and every block verifies."""

import json

import pytest

from learningchain.cli.main import main


@pytest.mark.parametrize("rule,extra", [
    ("geometric-median", []),
    ("mda", []),
    ("multi-krum", ["--set", 'aggregator_options={pre = "nnm"}']),
    ("median", ["--set", 'aggregator_options={pre = "bucketing", bucket = 2}']),
    ("krum", ["--set", 'aggregator_options={pre = "arc"}']),
], ids=["geometric-median", "mda", "nnm", "bucketing", "arc"])
def test_defences_train_and_verify_through_the_command_line(tmp_path, capsys, rule, extra):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--holders", "8", "--rounds", "2", "--byzantine", "2",
                 "--attack", "gaussian", "--aggregator", rule, *extra, "--out", str(out), "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["aggregator"] == rule and summary["rejected_blocks"] == 0
    assert main(["chain", "verify", str(out)]) == 0  # every block recomputed with the chain's own rule


def test_mda_too_large_for_its_blocks_is_refused_before_training(tmp_path, capsys):
    assert main(["train", "--dataset", "synthetic", "--holders", "30", "--rounds", "1", "--aggregator", "mda",
                 "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "candidate subsets, above max_subsets" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_ethereum_backend_refuses_a_pre_aggregation(tmp_path, capsys):
    assert main(["train", "--backend", "ethereum", "--set", 'aggregator_options={pre = "nnm"}',
                 "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "without a pre-aggregation" in capsys.readouterr().err


def test_fixed_point_twin_refuses_a_pre_aggregation():
    from learningchain.errors import ConfigError
    from learningchain.ethereum.fixedpoint import FixedRule

    from .helpers import small_params

    with pytest.raises(ConfigError, match="without a pre-aggregation"):
        FixedRule.from_params(small_params(aggregator_options={"pre": "arc"}))
