"""``learningchain train --resume DIR`` on a JSON-RPC chain (anvil): an interrupted run goes
on from its contract's state, and a directory that does not match the chain is refused
with nothing in it changed."""

import dataclasses
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from learningchain.config import TrainConfig
from learningchain.errors import ConfigError
from learningchain.ethereum import fixedpoint as fp
from learningchain.ethereum.keystore import PASSWORD_ENV
from learningchain.experiments.rundir import RunInterrupted
from learningchain.experiments.train import resume_training, run_training_ethereum

ROUNDS, HOLDERS, MINERS = 3, 4, 2
PASSWORD = "correct horse battery staple"
ROOT = Path(__file__).resolve().parents[2]


def config(out, url, **kw):
    return TrainConfig(out=str(out), backend="ethereum", rpc_url=url, dataset="breast-cancer", rounds=ROUNDS,
                       epsilon=0.5, holders=HOLDERS, miners=MINERS, progress=False, **kw)


def snapshot(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def contract_of(chain, run_dir: Path):
    doc = json.loads((run_dir / "contract.json").read_text())
    abi = json.loads((run_dir / "contract.abi.json").read_text())
    return chain.w3.eth.contract(address=doc["address"], abi=abi), doc


def twin_replay(contract, cfg, deploy_block):
    """The final model, recomputed from w_0 with the Python twin from the chain's messages
    and Aggregated events alone; also checks every round holds exactly one message per holder."""
    from learningchain.parties import build_parties

    parties = build_parties(cfg)
    rule = fp.FixedRule.from_params(parties.params)
    W = fp.encode_model(parties.genesis.model)
    for rnd in range(int(contract.functions.current_round().call())):
        (agg,) = contract.events.Aggregated.get_logs(from_block=deploy_block, argument_filters={"round": rnd})
        subs = sorted(contract.events.Submitted.get_logs(from_block=deploy_block, argument_filters={"round": rnd}),
                      key=lambda e: e["args"]["index"])
        assert len(subs) == HOLDERS, f"round {rnd}: {len(subs)} messages for {HOLDERS} holders"
        assert len({e["args"]["sender"] for e in subs}) == HOLDERS
        n = agg["args"]["messages"]
        q = np.stack([fp.unpack_q(bytes(e["args"]["q"]), rule.dim) for e in subs[:n]])
        keys = [fp.tie_key(rnd, bytes.fromhex(e["args"]["sender"][2:])) for e in subs[:n]]
        selection = fp.mask_selection(agg["args"]["selection"])
        assert selection == tuple(fp.select_l_nearest(q, keys, rule.l, rule.quant_bits))
        W = fp.fixed_update(W, q, [e["args"]["norm"] for e in subs[:n]], selection, batch_size=rule.batch_size,
                            lr=rule.lr, lam=rule.lam, quant_bits=rule.quant_bits)
    return W


@pytest.fixture
def keystore_password(monkeypatch):  # overrides the conftest's: the module's own password
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)


def test_a_run_on_a_json_rpc_chain_needs_the_keystore_password(tmp_path, anvil, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    before = anvil.block_number()
    with pytest.raises(ConfigError, match=PASSWORD_ENV):
        run_training_ethereum(config(tmp_path / "eth", anvil.url), chain=anvil)
    assert not (tmp_path / "eth").exists() and not list(tmp_path.iterdir())
    assert anvil.block_number() == before  # nothing deployed


KILLER = textwrap.dedent("""
    import dataclasses, os, signal, sys
    from learningchain.config import TrainConfig
    from learningchain.ethereum import chain, runner
    from learningchain.experiments.train import run_training_ethereum

    out, url, hint, kill_round, kill_before, chunk_words = sys.argv[1:7]
    kill_round, kill_before, chunk_words = int(kill_round), int(kill_before), int(chunk_words)
    if chunk_words:  # a multi-chunk aggregation even for this small model
        params = runner.contract_params
        runner.contract_params = lambda *a, **k: dataclasses.replace(params(*a, **k), chunk_words=chunk_words)
    seen = [0]
    call_tx = chain.Chain.call_tx

    def call_or_die(self, sender, contract, name, *args, **kw):
        if kw.get("hint") == hint:
            rnd = args[0] if name in ("submit", "claim_reward") else contract.functions.current_round().call()
            if rnd == kill_round:
                seen[0] += 1
                if seen[0] == kill_before:
                    os.kill(os.getpid(), signal.SIGKILL)  # no handler runs, nothing is closed
        return call_tx(self, sender, contract, name, *args, **kw)

    chain.Chain.call_tx = call_or_die
    run_training_ethereum(TrainConfig(out=out, backend="ethereum", rpc_url=url, dataset="breast-cancer",
                                      rounds=%d, epsilon=0.5, holders=%d, miners=%d, progress=False))
""" % (ROUNDS, HOLDERS, MINERS))


def kill_and_resume(tmp_path, anvil, monkeypatch, hint, kill_round, kill_before, chunk_words=0):
    """Run the KILLER (SIGKILL before the kill_before-th transaction of kind ``hint`` in round
    ``kill_round``), check what it left, resume it; (the killed directory, contract.json, the
    resumed summary)."""
    from learningchain.ethereum import runner

    out = tmp_path / "eth"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", KILLER, str(out), anvil.url, hint, str(kill_round),
                           str(kill_before), str(chunk_words)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    (left,) = tmp_path.glob(".eth.new-*")  # the killed run's directory, beside --out
    assert not out.exists()
    for key in (left / "keys").iterdir():
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((left / "keys").stat().st_mode) == 0o700
    killed = snapshot(left)
    if chunk_words:
        from learningchain.experiments import ethereum_run

        params = runner.contract_params
        patched = lambda *a, **k: dataclasses.replace(params(*a, **k), chunk_words=chunk_words)  # noqa: E731
        monkeypatch.setattr(runner, "contract_params", patched)
        monkeypatch.setattr(ethereum_run, "contract_params", patched)  # the resume's own reference
    s = resume_training(out, progress=False)
    assert s["resumed"] and s["rounds"] == ROUNDS and s["height"] == ROUNDS
    assert [r["round"] for r in json.loads((out / "checkpoint.json").read_text())["rows"]] == [1, 2, 3]
    c, cdoc = contract_of(anvil, out)
    assert c.functions.current_round().call() == ROUNDS
    assert c.functions.status().call() == 2  # finished, the deposits withdrawn
    assert c.functions.withdrawals().call() == HOLDERS
    cfg = TrainConfig.from_dict(json.loads((out / "checkpoint.json").read_text())["config"])
    W = twin_replay(c, cfg, cdoc["deploy_block"])
    assert [int(v) for v in c.functions.get_model().call()] == W
    assert np.array_equal(np.load(out / "model.npy"), np.asarray(fp.decode_model(W)))
    # every round's reward went to one of the run's computing nodes, and was claimed
    for rnd in range(ROUNDS):
        assert c.functions.aggregator_of(rnd).call() in cdoc["nodes"]
        assert c.functions.reward_paid(rnd).call()
    assert s["incentives"]["conserved"]
    return killed, c, cdoc


def test_a_run_killed_in_the_middle_of_a_round_resumes_from_the_contract(tmp_path, anvil, keystore_password,
                                                                         monkeypatch):
    """SIGKILL after 2 of the 4 messages of round 1: the resumed run sends the other two from
    the same pseudo-identities (the two sent are not sent again), aggregates, and plays the
    last round; the contract's model is the twin's replay of the chain's own messages."""
    killed, c, cdoc = kill_and_resume(tmp_path, anvil, monkeypatch, "submit", 1, 3)
    journal = json.loads(killed["round-messages.json"])
    assert journal["round"] == 1 and len(journal["messages"]) == HOLDERS
    # round 1's four messages are the ones the killed run had drawn: none drawn afresh (a
    # second noisy message of a holder for one round would spend privacy twice)
    subs = sorted(c.events.Submitted.get_logs(from_block=cdoc["deploy_block"], argument_filters={"round": 1}),
                  key=lambda e: e["args"]["index"])
    assert [(e["args"]["norm"], bytes(e["args"]["q"]).hex()) for e in subs] == \
        [(m["norm"], m["q"]) for m in journal["messages"]]


def test_a_run_killed_in_a_multi_chunk_aggregation_finishes_that_attempt(tmp_path, anvil, keystore_password,
                                                                         monkeypatch):
    """Four chunks a round; SIGKILL after chunks 0 and 1 of round 1: the resumed run continues
    that attempt under its claim (no second attempt, no bond lost)."""
    _, c, cdoc = kill_and_resume(tmp_path, anvil, monkeypatch, "aggregate", 1, 3, chunk_words=1)
    assert c.functions.chunks().call() == 4
    chunks = c.events.ChunkAggregated.get_logs(from_block=cdoc["deploy_block"], argument_filters={"round": 1})
    assert sorted(e["args"]["chunk"] for e in chunks) == [0, 1, 2]  # each once: the attempt was joined
    assert not c.events.AggregationRejected.get_logs(from_block=cdoc["deploy_block"])
    assert c.functions.forfeited().call() == 0
    # finished by the node that started it (its key kept), so the contract paid that node
    (first,) = [e for e in chunks if e["args"]["chunk"] == 0]
    assert c.functions.aggregator_of(1).call() == first["args"]["aggregator"]


def test_a_reward_left_unclaimed_by_a_killed_run_is_claimed_on_resume(tmp_path, anvil, keystore_password,
                                                                      monkeypatch):
    killed, c, cdoc = kill_and_resume(tmp_path, anvil, monkeypatch, "claim", 1, 1)
    assert json.loads(killed["checkpoint.json"])["state"]["contract_round"] == 1  # behind the contract (2)
    paid = c.events.RewardPaid.get_logs(from_block=cdoc["deploy_block"], argument_filters={"round": 1})
    assert len(paid) == 1 and paid[0]["args"]["aggregator"] == c.functions.aggregator_of(1).call()


def test_a_failed_run_keeps_its_keys_and_leaves_the_contract_open(tmp_path, anvil, monkeypatch):
    """An error (here the node failing in round 2) must not delete the keys of a live contract:
    the directory stays beside --out for a resume once the process has exited."""
    from learningchain.ethereum.chain import EthereumError
    from learningchain.ethereum.network import EthereumNetwork

    step = EthereumNetwork.step

    def fail_in_round_2(self):
        if self.head.height == 1:
            raise EthereumError("the node stopped answering")
        return step(self)

    monkeypatch.setattr(EthereumNetwork, "step", fail_in_round_2)
    with pytest.raises(EthereumError, match="stopped answering"):
        run_training_ethereum(config(tmp_path / "eth", anvil.url), chain=anvil)
    (left,) = tmp_path.glob(".eth.new-*")
    assert {"contract.json", "checkpoint.json", "keys/pseudonyms.json", "keys/node-0.json"} <= set(snapshot(left))
    c, _ = contract_of(anvil, left)
    assert c.functions.status().call() == 1 and c.functions.current_round().call() == 1
    with pytest.raises(ConfigError, match="still going"):  # this process is still alive
        resume_training(tmp_path / "eth", progress=False)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, anvil_url):
    """A run stopped by Ctrl-C after round 1 of 3: its directory, and the keys' secrets."""
    from learningchain.ethereum.chain import Chain

    mp = pytest.MonkeyPatch()
    mp.setenv(PASSWORD_ENV, PASSWORD)
    tmp = tmp_path_factory.mktemp("interrupted")

    def stop(row):
        if row["round"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted) as info:
        run_training_ethereum(config(tmp / "eth", anvil_url), chain=Chain.connect(anvil_url), on_round=stop)
    mp.undo()
    assert info.value.summary["interrupted"] and info.value.summary["resumable"]
    return tmp / "eth"


def resume_copy(src: Path, dst: Path):
    shutil.copytree(src, dst)
    return dst, snapshot(dst)


def test_no_contract_json_is_refused(interrupted, tmp_path, keystore_password):
    run, _ = resume_copy(interrupted, tmp_path / "run")
    (run / "contract.json").unlink()
    before = snapshot(run)
    with pytest.raises(ConfigError, match="no contract.json"):
        resume_training(run, progress=False)
    assert snapshot(run) == before


def test_another_chain_id_is_refused(interrupted, tmp_path, keystore_password):
    run, _ = resume_copy(interrupted, tmp_path / "run")
    doc = json.loads((run / "contract.json").read_text())
    (run / "contract.json").write_text(json.dumps(dict(doc, chain_id=1)))
    before = snapshot(run)
    with pytest.raises(ConfigError, match="on chain 31337, not the pinned chain_id 1"):
        resume_training(run, progress=False)
    assert snapshot(run) == before


def test_an_address_with_other_code_is_refused(interrupted, tmp_path, anvil, keystore_password):
    from tests.ethereum.helpers import deploy

    run, _ = resume_copy(interrupted, tmp_path / "run")
    doc = json.loads((run / "contract.json").read_text())
    # the same contract with other parameters (other immutables), and an account with no code
    other = deploy(anvil, anvil.faucet(), d=31, l=2, rounds=ROUNDS)
    for address, match in ((other.address, "is not the code deployed for this run"),
                           (anvil.faucet().address, "no contract at")):
        (run / "contract.json").write_text(json.dumps(dict(doc, address=address)))
        before = snapshot(run)
        with pytest.raises(ConfigError, match=match):
            resume_training(run, progress=False)
        assert snapshot(run) == before


def test_a_wrong_password_is_refused(interrupted, tmp_path, monkeypatch):
    run, before = resume_copy(interrupted, tmp_path / "run")
    monkeypatch.setenv(PASSWORD_ENV, "not the password")
    with pytest.raises(ConfigError, match="wrong password"):
        resume_training(run, progress=False)
    assert snapshot(run) == before
    monkeypatch.delenv(PASSWORD_ENV)
    with pytest.raises(ConfigError, match=PASSWORD_ENV):
        resume_training(run, progress=False)
    assert snapshot(run) == before


def test_a_run_on_the_in_process_evm_does_not_resume(tmp_path):
    def stop(row):
        raise KeyboardInterrupt

    cfg = TrainConfig(out=str(tmp_path / "eth"), backend="ethereum", dataset="breast-cancer", rounds=2,
                      holders=3, miners=1, progress=False)
    with pytest.raises(RunInterrupted):
        run_training_ethereum(cfg, on_round=stop)
    before = snapshot(tmp_path / "eth")
    with pytest.raises(ConfigError, match="in-process EVM does not resume"):
        resume_training(tmp_path / "eth", progress=False)
    assert snapshot(tmp_path / "eth") == before


# last: it closes the contract the other tests' copies name
def test_ctrl_c_leaves_the_contract_open_and_the_run_resumes(interrupted, tmp_path, anvil, keystore_password, capsys):
    from eth_account import Account

    run, _ = resume_copy(interrupted, tmp_path / "run")
    c, cdoc = contract_of(anvil, run)
    assert c.functions.status().call() == 1 and c.functions.current_round().call() == 1  # open
    # no key in the clear anywhere in the run directory but its keystores
    secrets = [bytes(Account.decrypt(json.loads(p.read_text()), PASSWORD)).hex() for p in (run / "keys").iterdir()]
    assert len(secrets) == HOLDERS + MINERS + 1
    for name, data in snapshot(run).items():
        if not name.startswith("keys/"):
            assert not any(sec in data.decode(errors="replace") for sec in secrets), name
    from learningchain.cli.main import main

    assert main(["train", "--resume", str(run), "--rounds", "5"]) == 2  # its own config: refused
    assert "drop --rounds" in capsys.readouterr().err
    # the command line, naming the node again
    assert main(["train", "--resume", str(run), "--rpc-url", anvil.url, "--quiet", "--json"]) == 0
    s = json.loads((run / "summary.json").read_text())
    assert s["rounds"] == ROUNDS and s["height"] == ROUNDS and not s.get("interrupted") and s["resumed"]
    assert c.functions.current_round().call() == ROUNDS and c.functions.status().call() == 2
    cfg = TrainConfig.from_dict(json.loads((run / "checkpoint.json").read_text())["config"])
    assert [int(v) for v in c.functions.get_model().call()] == twin_replay(c, cfg, cdoc["deploy_block"])
    # a finished run: refused, and left as it is; so is another copy of the interrupted
    # directory, whose contract the first resume closed
    before = snapshot(run)
    with pytest.raises(ConfigError, match="finished run"):
        resume_training(run, progress=False)
    assert snapshot(run) == before
    again, before = resume_copy(interrupted, tmp_path / "again")
    with pytest.raises(ConfigError, match=r"is closed \(finished\): nothing to resume"):
        resume_training(again, progress=False)
    assert snapshot(again) == before
