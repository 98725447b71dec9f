"""Byzantine computing nodes: each attack, what catches it, and what cannot."""

import numpy as np
import pytest

from learningchain.attacks.miners import make_miner_strategy, mint_messages, tamper
from learningchain.cli.main import main
from learningchain.config import TrainConfig
from learningchain.errors import ConfigError, InvalidBlock
from learningchain.experiments.security import sweep
from learningchain.experiments.train import run_training
from learningchain.node import Node
from learningchain.node.verify import replay_last, verify_chain

from ..helpers import genesis_for, honest_vectors, make_keys, message_for, small_params


def forge_block(node, parent, *, messages, timestamp, model=None, selection=None):
    """A sealed block on ``parent``: the rule's block, with ``model``/``selection`` written over it."""
    block = node.template(timestamp=timestamp, messages=messages, parent=parent)
    return node.seal(tamper(block, model=model, selection=selection))


@pytest.fixture
def world():
    params = small_params(holders=6)
    genesis = genesis_for(params)
    honest = Node(genesis, check_unseen=True)
    keys = make_keys(6)
    rng = np.random.default_rng(0)
    msgs = [message_for(k, params, genesis, v) for k, v in zip(keys, honest_vectors(params, 6, rng))]
    for m in msgs:
        honest.on_message(m)
    attacker = Node(genesis, validation="header", miner=b"\xbb" * 20)  # checks the seal and links only
    for m in msgs:
        attacker.on_message(m)
    return params, genesis, honest, attacker, msgs


def test_wrong_model_block_is_rejected_and_chain_continues_on_parent(world):
    params, genesis, honest, attacker, msgs = world
    good = forge_block(attacker, genesis, messages=msgs, timestamp=2000)
    wrong = forge_block(attacker, genesis, messages=msgs, timestamp=2000,
                        model=genesis.model - 5 * (good.model - genesis.model))
    with pytest.raises(InvalidBlock) as info:
        honest.on_block(wrong)
    assert info.value.reason == "bad-model"
    assert honest.head_hash == genesis.hash
    # the next honest block builds on the parent and is accepted
    nxt = honest.seal(honest.template(timestamp=3000))
    assert nxt.parent == genesis.hash and honest.on_block(nxt).new_head


def test_forged_selection_is_rejected_even_with_a_true_model(world):
    params, genesis, honest, attacker, msgs = world
    good = forge_block(attacker, genesis, messages=msgs, timestamp=2000)
    other = tuple(i for i in range(len(msgs)) if i not in good.selection)[: len(good.selection)]
    forged = forge_block(attacker, genesis, messages=msgs, timestamp=2000, selection=other, model=good.model)
    with pytest.raises(InvalidBlock, match="bad-selection"):
        honest.on_block(forged)


def test_drop_honest_block_is_valid_and_only_the_inclusion_policy_refuses_it(world):
    params, genesis, honest, attacker, msgs = world
    dropped = forge_block(attacker, genesis, messages=msgs[:1], timestamp=2000)
    strict = Node(genesis, min_inclusion=0.5)
    for m in msgs:
        strict.on_message(m)
    with pytest.raises(InvalidBlock, match="omitted-messages"):
        strict.on_block(dropped)
    # the paper's rules cannot tell an omission from a message that never arrived
    assert honest.on_block(dropped).new_head


def test_forged_messages_are_refused_by_the_mempool_check_but_pass_replay(world):
    params, genesis, honest, attacker, msgs = world
    rng = np.random.default_rng(5)
    forged = mint_messages(params, genesis, [-np.ones(params.dim)] * 7, rng)
    block = forge_block(attacker, genesis, messages=msgs + forged, timestamp=2000)
    with pytest.raises(InvalidBlock) as info:
        honest.on_block(block)
    assert info.value.reason == "unseen-message"
    lax = Node(genesis)  # a node without the mempool comparison accepts it: signatures are all valid
    assert lax.on_block(block).new_head
    assert replay_last(lax, block.hash, 5)[0]  # and no replay of the chain can tell
    selected_forged = sum(1 for i in block.selection if block.messages[i] in forged)
    assert selected_forged > len(block.selection) // 2  # the minted identities won the selection


def test_skip_validation_children_of_an_invalid_block_are_refused_as_invalid_ancestor(world):
    params, genesis, honest, attacker, msgs = world
    good = forge_block(attacker, genesis, messages=msgs, timestamp=2000)
    wrong = forge_block(attacker, genesis, messages=msgs, timestamp=2000, model=good.model + 1.0)
    assert attacker.on_block(wrong).new_head  # the unchecked node takes it
    rng = np.random.default_rng(1)
    child = forge_block(attacker, wrong, messages=mint_messages(params, wrong, [np.ones(params.dim)] * 3, rng),
                        timestamp=3000)
    assert attacker.on_block(child).new_head
    with pytest.raises(InvalidBlock, match="bad-model"):
        honest.on_block(wrong)
    with pytest.raises(InvalidBlock, match="invalid-ancestor"):
        honest.on_block(child)
    # the child alone recomputes from its (invalid) parent: a check of the last block passes,
    # a check of the last two finds the invalid one
    assert replay_last(attacker, child.hash, 1)[0]
    assert replay_last(attacker, child.hash, 2) == (False, 1, "bad-model")


def test_heavier_withheld_fork_wins_only_where_its_messages_were_seen(world):
    params, genesis, honest, attacker, msgs = world
    lax = Node(genesis)
    for m in msgs:
        lax.on_message(m)
    public = lax.seal(lax.template(timestamp=2000))
    lax.on_block(public)
    honest.on_block(public)
    rng = np.random.default_rng(2)
    private1 = forge_block(attacker, genesis, messages=msgs, timestamp=2100)
    private2 = forge_block(attacker, private1,
                           messages=mint_messages(params, private1, [np.ones(params.dim)] * 3, rng), timestamp=3000)
    for blk in (private1, private2):
        lax.on_block(blk)
    assert lax.head_hash == private2.hash  # heavier: the node reorganises onto it
    honest.on_block(private1)  # valid, seen messages: kept as a side branch
    with pytest.raises(InvalidBlock, match="unseen-message"):
        honest.on_block(private2)
    assert honest.head_hash in (public.hash, private1.hash)


def test_unknown_miner_attack_is_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match="known: .*withhold"):
        make_miner_strategy("eclipse")


def run(tmp_path, name, **kw):
    cfg = dict(dataset="synthetic", holders=10, rounds=60, epsilon=0.3, out=str(tmp_path / name), force=True,
               progress=False)
    cfg.update(kw)
    return run_training(TrainConfig(**cfg))


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    return run(tmp_path_factory.mktemp("clean"), "clean")


@pytest.mark.slow
@pytest.mark.parametrize("attack", ["wrong-model", "drop-honest", "forged-messages", "skip-validation", "withhold"])
def test_minority_byzantine_miners_do_not_move_the_model(tmp_path, clean_run, attack):
    s = run(tmp_path, attack, byzantine_miners=3, byzantine_power=0.3, miner_attack=attack)
    assert verify_chain(tmp_path / attack).ok
    assert s["final_check"]["honest_head_passes"]
    assert abs(s["test_error"] - clean_run["test_error"]) <= 0.02
    if attack in ("wrong-model", "forged-messages", "skip-validation"):
        assert s["rejected_blocks"] > 0 and sum(s["rejected_by_reason"].values()) == s["rejected_blocks"]
        assert s["byzantine_blocks_on_honest_chain"] == 0
    assert "verdict" in s


@pytest.mark.slow
def test_majority_byzantine_power_is_reported_plainly_not_crashed(tmp_path):
    s = run(tmp_path, "maj", byzantine_miners=3, byzantine_power=0.6, miner_attack="skip-validation")
    assert "majority" in s["verdict"]
    assert s["heaviest_chain_height"] > s["honest_height"]
    assert not s["heaviest_chain_accepted_by_honest"]
    assert verify_chain(tmp_path / "maj").ok  # what honest nodes stored is still valid


def test_security_sweep_measures_survival_next_to_the_paper(tmp_path):
    rows = sweep(powers=[0.0, 0.9], s_values=[1, 3], trials=2, rounds=12)
    by = {(r["byzantine_power"], r["s"]): r for r in rows}
    assert by[(0.0, 1)]["survival_rate"] == 0.0 and by[(0.0, 3)]["honest_in_last_s_rate"] == 1.0
    assert by[(0.9, 1)]["paper_prediction"] == pytest.approx(0.9)
    assert by[(0.9, 1)]["wrong_head_rate"] == 1.0  # a 90% cartel owns the heaviest chain


def test_cli_byzantine_miner_run_and_final_check(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--dataset", "breast-cancer", "--rounds", "8", "--byzantine-miners", "2",
                 "--byzantine-power", "0.3", "--miner-attack", "wrong-model", "--out", str(out), "--quiet"]) == 0
    assert "verdict" in capsys.readouterr().out
    assert main(["chain", "verify", str(out), "--last", "3"]) == 0
    assert "from height" in capsys.readouterr().out
