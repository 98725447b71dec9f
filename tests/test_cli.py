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


TINY = ["train", "--dataset", "synthetic", "--holders", "4", "--rounds", "2", "--difficulty", "0", "--quiet"]


def _files(path):
    import hashlib

    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("late", [
    ["--byzantine-miners", "1", "--miner-attack", "teleport"],
    ["--backend", "ethereum", "--rpc-url", "http://127.0.0.1:9"],
    ["--backend", "ethereum", "--rpc-url", "not-a-url"],
], ids=["miner-attack", "closed-rpc-url", "invalid-rpc-url"])
def test_a_late_refusal_with_force_leaves_the_old_run_byte_identical(tmp_path, capsys, late):
    out = tmp_path / "run"
    assert main(TINY + ["--out", str(out)]) == 0
    before = _files(out)
    capsys.readouterr()
    assert main(TINY + ["--out", str(out), "--force", "--seed", "5"] + late) == 2
    err = capsys.readouterr().err
    assert err.startswith("learningchain: error:") and "Traceback" not in err
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    fresh = tmp_path / "fresh"
    assert main(TINY + ["--out", str(fresh)] + late) == 2
    assert not fresh.exists()


def test_ctrl_c_writes_the_rounds_done_and_exits_130(tmp_path, capsys, monkeypatch):
    from learningchain.network.simulation import InProcessNetwork

    step = InProcessNetwork.step
    calls = []

    def interrupted_step(self):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(InProcessNetwork, "step", interrupted_step)
    out = tmp_path / "run"
    assert main(TINY + ["--rounds", "5", "--out", str(out)]) == 130
    captured = capsys.readouterr()
    assert "(interrupted)" in captured.out and "interrupted after 1 of 5 rounds" in captured.err
    assert json.loads((out / "summary.json").read_text())["interrupted"] is True
    monkeypatch.setattr(InProcessNetwork, "step", step)
    assert main(TINY + ["--out", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["security-sweep", "--powers", "0.5,abc", "--quiet"],
    ["security-sweep", "--powers", "0.5,1.5", "--quiet"],
    ["security-sweep", "--s", "0", "--quiet"],
    ["security-attacks", "--rounds", "0", "--quiet"],
    ["network", "up", "--nodes", "2", "--timeout", "0", "--dataset", "synthetic", "--holders", "4", "--rounds", "2",
     "--quiet"],
    ["network", "up", "--nodes", "0", "--dataset", "synthetic", "--holders", "4", "--rounds", "2", "--quiet"],
    TINY + ["--byzantine-miners", "1", "--miner-attack", "teleport"],
    ["network", "up", "--nodes", "2", "--dataset", "synthetic", "--holders", "4", "--rounds", "2",
     "--set", "network.budget=0.3", "--quiet"],
    ["network", "up", "--nodes", "2", "--dataset", "synthetic", "--holders", "4", "--rounds", "2", "--permissioned",
     "--set", "network.budget=0", "--quiet"],
], ids=["sweep-powers", "sweep-power-range", "sweep-s", "attacks-rounds", "network-timeout", "network-nodes",
        "train-miner-attack", "network-budget-open", "network-budget-zero"])
def test_a_refused_configuration_creates_nothing(tmp_path, capsys, argv):
    out = tmp_path / "out"
    assert main(argv + ["--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("learningchain: error:")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["config-dir", "config-binary", "out-file", "out-proc", "sweep-powers", "sweep-s",
                                  "sweep-trials", "grid-plot-only"])
def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path, capsys, case):
    (tmp_path / "a-file").write_text("not a directory\n")
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00rounds = 2\n")
    (tmp_path / "empty").mkdir()
    out = ["--out", str(tmp_path / "o")]
    argv, says = {
        "config-dir": (TINY + ["--config", str(tmp_path)] + out, "is a directory"),
        "config-binary": (TINY + ["--config", str(tmp_path / "binary.toml")] + out, "not valid TOML"),
        "out-file": (TINY + ["--out", str(tmp_path / "a-file")], "is a file"),
        "out-proc": (TINY + ["--out", "/proc/learningchain-nope"], "/proc/learningchain-nope"),
        "sweep-powers": (["security-sweep", "--powers", "0.5,abc", "--quiet"] + out, "--powers"),
        "sweep-s": (["security-sweep", "--s", "x", "--quiet"] + out, "--s"),
        "sweep-trials": (["security-sweep", "--trials", "0", "--quiet"] + out, "--trials must be at least 1"),
        "grid-plot-only": (["grid", "--plot-only", "--out", str(tmp_path / "empty")], "no results.csv"),
    }[case]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("learningchain: error:") and says in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert "Traceback" not in captured.out + captured.err
    assert not (tmp_path / "o").exists() and (tmp_path / "a-file").read_text() == "not a directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "binary.toml", "empty"]


def _train_config(argv):
    from learningchain.cli.main import _load_extensions, build_parser, train_config_from_args

    _load_extensions()
    return train_config_from_args(build_parser().parse_args(["train"] + argv))


@pytest.mark.parametrize("text", ['no_dp = "false"', 'no_dp = "true"', "no_dp = 0", 'epsilon = "0.3"',
                                  'holders = "4"', "rounds = 2.0", "byzantine = true"])
def test_a_config_file_value_of_the_wrong_type_is_refused(tmp_path, capsys, text):
    cfg = tmp_path / "f.toml"
    cfg.write_text(f'dataset = "breast-cancer"\n{text}\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    key = text.split(" =")[0]
    assert err.startswith(f"learningchain: error: {key} must be ") and "Traceback" not in err
    assert not out.exists()


def test_set_no_dp_false_keeps_privacy_on_and_a_quoted_false_is_refused(tmp_path, capsys):
    for spelling in ("False", "false", "no", "0"):
        assert _train_config(["--set", f"no_dp={spelling}"]).no_dp is False
    assert _train_config(["--set", "no_dp=True"]).no_dp is True
    out = tmp_path / "run"
    assert main(["train", "--set", 'no_dp="false"', "--out", str(out), "--quiet"]) == 2
    assert "no_dp must be true or false, got 'false' (a string)" in capsys.readouterr().err
    assert main(["train", "--set", "epsilon=abc", "--out", str(out), "--quiet"]) == 2
    assert "epsilon must be a number, got 'abc' (a string)" in capsys.readouterr().err
    assert not out.exists()


def _all_parsers():
    import argparse

    from learningchain.cli.main import _load_extensions, build_parser

    _load_extensions()
    todo = [((), build_parser())]
    while todo:
        path, parser = todo.pop()
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend((path + (name,), sub) for name, sub in action.choices.items())


def test_an_option_prefix_is_never_taken_for_another_option(capsys):
    assert all(not parser.allow_abbrev for _, parser in _all_parsers())
    with pytest.raises(SystemExit) as info:
        main(["train", "--hold", "3"])
    assert info.value.code == 2
    assert "unrecognized arguments: --hold 3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["chain", "verify", "x", "--la", "2"])
    assert "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["train", "--attack", "sign-flip"], "attack 'sign-flip' needs byzantine >= 1"),
    (["train", "--set", "attack=alie", "--byzantine", "0"], "attack 'alie' needs byzantine >= 1"),
    (["train", "--miner-attack", "withhold"], "miner_attack 'withhold' needs byzantine_miners >= 1"),
    (["train", "--rpc-url", "http://127.0.0.1:8545"], "applies to backend ethereum only"),
    (["train", "--holders", "4", "--byzantine", "4"], "byzantine (4) must be below holders (4)"),
    (["train", "--set", "consensus=poa"], "consensus = 'poa' is not used by this run"),
    (["train", "--partition", "striped"], "unknown partition 'striped'; known: iid"),
    (["train", "--schedule", "fast"], "schedule must be constant, uniform or decay"),
    (["train", "--set", "rewards={mode=\"gift\"}"], "rewards mode must be one of"),
    (["train", "--backend", "ethereum", "--aggregator", "mean"], "the Ethereum backend implements l-nearest only"),
    (["train", "--holders", "4", "--byzantine", "9"], "byzantine (9) must be below holders (4)"),
    (["reproduce", "fig7", "--quick", "--workers", "0"], "--workers must be at least 1, got 0"),
    (["reproduce", "fig7", "--quick", "--workers", "-2"], "--workers must be at least 1, got -2"),
    (["grid", "GRID", "--workers", "5"], "--workers must be 1 to 2 (the cap on grid processes), got 5"),
    (["grid", "GRID", "--workers", "0"], "--workers must be 1 to 2"),
])
def test_nonsense_options_are_refused_and_nothing_is_written(tmp_path, capsys, monkeypatch, argv, message):
    from pathlib import Path

    grid = Path(__file__).resolve().parents[1] / "src/learningchain/experiments/grids/smoke.toml"
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    argv = [str(grid) if a == "GRID" else a for a in argv] + ["--out", str(out), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("learningchain: error: ") and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_the_default_attack_without_byzantine_holders_is_fine():
    cfg = _train_config(["--byzantine", "0"])
    assert cfg.attack == "gaussian" and cfg.byzantine == 0
    assert _train_config(["--attack", "alie", "--byzantine", "2"]).attack == "alie"


def test_centered_clipping_runs_without_privacy_and_bounded_names_its_option(tmp_path, capsys):
    out = tmp_path / "cc"
    assert main(["train", "--dataset", "breast-cancer", "--rounds", "2", "--aggregator", "centered-clipping",
                 "--no-dp", "--out", str(out), "--quiet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["aggregator"] == "centered-clipping"
    assert main(["chain", "verify", str(out)]) == 0
    capsys.readouterr()
    never = tmp_path / "b"
    assert main(["train", "--dataset", "breast-cancer", "--rounds", "2", "--aggregator", "l-nearest-bounded",
                 "--no-dp", "--out", str(never), "--quiet"]) == 2
    assert "--set aggregator_options={bound=...}" in capsys.readouterr().err
    assert not never.exists()


def test_every_option_of_every_subcommand_has_a_help_line_and_key_defaults_are_shown():
    import argparse

    parsers = dict(_all_parsers())
    missing = []
    for path, parser in parsers.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                missing += [path + (c.dest,) for c in action._choices_actions if not (c.help or "").strip()]
            elif not (action.help or "").strip():
                missing.append(path + tuple(action.option_strings or [action.dest]))
    assert missing == []
    train = {o: a.help for a in parsers[("train",)]._actions for o in a.option_strings}
    for option in ("--rounds", "--lr", "--eval-every", "--seed", "--holders", "--epsilon", "--difficulty"):
        assert "default" in train[option], option
    assert "200 synthetic, 300 others" in train["--rounds"]
    node = {o: a.help for a in parsers[("node",)]._actions for o in a.option_strings}
    assert all("default" in node[o] for o in ("--rounds", "--lr", "--seed", "--epsilon"))


def test_idx_dir_is_trains_name_for_idx_files_and_the_old_key_says_so(tmp_path, capsys):
    assert _train_config(["--dataset", "mnist", "--idx-dir", str(tmp_path)]).idx_dir == str(tmp_path)
    assert _train_config(["--dataset", "mnist", "--set", f"idx_dir={tmp_path}"]).idx_dir == str(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["train", "--data-dir", str(tmp_path)])
    assert info.value.code == 2 and "unrecognized arguments: --data-dir" in capsys.readouterr().err
    cfg = tmp_path / "old.toml"
    cfg.write_text(f'dataset = "mnist"\ndata_dir = "{tmp_path}"\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "option 'data_dir' is now called 'idx_dir'" in err and "--idx-dir" in err
    assert not out.exists()
    from learningchain.cli.main import _load_extensions, build_parser

    _load_extensions()
    args = build_parser().parse_args(["node", "--data-dir", str(tmp_path / "node"), "--idx-dir", str(tmp_path)])
    assert args.data_dir_node == str(tmp_path / "node") and args.idx_dir == str(tmp_path)


def test_chain_privacy_prints_every_members_spend_and_agrees_with_a_recount(tmp_path, capsys):
    from fractions import Fraction

    import numpy as np

    from learningchain.node import Node, SQLiteStore

    from .helpers import genesis_for, make_keys, message_for, mine_block, small_params

    keys = make_keys(4, seed=31)
    params = small_params(members=tuple("0x" + k.address.hex() for k in keys), max_messages=4, holders=4,
                          difficulty=0, mechanism="l2-laplace", epsilon=0.5, schedule="decay", budget=0.45)
    genesis = genesis_for(params)
    path = tmp_path / "chain.sqlite"
    node = Node(genesis, store=SQLiteStore(path))
    rng = np.random.default_rng(2)
    senders = [keys[:3], keys[:2], keys[:1]]  # member 3 never sends
    for who in senders:
        node.on_block(mine_block(node, [message_for(k, params, node.head, rng.normal(size=params.dim))
                                        for k in who]))
    node.store.close()
    assert main(["chain", "privacy", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # independent recount: round t = height + 1 of the block a message was computed at spends 0.5/(t(t+1))
    expect = {}
    for height, who in enumerate(senders):
        for k in who:
            n, eps = expect.get("0x" + k.address.hex(), (0, Fraction(0)))
            expect["0x" + k.address.hex()] = (n + 1, eps + Fraction(1, 2) / ((height + 1) * (height + 2)))
    expect["0x" + keys[3].address.hex()] = (0, Fraction(0))
    assert out["blocks"] == 3 and out["membership"] == "enrolled" and out["budget"] == 0.45
    got = {a: (r["messages"], Fraction(r["epsilon_exact"])) for a, r in out["identities"].items()}
    assert got == expect
    assert got["0x" + keys[0].address.hex()] == (3, Fraction(3, 8))  # 1/4 + 1/12 + 1/24
    left = out["identities"]["0x" + keys[0].address.hex()]["budget_left_exact"]
    assert Fraction(left) == Fraction(9, 20) - Fraction(3, 8)
    assert main(["chain", "privacy", str(path)]) == 0
    text = capsys.readouterr().out
    assert "budget 0.45 per member" in text and "decay schedule" in text
    row = next(line for line in text.splitlines() if line.startswith("0x" + keys[0].address.hex()))
    assert row.split()[1:] == ["3", "0.375", "0.075"]
def test_the_summary_reports_tight_composition_beside_basic(tmp_path, capsys):
    from learningchain.privacy.accounting import tight_epsilon

    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--holders", "4", "--rounds", "3", "--difficulty", "0",
                 "--epsilon", "0.7", "--delta", "1e-6", "--out", str(out), "--quiet"]) == 0
    table = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epsilon_total"] == pytest.approx(2.1) and summary["privacy"]["composition"] == "basic"
    assert summary["delta_tight"] == 1e-6
    assert summary["epsilon_total_tight"] == pytest.approx(tight_epsilon([0.7] * 3, 1e-6), rel=1e-12)
    assert summary["epsilon_total_tight"] < summary["epsilon_total"]
    line = next(l for l in table.splitlines() if "epsilon per round / total" in l)
    assert "(basic composition)" in line and f"tight {summary['epsilon_total_tight']:.4g} at delta 1e-06" in line


def test_target_epsilon_chooses_the_per_round_budget_the_chain_uses(tmp_path, capsys):
    from learningchain.node import SQLiteStore
    from learningchain.privacy.accounting import tight_epsilon

    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--holders", "4", "--rounds", "4", "--difficulty", "0",
                 "--target-epsilon", "1.5", "--out", str(out), "--quiet"]) == 0
    table = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    privacy = summary["privacy"]
    chosen = privacy["chosen"]["epsilon"]
    assert privacy["target_epsilon"] == 1.5 and summary["epsilon_per_round"] == chosen
    assert tight_epsilon([chosen] * 4, 1e-5) == summary["epsilon_total_tight"] <= 1.5
    assert summary["epsilon_total_tight"] > 1.5 * (1 - 1e-3)
    store = SQLiteStore(out / "chain.sqlite", create=False)
    assert store.get(store.head_hash()) is not None
    line = next(l for l in table.splitlines() if "target epsilon / chosen" in l)
    assert line.split()[-6:] == ["1.5", "/", "epsilon", f"{chosen:.6g}", "(constant", "schedule)"]


def test_target_epsilon_for_the_gaussian_mechanism_calibrates_the_noise(tmp_path, capsys):
    out = tmp_path / "g"
    assert main(["train", "--dataset", "breast-cancer", "--rounds", "2", "--mechanism", "gaussian",
                 "--target-epsilon", "3", "--out", str(out), "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    privacy = summary["privacy"]
    assert privacy["target_epsilon"] == 3.0 and privacy["chosen"]["noise_multiplier"] == privacy["rdp"]["noise_multiplier"]
    assert 3.0 * (1 - 1e-3) < summary["epsilon_total"] <= 3.0


@pytest.mark.parametrize("extra,message", [
    (["--epsilon", "0.3"], "--target-epsilon (the whole run's budget"),
    (["--mechanism", "gaussian", "--noise-multiplier", "1.2"], "--target-epsilon or --noise-multiplier, not both"),
    (["--no-dp"], "cannot be used with --no-dp"),
    (["--set", "target_epsilon=-1"], "target_epsilon must be a finite number > 0"),
])
def test_target_epsilon_refuses_options_it_would_contradict(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--holders", "4", "--rounds", "2", "--difficulty", "0",
                 "--target-epsilon", "1", *extra, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("learningchain: error:") and message in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("extra,message", [
    (["--set", "seed=-1"], "seed must be an integer in 0..2^63-1, got -1"),
    (["--set", f"seed={2**100}"], "seed must be an integer in 0..2^63-1"),
    # a per-round budget whose total is past float's range: the run played every round, then
    # its privacy total overflowed and the run was lost
    (["--epsilon", "1e308"], "epsilon (1e+308) times rounds (3) must be a finite privacy total"),
    (["--set", "threads=1000000"], "threads must be in 1..1024"),  # torch's thread pool aborted the process
])
def test_values_a_run_cannot_use_are_refused_before_it_starts(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--holders", "4", "--rounds", "3", "--difficulty", "0",
                 *extra, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("learningchain: error:") and message in err and "Traceback" not in err
    assert not out.exists()


def test_a_node_refuses_what_it_cannot_run_before_loading_data(tmp_path, capsys, monkeypatch):
    import learningchain.parties.genesis as genesis

    def never(*args, **kwargs):
        raise AssertionError("the data set was loaded")

    monkeypatch.setattr(genesis, "load_dataset", never)
    node = ["node", "--data-dir", str(tmp_path / "n"), "--quiet"]
    for extra, message in ((["--consensus", "poa"], "needs authorities"),
                           (["--set", "byzantine_miners=1"], "[train] byzantine_miners = 1 is not used by this run"),
                           (["--set", "network.budget=2.0"], "budget needs enrolled holders"),
                           (["--model", "tree"], "unknown model 'tree'")):
        assert main(node + extra) == 2
        assert message in capsys.readouterr().err, extra
    assert not (tmp_path / "n").exists()
