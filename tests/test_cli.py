import json

import pytest

from learningchain.cli.main import main


def test_train_then_verify_through_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "breast-cancer", "--rounds", "5", "--epsilon", "0.3", "--out", str(out),
                 "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "baseline test error" in table and "test error" in table
    assert main(["chain", "verify", str(out)]) == 0
    assert "OK: 5 blocks verified" in capsys.readouterr().out
    assert main(["chain", "head", str(out / "chain.sqlite")]) == 0
    assert capsys.readouterr().out.startswith("5 0x")


def test_toml_config_and_overrides(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('[train]\ndataset = "breast-cancer"\nrounds = 3\nno_dp = true\nholders = 5\n')
    out = tmp_path / "o"
    assert main(["train", "--config", str(cfg), "--set", "l=2", "--out", str(out), "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["holders"] == 5 and summary["rounds"] == 3 and summary["l"] == 2


def test_unknown_config_key_is_an_error_not_a_crash(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('dataset = "synthetic"\nlearning_rate = 3\n')
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "unknown option 'learning_rate'" in capsys.readouterr().err


def test_missing_config_file_and_missing_chain_are_clear_errors(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "none.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["chain", "verify", str(tmp_path / "none.sqlite")]) == 2
    assert "no chain" in capsys.readouterr().err


def test_unknown_option_is_refused_by_argparse():
    with pytest.raises(SystemExit) as info:
        main(["train", "--warp-speed"])
    assert info.value.code == 2


@pytest.mark.parametrize("rule,attack", [("bulyan", "alie"), ("l-nearest-bounded", "norm-inflation"),
                                         ("centered-clipping", "sybil")])
def test_other_rules_and_attacks_through_the_command_line_make_verifiable_chains(tmp_path, capsys, rule, attack):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "breast-cancer", "--rounds", "3", "--epsilon", "0.5", "--byzantine", "2",
                 "--attack", attack, "--aggregator", rule, "--set", "attack_options={}", "--out", str(out),
                 "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["aggregator"] == rule and summary["attack"] == attack and summary["rejected_blocks"] == 0
    assert main(["chain", "verify", str(out)]) == 0  # every block recomputed with the chain's own rule


def test_gaussian_mechanism_with_a_noise_multiplier_from_the_command_line(tmp_path, capsys):
    assert main(["train", "--dataset", "breast-cancer", "--rounds", "2", "--mechanism", "gaussian",
                 "--noise-multiplier", "1.3", "--batch-size", "20", "--out", str(tmp_path / "g"), "--quiet",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["privacy"]["rdp"]["noise_multiplier"] == 1.3
    assert summary["epsilon_total"] > 0 and summary["delta_total"] == 1e-5


def test_unknown_attack_and_rule_names_list_the_known_ones(tmp_path, capsys):
    assert main(["train", "--attack", "teleport", "--byzantine", "1", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "norm-inflation" in capsys.readouterr().err
    assert main(["train", "--aggregator", "average", "--out", str(tmp_path / "y"), "--quiet"]) == 2
    assert "multi-krum" in capsys.readouterr().err


def _subcommand_paths(parser, prefix=()):
    """Every command path of the parser: (), ("train",), ("chain", "verify"), ..."""
    import argparse

    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subcommand_paths(sub, prefix + (name,))


def test_every_help_page_renders(capsys):
    from learningchain.cli.main import _load_extensions, build_parser

    _load_extensions()
    paths = list(_subcommand_paths(build_parser()))
    assert ("train",) in paths and ("chain", "verify") in paths and ("security-attacks",) in paths
    for path in paths:
        with pytest.raises(SystemExit) as exc:
            main(list(path) + ["--help"])
        assert exc.value.code == 0, path
        assert "usage: learningchain" in capsys.readouterr().out


def test_verify_last_needs_a_positive_count(tmp_path, capsys):
    assert main(["train", "--dataset", "breast-cancer", "--rounds", "3", "--out", str(tmp_path), "--quiet",
                 "--force"]) == 0
    capsys.readouterr()
    for bad in ("0", "-3"):
        assert main(["chain", "verify", str(tmp_path), "--last", bad]) == 2
        assert "--last must be at least 1" in capsys.readouterr().err
    assert main(["chain", "verify", str(tmp_path), "--last", "2"]) == 0


def test_a_refused_configuration_writes_no_run_directory(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["train", "--dataset", "breast-cancer", "--rounds", "2", "--out", str(out), "--quiet",
                 "--set", "aggregator_options={bogus = 1}"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert not out.exists()


def test_a_byzantine_miner_run_keeps_the_attackers_chain_for_the_final_check(tmp_path, capsys):
    out = tmp_path / "byz"
    assert main(["train", "--dataset", "synthetic", "--holders", "4", "--rounds", "4", "--difficulty", "0",
                 "--byzantine-miners", "1", "--byzantine-power", "0.9", "--miner-attack", "wrong-model",
                 "--keep-attacker-chain", "--out", str(out), "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["attacker_chain"] == "attacker-chain.sqlite" and not summary["heaviest_chain_accepted_by_honest"]
    bad = summary["final_check"]["heaviest_head_first_bad_height"]
    assert main(["chain", "verify", str(out / "attacker-chain.sqlite"), "--last", "6"]) == 1
    assert f"INVALID at height {bad}: bad-model" in capsys.readouterr().out
    assert main(["chain", "verify", str(out), "--last", "6"]) == 0  # the honest chain beside it holds
    # --force replaces the old attacker's chain rather than mixing two geneses in one file
    assert main(["train", "--dataset", "synthetic", "--holders", "4", "--rounds", "1", "--difficulty", "0",
                 "--byzantine-miners", "1", "--byzantine-power", "0.9", "--keep-attacker-chain", "--seed", "1",
                 "--out", str(out), "--force", "--quiet"]) == 0


def test_keep_attacker_chain_without_byzantine_miners_is_refused(tmp_path, capsys):
    out = tmp_path / "none"
    assert main(["train", "--dataset", "synthetic", "--holders", "4", "--rounds", "2", "--keep-attacker-chain",
                 "--out", str(out), "--quiet"]) == 2
    assert "keep_attacker_chain needs Byzantine miners" in capsys.readouterr().err and not out.exists()
