"""Optimistic mode (contracts/optimistic.vy, ethereum/optimistic*.py): encoding, postings,
disputes and bonds on the in-process EVM and anvil, and the model against the full mode."""

import json

import numpy as np
import pytest

from learningchain.config import TrainConfig
from learningchain.crypto import keccak256
from learningchain.errors import ConfigError
from learningchain.ethereum import fixedpoint as fp
from learningchain.ethereum import optimistic as opt
from learningchain.ethereum.chain import Chain, Reverted
from learningchain.ethereum.fixedpoint import FixedRule
from learningchain.ethereum.optimistic import OptDeployment, OptMessage, OptParams
from learningchain.ethereum.optimistic_net import OptimisticBackend, honest_aggregation
from learningchain.experiments.train import run_training_ethereum
from learningchain.parties import build_parties

from .helpers import fresh_account, random_unit_rows

BOND = 10**15


def _reference_pack(q, width):
    """Slow obvious packing: a string of bits per chunk, padded to whole words."""
    out = b""
    for c in range(0, len(q), opt.CHUNK):
        bits = "".join(format(int(v) & ((1 << width) - 1), f"0{width}b") for v in q[c:c + opt.CHUNK])
        bits += "0" * (-len(bits) % 256)
        out += int(bits, 2).to_bytes(len(bits) // 8, "big")
    return out


@pytest.mark.parametrize("d", [1, 11, 256, 257, 600])
def test_packing_matches_a_bit_string_reference_and_round_trips(d):
    rng = np.random.default_rng(d)
    for scale in (1, 300, 2**20):
        q = rng.integers(-scale, scale + 1, size=d).astype(np.int32)
        width, data = opt.encode_message(q)
        assert -(1 << (width - 1)) <= q.min() and q.max() < 1 << (width - 1)
        assert width == 2 or not (-(1 << (width - 2)) <= q.min() and q.max() < 1 << (width - 2))
        assert data == _reference_pack(q, width)
        assert np.array_equal(opt.decode_message(data, width, d), q)
    with pytest.raises(ConfigError, match="padding"):
        q = np.zeros(11, dtype=np.int32)
        width, data = opt.encode_message(q)
        opt.decode_message(data[:-1] + b"\x01", width, 11)


def test_merkle_proofs_rebuild_the_root():
    leaves = [keccak256(bytes([i])) for i in range(5)]
    root = opt.merkle_root(leaves, 3)
    for i, leaf in enumerate(leaves):
        h = leaf
        for lv, sib in enumerate(opt.merkle_proof(leaves, i, 3)):
            h = keccak256(h + sib) if (i >> lv) & 1 == 0 else keccak256(sib + h)
        assert h == root
    z = b"\x00" * 32
    top = keccak256(keccak256(leaves[0] + leaves[1]) + keccak256(leaves[2] + leaves[3]))
    assert root == keccak256(top + keccak256(keccak256(leaves[4] + z) + keccak256(z + z)))


def _deploy(chain, owner, *, d, l, lam=0.0, messages=8, challenge=4, w0=None, quorum=None, window=0):
    rule = FixedRule(d, 20, 10, l, 3, fp.encode_rate(0.5), fp.encode_rate(lam))
    op = OptParams(rule, 1, messages, quorum or 1, window, 50, challenge, BOND)
    W0 = fp.encode_model(np.zeros(d) if w0 is None else w0)
    return OptDeployment.deploy(chain, owner, op, W0), W0


def _submit(dep, funder, rnd, rows, norms):
    for q, s in zip(rows, norms):
        width, data = opt.encode_message(q)
        dep.submit(fresh_account(dep.chain, funder), rnd, int(s), width, data)
    return dep.round_messages(rnd)


def _post(dep, node, rnd, W, msgs, corrupt=None):
    sel, W_new = honest_aggregation(dep.rule, rnd, W, msgs, len(msgs))
    posted = list(W_new)
    if corrupt is not None:
        posted[corrupt] += 1
    dep.post(node, rnd, len(msgs), sel, posted)
    return sel, W_new, dep.posting()


def _play_wrong_then_honest(chain, d=600, k=6):
    """A Byzantine posting disputed away, an honest one disputed in vain on every chunk,
    then finalised: returns what the test checks."""
    owner = chain.faucet()
    rng = np.random.default_rng(7)
    w0 = rng.normal(scale=0.3, size=d)
    dep, W = _deploy(chain, owner, d=d, l=3, lam=0.01, w0=w0)
    agg, chal = fresh_account(chain, owner, 10**18), fresh_account(chain, owner, 10**18)
    rows = random_unit_rows(rng, k, d)
    msgs = _submit(dep, owner, 0, rows, rng.integers(2**30, 2**34, size=k))
    # the contract's per-message root is the Python tree's
    depth = dep.oparams.depth
    logs = dep.contract.events.Submitted.get_logs(from_block=dep.deploy_block)
    assert [bytes(e["args"]["root"]) for e in logs] == \
        [opt.merkle_root(opt.message_leaves(m.data, m.width, d), depth) for m in msgs]

    # 1. a wrong posting: the last (partial) chunk is off by one unit
    _, W_good, bad = _post(dep, agg, 0, W, msgs, corrupt=d - 1)
    wrong_chunk = (d - 1) // opt.CHUNK
    with pytest.raises(Reverted, match="the challenge window is open"):
        dep.finalize(owner, 0)
    upheld, _ = dep.dispute(chal, 0, wrong_chunk, W, bad, msgs)
    assert upheld and dep.posting() is None
    assert dep.credit(chal.address) == 2 * BOND and dep.credit(agg.address) == 0
    with pytest.raises(Reverted, match="nothing posted"):
        dep.finalize(owner, 0)

    # 2. an honest posting: a dispute of any chunk loses the challenger's bond to the aggregator
    sel, W_good, good = _post(dep, agg, 0, W, msgs)
    for c in range(dep.oparams.chunks):
        upheld, _ = dep.dispute(chal, 0, c, W, good, msgs)
        assert not upheld
    assert dep.posting() == good
    assert dep.credit(agg.address) == dep.oparams.chunks * BOND
    chain.wait_until_block(good.block + dep.oparams.challenge_blocks + 1)
    with pytest.raises(Reverted, match="the challenge window has closed"):
        dep.dispute(chal, 0, 0, W, good, msgs)
    dep.finalize(owner, 0)
    assert dep.current_round() == 1
    assert dep.model_root() == opt.model_root(W_good)
    # the twin's update is the full mode's (fixedpoint.fixed_update), from the decoded messages
    q = np.stack([opt.decode_message(m.data, m.width, d) for m in msgs])
    assert np.array_equal(q, rows)
    assert W_good == fp.fixed_update(W, q, [m.norm for m in msgs], sel, batch_size=3,
                                     lr=fp.encode_rate(0.5), lam=fp.encode_rate(0.01), quant_bits=20)
    # bonds: the aggregator gets its own back at finality plus the failed challenges'
    assert dep.credit(agg.address) == (dep.oparams.chunks + 1) * BOND
    before = chain.balance(chal.address)
    r = dep.withdraw(chal)
    assert chain.balance(chal.address) - before + int(r["gasUsed"]) * int(r["effectiveGasPrice"]) == 2 * BOND
    return dep


def test_a_wrong_aggregation_is_disputed_and_reverted_and_an_honest_one_never(embedded):
    dep = _play_wrong_then_honest(embedded)
    assert int(dep._get("disputes_upheld")) == 1
    assert int(dep._get("disputes_rejected")) == dep.oparams.chunks


@pytest.mark.slow
def test_a_wrong_aggregation_is_disputed_and_reverted_on_anvil(anvil):
    dep = _play_wrong_then_honest(anvil, d=300, k=4)
    assert int(dep._get("disputes_upheld")) == 1


def test_postings_and_disputes_refuse_what_the_rules_forbid(embedded):
    owner = embedded.faucet()
    rng = np.random.default_rng(3)
    dep, W = _deploy(embedded, owner, d=40, l=2, quorum=3, window=1000)
    node = fresh_account(embedded, owner, 10**18)
    msgs = _submit(dep, owner, 0, random_unit_rows(rng, 3, 40), [2**32] * 3)
    sel, W_new = honest_aggregation(dep.rule, 0, W, msgs, 3)
    leaves = opt.model_leaves(W_new)
    mask = fp.selection_mask(sel)
    f = dep.contract
    cases = [((0, 3, mask, leaves), 0, "the posting must carry the bond"),
             ((0, 2, 0b11, leaves), BOND, "the round is still taking messages"),
             ((0, 4, mask, leaves), BOND, "more messages than the round holds"),
             ((0, 3, 0b111, leaves), BOND, "selection must name min"),
             ((0, 3, 0b1001, leaves), BOND, "selection names a message that does not exist"),
             ((0, 3, mask, leaves + leaves), BOND, "one leaf per chunk"),
             ((1, 3, mask, leaves), BOND, "wrong round")]
    for args, value, reason in cases:
        with pytest.raises(Reverted, match=reason):
            embedded.call_tx(node, f, "post", *args, value=value)
    dep.post(node, 0, 3, sel, W_new)
    with pytest.raises(Reverted, match="an aggregation is posted"):
        dep.post(node, 0, 3, sel, W_new)
    posting = dep.posting()
    # a forged message record (another norm) is refused, not counted against anyone
    forged = [OptMessage(m.sender, m.norm + 1, m.width, m.data) for m in msgs]
    with pytest.raises(Reverted, match="record does not match"):
        dep.dispute(node, 0, 0, W, posting, forged)
    with pytest.raises(Reverted, match="bad model proof"):
        dep.dispute(node, 0, 0, [w + 1 for w in W], posting, msgs)
    with pytest.raises(Reverted, match="wrong length"):
        width, data = opt.encode_message(random_unit_rows(rng, 1, 40)[0])
        dep.submit(fresh_account(embedded, owner), 0, 2**32, width, data + b"\x00" * 32)


def _run(tmp_path, mode, chain=None, **kw):
    cfg = TrainConfig(out=str(tmp_path / mode), force=True, backend="ethereum", eth_mode=mode, progress=False,
                      **kw)
    return run_training_ethereum(cfg, chain=chain)


def test_optimistic_mode_equals_full_mode_bit_for_bit(tmp_path):
    kw = dict(dataset="breast-cancer", rounds=3, holders=6, miners=2, epsilon=0.5, seed=4)
    full = _run(tmp_path, "full", **kw)
    o = _run(tmp_path, "optimistic", **kw)
    assert (full["mode"], o["mode"]) == ("full", "optimistic")
    assert o["chain"] == full["chain"] and o["key_generator"] == full["key_generator"]  # the same EVM, named alike
    assert np.array_equal(np.load(tmp_path / "full" / "model.npy"), np.load(tmp_path / "optimistic" / "model.npy"))
    assert o["test_error"] == full["test_error"] and o["height"] == 3
    assert o["incentives"]["conserved"] and o["optimistic"]["disputes_upheld"] == 0
    assert json.loads((tmp_path / "optimistic" / "contract.json").read_text())["mode"] == "optimistic"


def test_the_mode_is_refused_off_the_ethereum_backend():
    with pytest.raises(ConfigError, match="backend ethereum only"):
        TrainConfig(eth_mode="optimistic")
    with pytest.raises(ConfigError, match="full or optimistic"):
        TrainConfig(backend="ethereum", eth_mode="fast")


@pytest.mark.slow
def test_a_byzantine_aggregator_never_makes_a_wrong_round_final_on_anvil(anvil):
    from learningchain.ethereum.runner import secure_config

    cfg = secure_config(TrainConfig(dataset="breast-cancer", rounds=3, holders=5, miners=3, no_dp=True,
                                    backend="ethereum", eth_mode="optimistic").resolved(), anvil)
    parties = build_parties(cfg)
    op = OptParams.from_params(parties.params, messages=5, rounds=3, quorum=5, window=4, challenge_blocks=3,
                               bond=BOND)
    # nodes 0 and 1 post wrong models; node 2 is honest and checks every posting
    backend = OptimisticBackend(cfg, parties, op, anvil, seeded=False, byzantine_nodes=frozenset({0, 1}))
    for _ in range(3):
        backend.step()  # each round ends final with the honest model's root (checked inside)
    net = backend.net
    assert net.wrong_postings >= 1 and net.disputes_upheld == net.wrong_postings
    assert backend.dep.current_round() == 3
    backend.finish("rounds", lambda _: None)
    s = backend.summary({}, {}, lambda _: None)
    assert s["incentives"]["conserved"]
    # each final posting's bond went back to its (honest) aggregator; each wrong posting's
    # challenger took its own bond back and the Byzantine node's: 2 bonds, none for the liar
    assert s["incentives"]["bonds_returned_wei"] == (3 + 2 * net.wrong_postings) * BOND


def test_the_committed_artefact_is_the_source_compiled():
    fresh = opt.compile_optimistic()
    committed = json.loads(opt.ARTIFACT_PATH.read_text())
    for key in ("abi", "bytecode", "bytecode_runtime", "source_keccak256", "compiler", "evm_version"):
        assert fresh[key] == committed[key], key
    assert opt.load_artifact()["contract"] == "LearningChainOptimistic"


def test_a_rule_whose_wrong_rounds_could_not_be_disputed_is_refused_at_deployment():
    # a dispute carries each selected message's chunk; Byzantine holders may choose the widest
    # encoding, so l must leave room for l such records, or a wrong round could never be disputed
    d, keep = 600, 3
    depth = opt.depth_for(opt.chunks_for(d))
    rows = random_unit_rows(np.random.default_rng(1), keep, d, 20)
    msgs = [OptMessage(bytes([k + 1]) * 20, 1 << 20, *opt.encode_message(rows[k], opt.MAX_WIDTH)) for k in range(keep)]
    assert len(opt.dispute_records(msgs, list(range(keep)), 0, d)) == opt.max_dispute_bytes(keep, depth)
    per = opt.max_dispute_bytes(1, 0) - opt.max_dispute_bytes(0, 0)
    fits = (opt.MAX_RECORDS - opt.max_dispute_bytes(0, 0)) // per  # the most messages of a one-chunk model
    for l, refused in ((fits, False), (fits + 1, True)):
        cfg = TrainConfig(dataset="breast-cancer", holders=l, l=l, rounds=1, no_dp=True, backend="ethereum",
                          eth_mode="optimistic").resolved()
        params = build_parties(cfg).params
        if refused:
            with pytest.raises(ConfigError, match="could not be disputed"):
                OptParams.from_params(params, messages=l, rounds=1, quorum=l, window=0, challenge_blocks=3, bond=BOND)
        else:
            OptParams.from_params(params, messages=l, rounds=1, quorum=l, window=0, challenge_blocks=3, bond=BOND)
