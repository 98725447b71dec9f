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


def _reference_pack(q, widths):
    """Slow obvious packing: per chunk, strings of bits of the zigzag values' low and high
    parts, each padded to whole words."""
    out = b""
    for i, c in enumerate(range(0, len(q), opt.CHUNK)):
        low, high = widths[2 * i], widths[2 * i + 1]
        zs = [2 * int(v) if v >= 0 else -2 * int(v) - 1 for v in q[c:c + opt.CHUNK]]
        for part in ("".join(format(z % (1 << low), f"0{low}b") for z in zs),
                     "".join(format(z >> low, f"0{high}b") for z in zs) if high else ""):
            part += "0" * (-len(part) % 256)
            out += int(part, 2).to_bytes(len(part) // 8, "big") if part else b""
    return out


@pytest.mark.parametrize("d", [1, 11, 256, 257, 600])
def test_packing_matches_a_bit_string_reference_and_round_trips(d):
    rng = np.random.default_rng(d)
    for scale in (1, 300, 2**20, 2**31):
        q = rng.integers(-scale, scale, size=d).astype(np.int32)
        widths, data = opt.encode_message(q)
        assert len(widths) == 2 * opt.chunks_for(d)
        for i in range(opt.chunks_for(d)):
            z = opt.zigzag(q[i * opt.CHUNK:(i + 1) * opt.CHUNK])
            low, high = widths[2 * i], widths[2 * i + 1]
            assert low >= 1 and low + high == max(1, int(z.max()).bit_length())  # the fewest bits that hold all
        assert data == _reference_pack(q, widths)
        assert np.array_equal(opt.decode_message(widths, data, d), q)
        # forced widths: every chunk in its low plane, or in two planes of 16 bits
        for forced, pair in ((opt.MAX_WIDTH, (opt.MAX_WIDTH, 0)), ((16, 16), (16, 16))):
            wide, data32 = opt.encode_message(q, forced)
            assert wide == bytes(pair) * opt.chunks_for(d)
            assert data32 == _reference_pack(q, wide)
            assert np.array_equal(opt.decode_message(wide, data32, d), q)
    with pytest.raises(ConfigError, match="does not fit 3 bits"):
        opt.encode_message(np.array([4, 0], dtype=np.int32), 3)  # zigzag 8 needs 4 bits
    q = np.zeros(11, dtype=np.int32)
    widths, data = opt.encode_message(q)
    with pytest.raises(ConfigError, match="padding"):
        opt.decode_message(widths, data[:-1] + b"\x01", 11)
    with pytest.raises(ConfigError, match="width bytes"):
        opt.decode_message(widths + b"\x01\x00", data, 11)
    for bad in (b"\x00\x00", b"\x20\x01", b"\x21\x00"):
        with pytest.raises(ConfigError, match="chunk widths"):
            opt.decode_message(bad, data, 11)
    with pytest.raises(ConfigError, match="bytes, got"):
        opt.decode_message(widths, data + b"\x00" * 32, 11)


def test_the_encoding_splits_a_noisy_chunk_to_spend_less_calldata_gas():
    # a Gaussian chunk: the high plane of its zigzag values is mostly zero bytes, which cost
    # a quarter of a non-zero byte at the EIP-7623 floor
    rng = np.random.default_rng(5)
    q = np.rint(rng.normal(scale=12000, size=4 * opt.CHUNK)).astype(np.int32)
    widths, data = opt.encode_message(q)
    one, flat = opt.encode_message(q, opt.zigzag_width(q))
    assert any(widths[2 * i + 1] > 0 for i in range(4))
    assert opt.floor_gas(widths + data) < 0.97 * opt.floor_gas(one + flat)


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


def _submit(dep, funder, rnd, rows, norms, forced=None):
    """``forced``: {row: width} for rows sent at one width, all in the low plane."""
    for i, (q, s) in enumerate(zip(rows, norms)):
        widths, data = opt.encode_message(q, (forced or {}).get(i))
        dep.submit(fresh_account(dep.chain, funder), rnd, int(s), widths, data)
    return dep.round_messages(rnd)


def _post(dep, node, rnd, W, msgs, corrupt=None):
    sel, W_new, _ = honest_aggregation(dep.rule, rnd, W, msgs, len(msgs))
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
    # one message at the widest encoding in one plane, one in two 16-bit planes, one at its
    # fewest bits in one plane, the rest split by the encoder
    msgs = _submit(dep, owner, 0, rows, rng.integers(2**30, 2**34, size=k),
                   forced={0: opt.MAX_WIDTH, 1: (16, 16), 2: opt.zigzag_width(rows[2])})
    assert msgs[0].widths[:2] == bytes([opt.MAX_WIDTH, 0]) and msgs[1].widths[:2] == bytes([16, 16])
    assert any(m.widths[2 * c + 1] > 0 for m in msgs[3:] for c in range(opt.chunks_for(d)))
    # the contract's per-message root is the Python tree's
    depth = dep.oparams.depth
    logs = dep.contract.events.Submitted.get_logs(from_block=dep.deploy_block)
    assert [bytes(e["args"]["root"]) for e in logs] == \
        [opt.merkle_root(opt.message_leaves(m.widths, m.data, d), depth) for m in msgs]

    # 1. a wrong posting: the last (partial) chunk is off by one unit
    _, W_good, bad = _post(dep, agg, 0, W, msgs, corrupt=d - 1)
    wrong_chunk = (d - 1) // opt.CHUNK
    with pytest.raises(Reverted, match="the challenge window is open"):
        dep.finalize(owner, 0)
    upheld, _ = dep.dispute(chal, 0, wrong_chunk, W, bad, msgs)
    assert upheld and dep.posting() is None
    # the challenger: its bond and half the aggregator's; the other half is burnt
    assert dep.credit(chal.address) == BOND + BOND // 2 and dep.credit(agg.address) == 0
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
    q = np.stack([opt.decode_message(m.widths, m.data, d) for m in msgs])
    assert np.array_equal(q, rows)
    assert W_good == fp.fixed_update(W, q, [m.norm for m in msgs], sel, batch_size=3,
                                     lr=fp.encode_rate(0.5), lam=fp.encode_rate(0.01), quant_bits=20)
    # bonds: the aggregator gets its own back at finality plus the failed challenges'
    assert dep.credit(agg.address) == (dep.oparams.chunks + 1) * BOND
    before = chain.balance(chal.address)
    r = dep.withdraw(chal)
    assert chain.balance(chal.address) - before + int(r["gasUsed"]) * int(r["effectiveGasPrice"]) == BOND + BOND // 2
    # what stays in the contract: the aggregator's credit and the burnt half bond, which
    # no one can withdraw
    r = dep.withdraw(agg)
    assert chain.balance(dep.contract.address) == BOND - BOND // 2
    with pytest.raises(Reverted, match="nothing owed"):
        dep.withdraw(chal)
    return dep


def test_a_wrong_aggregation_is_disputed_and_reverted_and_an_honest_one_never(embedded):
    dep = _play_wrong_then_honest(embedded)
    assert int(dep._get("disputes_upheld")) == 1
    assert int(dep._get("disputes_rejected")) == dep.oparams.chunks


def test_invalid_messages_are_excluded_so_an_honest_posting_stays_possible_below_l_valid_ones(embedded):
    # Byzantine holders send messages that fail the unit-norm check, leaving fewer valid
    # messages than l; the posting names them as excluded and selects all the valid ones, and
    # the contract's recomputation of a disputed chunk divides by what was selected.
    owner = embedded.faucet()
    rng = np.random.default_rng(13)
    d = 300
    dep, W = _deploy(embedded, owner, d=d, l=3, lam=0.01, w0=rng.normal(scale=0.3, size=d))
    rows = random_unit_rows(rng, 4, d)
    rows[1] = rows[1] * 2  # twice a unit vector's norm
    rows[3] = np.zeros(d, dtype=rows.dtype)
    msgs = _submit(dep, owner, 0, rows, rng.integers(2**30, 2**34, size=4))
    sel, W_good, invalid = honest_aggregation(dep.rule, 0, W, msgs, 4)
    assert invalid == (1, 3) and sel == (0, 2)
    assert W_good == dep.rule.update(W, rows, [m.norm for m in msgs], sel)
    agg, chal = fresh_account(embedded, owner, 10**18), fresh_account(embedded, owner, 10**18)
    # without the exclusions the two valid messages cannot make a posting: the contract wants
    # min(l, n) = 3 of the 4 messages selected
    with pytest.raises(Reverted, match="selection must name min"):
        dep.post(agg, 0, 4, sel, W_good)
    # a wrong model with the right exclusions: disputed away
    bad = list(W_good)
    bad[d - 1] += 1
    dep.post(agg, 0, 4, sel, bad, invalid)
    posting = dep.posting()
    assert posting.excluded == 0b1010 and posting.selection == 0b101
    upheld, _ = dep.dispute(chal, 0, (d - 1) // opt.CHUNK, W, posting, msgs)
    assert upheld and dep.posting() is None
    # the honest model: every chunk's dispute fails, and it becomes final
    dep.post(agg, 0, 4, sel, W_good, invalid)
    posting = dep.posting()
    for c in range(dep.oparams.chunks):
        upheld, _ = dep.dispute(chal, 0, c, W, posting, msgs)
        assert not upheld
    embedded.wait_until_block(posting.block + dep.oparams.challenge_blocks + 1)
    dep.finalize(owner, 0)
    assert dep.model_root() == opt.model_root(W_good)


def test_an_aggregator_that_disputes_its_own_wrong_posting_loses_half_its_bond(embedded):
    # Disputing one's own wrong posting (or copying an honest dispute ahead of it) reopens
    # the round; it must cost the aggregator, or it could stall rounds for the price of gas.
    owner = embedded.faucet()
    rng = np.random.default_rng(11)
    dep, W = _deploy(embedded, owner, d=40, l=2)
    agg = fresh_account(embedded, owner, 10**18)
    msgs = _submit(dep, owner, 0, random_unit_rows(rng, 3, 40), [2**32] * 3)
    for stalled in (1, 2):
        _, _, bad = _post(dep, agg, 0, W, msgs, corrupt=0)
        upheld, _ = dep.dispute(agg, 0, 0, W, bad, msgs)
        assert upheld and dep.posting() is None and dep.current_round() == 0
        # two bonds paid a round (the posting's and the dispute's), one and a half owed back
        assert dep.credit(agg.address) == stalled * (BOND + BOND // 2)
    dep.withdraw(agg)
    assert embedded.balance(dep.contract.address) == 2 * (BOND - BOND // 2)


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
    sel, W_new, _ = honest_aggregation(dep.rule, 0, W, msgs, 3)
    leaves = opt.model_leaves(W_new)
    mask = fp.selection_mask(sel)
    f = dep.contract
    first = mask & -mask  # one selected message
    cases = [((0, 3, mask, 0, leaves), 0, "the posting must carry the bond"),
             ((0, 2, 0b11, 0, leaves), BOND, "the round is still taking messages"),
             ((0, 4, mask, 0, leaves), BOND, "more messages than the round holds"),
             ((0, 3, 0b111, 0, leaves), BOND, "selection must name min"),
             ((0, 3, 0b1001, 0, leaves), BOND, "selection names a message that does not exist"),
             ((0, 3, mask, 0b1000, leaves), BOND, "selection names a message that does not exist"),
             ((0, 3, mask, first, leaves), BOND, "both selected and excluded"),
             ((0, 3, 0, 0b111, leaves), BOND, "every message is excluded"),
             ((0, 3, first, 0b111 ^ mask, leaves), BOND, "selection must name min"),  # 1 selected of 2 left
             ((0, 3, mask, 0, leaves + leaves), BOND, "one leaf per chunk"),
             ((1, 3, mask, 0, leaves), BOND, "wrong round")]
    for args, value, reason in cases:
        with pytest.raises(Reverted, match=reason):
            embedded.call_tx(node, f, "post", *args, value=value)
    dep.post(node, 0, 3, sel, W_new)
    with pytest.raises(Reverted, match="an aggregation is posted"):
        dep.post(node, 0, 3, sel, W_new)
    posting = dep.posting()
    # a forged message record (another norm) is refused, not counted against anyone
    forged = [OptMessage(m.sender, m.norm + 1, m.widths, m.data) for m in msgs]
    with pytest.raises(Reverted, match="record does not match"):
        dep.dispute(node, 0, 0, W, posting, forged)
    with pytest.raises(Reverted, match="bad model proof"):
        dep.dispute(node, 0, 0, [w + 1 for w in W], posting, msgs)
    with pytest.raises(Reverted, match="wrong length"):
        widths, data = opt.encode_message(random_unit_rows(rng, 1, 40)[0])
        dep.submit(fresh_account(embedded, owner), 0, 2**32, widths, data + b"\x00" * 32)


def test_a_malformed_submission_is_refused_with_its_reason(embedded):
    owner = embedded.faucet()
    rng = np.random.default_rng(11)
    d = 600  # three chunks, the last partial
    dep, _ = _deploy(embedded, owner, d=d, l=2)
    widths, data = opt.encode_message(random_unit_rows(rng, 1, d)[0])
    flat, data18 = opt.encode_message(random_unit_rows(rng, 1, d)[0], 18)

    def with_pair(c, low, high):
        return flat[:2 * c] + bytes([low, high]) + flat[2 * c + 2:]

    cases = [(widths[:-2], data, "wrong widths length"),
             (widths + b"\x01\x00", data, "wrong widths length"),
             (b"", data, "wrong widths length"),
             (with_pair(1, 0, 18), data18, "chunk widths out of range"),
             (with_pair(2, 33, 0), data18, "chunk widths out of range"),
             (with_pair(0, 17, 16), data18, "chunk widths out of range"),
             (widths, data[:-32], "the data is shorter than its widths"),
             (widths, data + b"\x00" * 32, "the data is longer than its widths"),
             (with_pair(0, 17, 0), data18, "wrong length"),  # 17 bits: 17 words, not 18
             (with_pair(0, 9, 9), data18 + b"\x00" * 32, "the data is longer")]  # 9 + 9 bits: 18 words
    for w, q, reason in cases:
        with pytest.raises(Reverted, match=reason):
            dep.submit(fresh_account(embedded, owner), 0, 2**32, w, q)
    # widths (9, 9) with 18 words is well formed: accepted, committed with its widths
    dep.submit(fresh_account(embedded, owner), 0, 2**32, with_pair(0, 9, 9), data18)
    dep.submit(fresh_account(embedded, owner), 0, 2**32, widths, data)
    assert [m.widths for m in dep.round_messages(0)] == [with_pair(0, 9, 9), widths]


def test_an_mnist_sized_submission_costs_its_calldata_floor_and_less_than_one_width(embedded):
    # d = 7,850 values of a DP-noised MNIST message's size (zigzag ~17 bits): the contract's
    # own work stays under the EIP-7623 floor, so a submission is priced by its calldata, and
    # the split encoding's calldata is cheaper than one width for the whole message
    owner = embedded.faucet()
    d = 7850
    dep, _ = _deploy(embedded, owner, d=d, l=55, messages=100)
    q = np.rint(np.random.default_rng(2).normal(scale=11835, size=d)).astype(np.int32)
    gas = {}
    for name, width in (("split", None), ("one width", opt.zigzag_width(q))):
        widths, data = opt.encode_message(q, width)
        calldata = bytes.fromhex(dep.contract.encode_abi("submit", args=[0, 2**32, widths, data])[2:])
        r = dep.submit(fresh_account(embedded, owner), 0, 2**32, widths, data)
        assert int(r["gasUsed"]) == 21000 + opt.floor_gas(calldata), name
        gas[name] = int(r["gasUsed"])
    assert gas["split"] < 0.97 * gas["one width"]


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


@pytest.mark.slow
def test_optimistic_mode_equals_full_mode_bit_for_bit_on_mnist(tmp_path):
    # MNIST logistic (d = 7,850: 31 chunks, most split in two planes), the paper's 100
    # holders, DP on, 2 rounds: about 80 s on the in-process EVM (pyrevm), most of it the full mode
    # (the full mode's computing node is funded for every chunk of its aggregation: 55
    # transactions here; funded for one, it ran out of gas at the second chunk)
    kw = dict(dataset="mnist", rounds=2, holders=100, seed=4)
    full = _run(tmp_path, "full", **kw)
    o = _run(tmp_path, "optimistic", **kw)
    a, b = np.load(tmp_path / "full" / "model.npy"), np.load(tmp_path / "optimistic" / "model.npy")
    assert a.shape == b.shape == (7850,) and a.dtype == b.dtype and a.tobytes() == b.tobytes()
    assert o["height"] == full["height"] == 2 and o["test_error"] == full["test_error"]
    assert o["incentives"]["conserved"] and o["optimistic"]["disputes_upheld"] == 0
    assert full["gas_per_round"] > 10.3 * o["gas_per_round"]


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
    # challenger took its own bond back and half the Byzantine node's, none for the liar;
    # the other half of each wrong posting's bond stays in the contract
    wrong = net.wrong_postings
    assert s["incentives"]["bonds_returned_wei"] == 3 * BOND + wrong * (BOND + BOND // 2)
    assert s["incentives"]["burnt_wei"] == wrong * (BOND - BOND // 2)


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
    for forced in (opt.MAX_WIDTH, (16, 16), (1, 31)):  # 32 bits in one plane or two
        msgs = [OptMessage(bytes([k + 1]) * 20, 1 << 20, *opt.encode_message(rows[k], forced)) for k in range(keep)]
        for c in range(opt.chunks_for(d)):  # full chunks, and the last, partial, no larger
            assert len(opt.dispute_records(msgs, list(range(keep)), c, d)) <= opt.max_dispute_bytes(keep, depth)
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
