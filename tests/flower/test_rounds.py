"""The Flower adapter's round (no flwr needed): updates as chain messages, the rule, the log and its replay."""

import json

import numpy as np
import pytest

from learningchain.errors import ConfigError
from learningchain.flower import RunLog, aggregate_round, prepare_updates, rule_params, verify_log
from learningchain.flower.log import cast_to_layout
from learningchain.protocol.aggregation import RULES

DIM = 12


def round_updates(rng, base, honest=7, byzantine=3):
    ups = [(10 + i, base + 0.05 + 0.01 * rng.normal(size=DIM)) for i in range(honest)]
    ups += [(90 + i, base + rng.normal(0.0, 200.0, size=DIM)) for i in range(byzantine)]
    return ups


def test_updates_that_cannot_be_messages_are_left_out_with_the_reason():
    base = np.zeros(DIM)
    bad = base.copy()
    bad[3] = np.nan
    ups = [(1, base + 1.0), (2, base), (3, bad), (4, np.zeros(DIM + 1)), (1, base + 2.0), (5, base + 1e16)]
    inputs = prepare_updates(1, base, ups, bits=20)
    assert inputs.node_ids == (1,)
    assert inputs.excluded == {2: "no change to the model", 3: "not finite",
                               4: "shape (13,), the model has (12,)", 1: "duplicate node id",
                               5: inputs.excluded[5]} and inputs.excluded[5].startswith("norm")


def test_rows_are_in_canonical_key_order_and_the_keys_commit_to_the_round():
    rng = np.random.default_rng(0)
    base = rng.normal(size=DIM)
    ups = round_updates(rng, base)
    a, b = prepare_updates(1, base, ups, bits=20), prepare_updates(2, base, ups, bits=20)
    assert list(a.keys) == sorted(a.keys) and set(a.keys).isdisjoint(b.keys)
    assert sorted(a.node_ids) == sorted(n for n, _ in ups)


def test_l_nearest_selects_what_the_papers_definition_selects_and_averages_it():
    rng = np.random.default_rng(1)
    base = rng.normal(size=DIM)
    ups = round_updates(rng, base)
    inputs = prepare_updates(1, base, ups, bits=20)
    result = aggregate_round(base, inputs, rule_params("l-nearest", {}, dim=DIM, holders=10))
    # Eq. 14-15 in floats: cosine of each unit update to the sum of the unit updates, top l = ceil(K/2)
    deltas = {n: w - base for n, w in ups}
    units = {n: d / np.linalg.norm(d) for n, d in deltas.items()}
    total = sum(units.values())
    cos = {n: u @ total / np.linalg.norm(total) for n, u in units.items()}
    reference = sorted(sorted(cos, key=cos.get, reverse=True)[:5])
    assert sorted(result.selection) == reference and all(n < 90 for n in result.selection)
    mean = np.mean([deltas[n] for n in reference], axis=0)  # Eq. 16 with m = 1
    np.testing.assert_allclose(result.model, base + mean, rtol=0, atol=1e-5)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_chain_rule_runs_on_flower_updates(rule):
    rng = np.random.default_rng(2)
    base = rng.normal(size=DIM)
    options = {"bound": 1.0} if rule == "l-nearest-bounded" else {}
    params = rule_params(rule, options, dim=DIM, holders=10)
    result = aggregate_round(base, prepare_updates(1, base, round_updates(rng, base), bits=20), params)
    assert np.all(np.isfinite(result.model)) and result.selection
    if rule != "mean":  # every robust rule keeps the model near the honest updates
        assert np.linalg.norm(result.model - base) < 5.0


def test_an_unknown_rule_or_option_is_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match="known: .*l-nearest"):
        rule_params("l-farthest", {}, dim=3, holders=4)
    with pytest.raises(ConfigError, match="has no option"):
        rule_params("l-nearest", {"k": 2}, dim=3, holders=4)


def write_run(path, rounds=3, dtype=np.float32):
    rng = np.random.default_rng(3)
    layout = [("w", np.dtype(dtype), (DIM,))]
    params = rule_params("l-nearest", {}, dim=DIM, holders=10)
    log = RunLog(path)
    base = np.zeros(DIM)
    log.start(rule="l-nearest", options={}, quant_bits=20, server_lr=1.0, holders=10, layout=layout, initial=base)
    for t in range(1, rounds + 1):
        result = aggregate_round(base, prepare_updates(t, base, round_updates(rng, base), bits=20), params)
        log.record(base, result)
        base = cast_to_layout(result.model, layout)  # what the clients receive next
    return result


def test_a_log_replays_bit_for_bit(tmp_path):
    last = write_run(tmp_path)
    verdict = verify_log(tmp_path)
    assert verdict.ok and verdict.rounds == 3 and np.array_equal(verdict.model, last.model)


def _edit_line(path, round_, **changes):
    lines = [json.loads(x) for x in (path / "rounds.jsonl").read_text().splitlines()]
    lines[round_ - 1].update(changes)
    (path / "rounds.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return lines


@pytest.mark.parametrize("tamper, round_, reason", [
    ("selection", 2, "selection"),
    ("model", 2, "not what the rule gives"),
    ("norm", 3, "disagrees"),
    ("q", 1, "keys do not commit"),
    ("initial", 1, "base"),
    ("drop", 2, "base"),
])
def test_a_tampered_log_is_invalid_at_the_round_tampered(tmp_path, tamper, round_, reason):
    write_run(tmp_path)
    if tamper == "selection":
        line = json.loads((tmp_path / "rounds.jsonl").read_text().splitlines()[1])
        _edit_line(tmp_path, 2, selection=sorted(line["node_ids"])[-5:])
    elif tamper == "model":
        _edit_line(tmp_path, 2, model_hash="0x" + "00" * 32)
    elif tamper == "norm":
        data = dict(np.load(tmp_path / "round-000003.npz"))
        data["norms"][0] *= 2
        np.savez(tmp_path / "round-000003.npz", **data)
    elif tamper == "q":
        data = dict(np.load(tmp_path / "round-000001.npz"))
        data["q"][0, 0] += 1
        np.savez(tmp_path / "round-000001.npz", **data)
    elif tamper == "initial":
        np.save(tmp_path / "model-000000.npy", np.ones(DIM))
    elif tamper == "drop":
        lines = (tmp_path / "rounds.jsonl").read_text().splitlines()
        del lines[1]
        for i, x in enumerate(lines):  # renumber, as a forger would
            d = json.loads(x)
            d["round"] = i + 1
            lines[i] = json.dumps(d)
        (tmp_path / "rounds.jsonl").write_text("\n".join(lines) + "\n")
    verdict = verify_log(tmp_path)
    assert not verdict.ok and verdict.bad_round == round_ and reason in verdict.reason, str(verdict)


def test_the_verify_command_exits_1_on_a_tampered_log_and_2_on_no_log(tmp_path, capsys):
    from learningchain.flower.__main__ import main

    write_run(tmp_path / "log")
    assert main(["verify", str(tmp_path / "log")]) == 0 and "OK: 3 rounds" in capsys.readouterr().out
    _edit_line(tmp_path / "log", 3, model_hash="0x" + "11" * 32)
    assert main(["verify", str(tmp_path / "log")]) == 1 and "INVALID at round 3" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "nothing")]) == 2 and "not a readable" in capsys.readouterr().err
