"""The contract against the Python rule, on the in-process EVM.

The contract computes the l-nearest selection itself and accepts an aggregation
only when the caller's claimed selection equals it, so an accepted claim of the
Python rule's selection shows the two agree; the stored model is then compared
with the fixed-point twin, and through it with the native float update.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from learningchain.ethereum import fixedpoint as fp
from learningchain.ethereum.chain import Reverted
from learningchain.protocol.quantize import quantize_unit
from web3.logs import DISCARD

from .helpers import deploy, fresh_account, random_unit_rows, submit_all

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "lnearest.json").read_text())["cases"]


def aggregate_round(dep, sender, msgs, rnd):
    """Claim the Python rule's selection for the round; returns it."""
    q = np.stack([fp.unpack_q(m[2], dep.rule.dim) for m in msgs])
    keys = [fp.tie_key(rnd, m[0]) for m in msgs]
    selection = dep.rule.select(q, keys)
    accepted, _, receipts = dep.aggregate(sender, msgs, selection)
    assert accepted
    events = dep.contract.events.Aggregated().process_receipt(receipts[-1], errors=DISCARD)
    assert fp.mask_selection(events[0]["args"]["selection"]) == tuple(selection)
    return selection, q


# -- the shared vectors -------------------------------------------------------------------

def vector_case_on(chain, case):
    """Deploy with the vector's parameters and model, submit its messages from its own
    test accounts, aggregate with the expected selection; return the deployment."""
    from learningchain.ethereum.chain import Account

    faucet = chain.faucet()
    d = len(case["model"])
    dep = deploy(chain, faucet, d=d, l=case["l"], m=case["batch_size"], lr=case["lr"], lam=case["lam"],
                 w0=case["model"], bits=case["quant_bits"], messages=len(case["messages"]))
    assert (dep.rule.lr, dep.rule.lam) == (case["lr_fixed"], case["lam_fixed"])
    assert dep.fixed_model() == case["model_fixed"]
    accounts = [Account.from_secret(m["secret"]) for m in case["messages"]]
    for acct, m in zip(accounts, case["messages"]):
        assert acct.address.lower() == m["sender"]
        chain.transfer(faucet, acct.address, 10**17)
    msgs = submit_all(dep, faucet, case["round"], [m["q"] for m in case["messages"]],
                      [m["norm_fixed"] for m in case["messages"]], accounts=accounts)
    accepted, _, receipts = dep.aggregate(faucet, msgs, tuple(case["expected"]["selection"]))
    assert accepted
    ev = dep.contract.events.Aggregated().process_receipt(receipts[-1], errors=DISCARD)[0]["args"]
    assert list(fp.mask_selection(ev["selection"])) == case["expected"]["selection"]
    return dep


@pytest.mark.parametrize("case", VECTORS, ids=[c["name"] for c in VECTORS])
def test_contract_gives_the_vector_selection_and_fixed_point_model(embedded, case):
    dep = vector_case_on(embedded, case)
    assert dep.fixed_model() == case["expected"]["model_fixed"]
    # the twin agrees, and the fixed-point model is the float one to within its roundings
    q = np.array([m["q"] for m in case["messages"]])
    norms = [m["norm_fixed"] for m in case["messages"]]
    assert dep.rule.update(case["model_fixed"], q, norms, case["expected"]["selection"]) == dep.fixed_model()
    assert np.allclose(fp.decode_model(dep.fixed_model()), case["expected"]["model_float"], rtol=0, atol=1e-8)


def test_contract_gives_the_vector_results_on_anvil(anvil):
    for case in VECTORS:
        assert vector_case_on(anvil, case).fixed_model() == case["expected"]["model_fixed"]


def test_contract_breaks_ties_by_its_key_like_the_python_rule(embedded):
    """Three identical vectors straddle the cut: the contract keeps the lower keys."""
    faucet = embedded.faucet()
    rng = np.random.default_rng(5)
    d = 9
    rows = random_unit_rows(rng, 4, d)
    qs = [rows[0], rows[0], rows[0], -rows[1], rows[2]]
    dep = deploy(embedded, faucet, d=d, l=2, messages=8)
    msgs = submit_all(dep, faucet, 0, qs, [2**32] * len(qs))
    keys = [fp.tie_key(0, m[0]) for m in msgs]
    selection, _ = aggregate_round(dep, faucet, msgs, 0)
    tied = sorted(range(3), key=lambda i: keys[i])
    assert set(selection) == set(tied[:2])


# -- random inputs ------------------------------------------------------------------------

@st.composite
def rounds_of_messages(draw):
    d = draw(st.integers(1, 40))
    k = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    spread = draw(st.sampled_from([0.05, 0.7, 3.0]))
    rows = list(random_unit_rows(rng, k, d, spread=spread)) if d > 1 else \
        [np.array([rng.choice([-1, 1]) * 2**20], dtype=np.int32) for _ in range(k)]
    n_copies = draw(st.integers(0, max(0, k - 1)))
    for j in range(n_copies):  # exact duplicates from other senders: ties
        rows[k - 1 - j] = rows[0].copy()
    n_flips = draw(st.integers(0, k // 2))
    for j in range(n_flips):
        rows[j] = -rows[j]
    norms = [int(x) for x in rng.integers(1, 2**40, size=k)]
    l = draw(st.integers(1, k + 2))
    m = draw(st.integers(1, 600))
    lr = draw(st.sampled_from([0.01, 0.1, 0.5, 1.0, 3.7]))
    lam = draw(st.sampled_from([0.0, 0.001, 0.3]))
    w0 = rng.normal(size=d) * draw(st.sampled_from([0.01, 1.0, 100.0]))
    return d, rows, norms, l, m, lr, lam, w0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(rounds_of_messages())
def test_contract_matches_the_python_rule_on_random_rounds(embedded, drawn):
    d, rows, norms, l, m, lr, lam, w0 = drawn
    faucet = embedded.faucet()
    dep = deploy(embedded, faucet, d=d, l=l, m=m, lr=lr, lam=lam, w0=w0, messages=len(rows))
    W0 = dep.fixed_model()
    assert W0 == fp.encode_model(w0)
    msgs = submit_all(dep, faucet, 0, rows, norms)
    selection, q = aggregate_round(dep, faucet, msgs, 0)
    assert dep.fixed_model() == dep.rule.update(W0, q, norms, selection)
    assert dep.current_round() == 1
    # and the fixed-point model stays within rounding of the native float update
    from learningchain.protocol.aggregation import Batch, weighted_unit_sum

    batch = Batch(q, np.array([s / 2**32 for s in norms]), tuple(range(len(rows))), 20)
    g = weighted_unit_sum(batch, selection) / float(len(selection) * m)
    native = w0 - fp.decode_model(fp.encode_model([lr]))[0] * 0 - lr * (g + lam * w0)
    lr_q, lam_q = fp.encode_rate(lr) / 2**32, fp.encode_rate(lam) / 2**32
    twin_float = w0 - lr_q * (g + lam_q * w0)
    scale = 1 + np.abs(native)
    assert np.all(np.abs(fp.decode_model(dep.fixed_model()) - twin_float) <= 1e-9 * scale)


def test_a_wrong_claim_is_refused_with_the_reason(embedded):
    faucet = embedded.faucet()
    rng = np.random.default_rng(3)
    dep = deploy(embedded, faucet, d=12, l=3, messages=6)
    rows = random_unit_rows(rng, 6, 12)
    msgs = submit_all(dep, faucet, 0, rows, [2**32] * 6)
    keys = [fp.tie_key(0, mm[0]) for mm in msgs]
    right = dep.rule.select(rows, keys)
    wrong = tuple(sorted(set(range(6)) - set(right)))[:3]
    with pytest.raises(Reverted, match="selection is not the l-nearest"):
        dep.aggregate(faucet, msgs, wrong)
    with pytest.raises(Reverted, match="claim names a message that does not exist"):
        dep.aggregate(faucet, msgs, (0, 7))
    assert dep.current_round() == 0
    aggregate_round(dep, faucet, msgs, 0)


# -- aggregation in several transactions ---------------------------------------------------

def test_chunked_aggregation_gives_the_same_model_as_one_transaction(embedded):
    faucet = embedded.faucet()
    rng = np.random.default_rng(11)
    d, k = 45, 7
    rows = random_unit_rows(rng, k, d)
    norms = [int(x) for x in rng.integers(2**30, 2**36, size=k)]
    w0 = rng.normal(size=d)
    one = deploy(embedded, faucet, d=d, l=4, m=9, lr=0.3, lam=0.01, w0=w0, messages=k)
    many = deploy(embedded, faucet, d=d, l=4, m=9, lr=0.3, lam=0.01, w0=w0, messages=k + 1, chunk_words=2)
    assert one.cparams.chunks == 1 and many.cparams.chunks == 3
    accounts = [fresh_account(embedded, faucet) for _ in range(k)]
    msgs1 = submit_all(one, faucet, 0, rows, norms, accounts=accounts)
    msgs2 = submit_all(many, faucet, 0, rows, norms, accounts=accounts)
    sel1, _ = aggregate_round(one, faucet, msgs1, 0)
    # between chunks the old model is still the current one
    data0 = fp.aggregation_data(msgs2, 0, 2)
    mask = fp.selection_mask(sel1)
    _, salt = many.commit(faucet, mask)  # the first chunk reveals its sender's commitment
    embedded.call_tx(faucet, many.contract, "aggregate", 0, mask, data0, salt)
    assert many.fixed_model() == fp.encode_model(w0) and many.current_round() == 0
    with pytest.raises(Reverted, match="chunk out of order"):
        embedded.call_tx(faucet, many.contract, "aggregate", 2, mask, fp.aggregation_data(msgs2, 2, 2))
    # anyone may continue the attempt under its claim; a submission meanwhile is taken
    # but not aggregated (the first chunk fixed the round's message set)
    other = fresh_account(embedded, faucet)
    late = fresh_account(embedded, faucet)
    many.submit(late, 0, 2**32, fp.pack_q(rows[0]))
    assert many.contract.functions.count().call() == k + 1
    embedded.call_tx(other, many.contract, "aggregate", 1, mask, fp.aggregation_data(msgs2, 1, 2))
    embedded.call_tx(faucet, many.contract, "aggregate", 2, mask, fp.aggregation_data(msgs2, 2, 2))
    assert many.current_round() == 1
    assert many.fixed_model() == one.fixed_model()


def test_an_aggregation_call_of_the_largest_size_goes_through(anvil):
    """64 messages, each chunk as long as a 64 KiB call allows: 64 * (2 + 30) words
    (on anvil: the in-process EVM takes most of a minute over it)."""
    from learningchain.ethereum.contract import MAX_CALL_BYTES, max_chunk_words

    embedded = anvil
    faucet = embedded.faucet()
    rng = np.random.default_rng(13)
    k = 64
    cw = max_chunk_words(k)
    d = 8 * (cw + 1)  # two chunks: the first full, the second one word
    rows = random_unit_rows(rng, k, d)
    dep = deploy(embedded, faucet, d=d, l=32, messages=k)
    assert dep.cparams.chunk_words == cw and dep.cparams.chunks == 2
    msgs = submit_all(dep, faucet, 0, rows, [2**32] * k)
    assert len(fp.aggregation_data(msgs, 0, cw)) == MAX_CALL_BYTES
    W0 = dep.fixed_model()
    selection, q = aggregate_round(dep, faucet, msgs, 0)
    assert dep.fixed_model() == dep.rule.update(W0, q, [2**32] * k, selection)


def test_a_wrong_claim_over_several_chunks_is_rejected_and_the_round_stays_open(embedded):
    faucet = embedded.faucet()
    rng = np.random.default_rng(12)
    d, k = 30, 5
    rows = random_unit_rows(rng, k, d)
    dep = deploy(embedded, faucet, d=d, l=2, messages=k, chunk_words=2)
    msgs = submit_all(dep, faucet, 0, rows, [2**32] * k)
    keys = [fp.tie_key(0, mm[0]) for mm in msgs]
    right = dep.rule.select(rows, keys)
    wrong = tuple(sorted(set(range(k)) - set(right)))[:2]
    W0 = dep.fixed_model()
    accepted, _, receipts = dep.aggregate(faucet, msgs, wrong)
    assert not accepted
    ev = dep.contract.events.AggregationRejected().process_receipt(receipts[-1], errors=DISCARD)[0]["args"]
    assert fp.mask_selection(ev["claimed"]) == wrong
    assert dep.current_round() == 0 and dep.fixed_model() == W0
    aggregate_round(dep, faucet, msgs, 0)
    assert dep.current_round() == 1 and dep.fixed_model() != W0


def test_the_last_chunk_of_a_wrong_claim_costs_its_finisher_about_what_an_accepted_one_does():
    # Anyone may finish a running attempt, so whoever sends its last chunk pays for that chunk,
    # not the claimant. The rejection path re-ranked every message (O(n^2)): at n = 256 the
    # honest finisher's last chunk needed 30.6M gas, over a block and the 2^24 a transaction
    # may use (EIP-7825), so one wrong first chunk stalled the round.
    from learningchain.ethereum.chain import TX_GAS_CAP, Chain

    chain = Chain.embedded(gas_limit=10**9)
    faucet = chain.faucet()
    k, d, bond = 256, 96, 10**15
    rows = random_unit_rows(np.random.default_rng(1), k, d)
    chain.fixed_gas = 8_000_000
    dep = deploy(chain, faucet, d=d, l=k // 2, messages=k, min_messages=k, quorum=k, bond=bond)
    chain.fixed_gas = 3_000_000
    msgs = submit_all(dep, faucet, 0, rows, [2**32] * k)
    right = dep.rule.select(rows, [fp.tie_key(0, m[0]) for m in msgs])
    wrong = tuple(sorted(set(range(k)) - set(right)))[:len(right)]
    assert dep.cparams.chunks == 2
    chain.fixed_gas = 60_000_000  # the gas each transaction may use here: measured, not capped
    attacker, honest = fresh_account(chain, faucet, 10**19), fresh_account(chain, faucet, 10**19)
    _, salt = dep.commit(attacker, fp.selection_mask(wrong))
    chain.call_tx(attacker, dep.contract, "aggregate", 0, fp.selection_mask(wrong),
                  fp.aggregation_data(msgs, 0, dep.cparams.chunk_words), salt, value=bond)
    r = chain.call_tx(honest, dep.contract, "aggregate", 1, fp.selection_mask(wrong),
                      fp.aggregation_data(msgs, 1, dep.cparams.chunk_words))
    ev = dep.contract.events.AggregationRejected().process_receipt(r, errors=DISCARD)[0]["args"]
    assert fp.mask_selection(ev["claimed"]) == wrong and dep.current_round() == 0
    rejected = int(r["gasUsed"])
    accepted, _, receipts = dep.aggregate(honest, msgs, right)
    assert accepted and dep.current_round() == 1
    # of the size of an accepted last chunk (5.7M against 5.4M here; the re-ranking took 30.6M)
    assert rejected < TX_GAS_CAP and rejected <= 1.2 * int(receipts[-1]["gasUsed"])


def test_the_run_takes_no_message_or_aggregation_past_its_last_round(embedded):
    faucet = embedded.faucet()
    rng = np.random.default_rng(15)
    dep = deploy(embedded, faucet, d=5, l=1, messages=3, rounds=1)
    msgs = submit_all(dep, faucet, 0, random_unit_rows(rng, 2, 5), [2**32] * 2)
    aggregate_round(dep, faucet, msgs, 0)
    with pytest.raises(Reverted, match="the run is over"):
        submit_all(dep, faucet, 1, random_unit_rows(rng, 1, 5), [2**32])
    with pytest.raises(Reverted, match="the run is over"):
        embedded.call_tx(faucet, dep.contract, "aggregate", 0, 0, b"")


def test_a_round_short_of_its_quorum_closes_only_after_the_window(embedded):
    faucet = embedded.faucet()
    rng = np.random.default_rng(16)
    dep = deploy(embedded, faucet, d=6, l=1, messages=4, quorum=3, window=10)
    msgs = submit_all(dep, faucet, 0, random_unit_rows(rng, 2, 6), [2**32] * 2)
    selection = dep.rule.select(np.stack([fp.unpack_q(m[2], 6) for m in msgs]), [fp.tie_key(0, m[0]) for m in msgs])
    with pytest.raises(Reverted, match="the round is still taking messages"):
        dep.aggregate(faucet, msgs, selection)
    # the commitment takes a block of its own: the reveal runs two blocks later
    embedded.wait_until_block(dep.round_opened() + 7)
    with pytest.raises(Reverted, match="the round is still taking messages"):
        dep.aggregate(faucet, msgs, selection)
    embedded.wait_until_block(dep.round_opened() + 10)
    assert dep.aggregate(faucet, msgs, selection)[0]
    # round 1 reaches its quorum: it closes at once
    msgs = submit_all(dep, faucet, 1, random_unit_rows(rng, 3, 6), [2**32] * 3)
    aggregate_round(dep, faucet, msgs, 1)
    assert dep.current_round() == 2


# -- bad submissions revert with a reason ---------------------------------------------------

@pytest.fixture(scope="module")
def small(embedded):
    faucet = embedded.faucet()
    dep = deploy(embedded, faucet, d=10, l=2, messages=4, min_messages=2)
    return dep, faucet


def test_bad_submissions_revert_with_their_reason(embedded, small):
    dep, faucet = small
    rng = np.random.default_rng(0)
    q = random_unit_rows(rng, 1, 10)[0]
    good = fp.pack_q(q)
    acct = fresh_account(embedded, faucet)
    cases = [
        ((1, 2**32, good), "wrong round"),
        ((0, 2**32, good[:-32]), "wrong length"),
        ((0, 2**32, good + b"\0" * 32), "wrong length"),
        ((0, 0, good), "zero norm"),
        ((0, 2**64, good), "norm too large"),
        ((0, 2**32, fp.pack_q(q // 2)), "not a unit vector"),
        ((0, 2**32, fp.pack_q(np.zeros(10, dtype=np.int32))), "not a unit vector"),
    ]
    bad_padding = bytearray(good)
    bad_padding[-32:-28] = b"\0\0\0\0"  # lane 7 of the last word lies past d = 10
    cases.append(((0, 2**32, bytes(bad_padding)), "padding lanes must encode zero"))
    for args, reason in cases:
        with pytest.raises(Reverted, match=reason):
            dep.submit(acct, *args)
    dep.submit(acct, 0, 2**32, good)
    with pytest.raises(Reverted, match="duplicate sender"):
        dep.submit(acct, 0, 2**32, fp.pack_q(random_unit_rows(rng, 1, 10)[0]))
    with pytest.raises(Reverted, match="too few messages"):
        dep.aggregate(faucet, dep.round_messages(0), (0,))
    assert int(dep.contract.functions.count().call()) == 1


def test_a_full_round_refuses_more_messages(embedded):
    faucet = embedded.faucet()
    rng = np.random.default_rng(1)
    dep = deploy(embedded, faucet, d=3, l=1, messages=2)
    submit_all(dep, faucet, 0, random_unit_rows(rng, 2, 3), [2**32] * 2)
    with pytest.raises(Reverted, match="the round is full"):
        submit_all(dep, faucet, 0, random_unit_rows(rng, 1, 3), [2**32])


def test_messages_for_a_closed_round_are_refused(embedded):
    faucet = embedded.faucet()
    rng = np.random.default_rng(2)
    dep = deploy(embedded, faucet, d=5, l=1, messages=3)
    msgs = submit_all(dep, faucet, 0, random_unit_rows(rng, 2, 5), [2**32] * 2)
    aggregate_round(dep, faucet, msgs, 0)
    with pytest.raises(Reverted, match="wrong round"):
        submit_all(dep, faucet, 0, random_unit_rows(rng, 1, 5), [2**32])
    with pytest.raises(Reverted, match="data does not match the submitted messages"):
        fake = [(msgs[0][0], msgs[0][1], fp.pack_q(random_unit_rows(rng, 1, 5)[0]))]
        submit_all(dep, faucet, 1, [fp.unpack_q(msgs[1][2], 5)], [2**32])
        dep.aggregate(faucet, fake, (0,))


def test_only_the_owner_prepares_the_run(embedded):
    from learningchain.ethereum.network import Deployment

    faucet = embedded.faucet()
    dep = deploy(embedded, faucet, d=4, l=1)
    other = fresh_account(embedded, faucet)
    with pytest.raises(Reverted, match="the run is already open"):
        embedded.call_tx(faucet, dep.contract, "load_model", 0, [0, 0, 0, 0])
    with pytest.raises(Reverted, match="only the owner"):
        embedded.call_tx(other, dep.contract, "open_run")
    # a contract whose model is not loaded cannot open
    art = dep.artifact
    addr = embedded.deploy(faucet, art["abi"], art["bytecode"], dep.cparams.constructor_args())
    raw = Deployment(embedded, addr, dep.cparams)
    with pytest.raises(Reverted, match="the initial model is not fully loaded"):
        embedded.call_tx(faucet, raw.contract, "open_run")
    with pytest.raises(Reverted, match="load the model in order"):
        embedded.call_tx(faucet, raw.contract, "load_model", 2, [1, 2])
    with pytest.raises(Reverted, match="the run is not open"):
        raw.submit(other, 0, 2**32, fp.pack_q(quantize_unit(np.ones(4) / 2, 20)))


@pytest.mark.parametrize("args,reason", [
    (dict(dim=0), "dim out of range"),
    (dict(dim=8193), "dim out of range"),
    (dict(l=0), "l must be at least 1"),
    (dict(lr=0), "lr out of range"),
    (dict(max_messages=257), "max_messages out of range"),
    (dict(chunk_words=3), "chunk_words out of range"),
    (dict(quorum=5), "quorum out of range"),
    (dict(min_messages=2, quorum=1), "quorum out of range"),
])
def test_bad_deployments_are_refused(embedded, args, reason):
    from learningchain.ethereum.contract import load_artifact

    base = dict(dim=10, quant_bits=20, norm_tol_bits=10, l=2, batch_size=1, lr=2**31, lam=0, min_messages=1,
                max_messages=4, chunk_words=2, rounds=5, reward=0, quorum=1, window=0, bond=0)
    base.update(args)
    art = load_artifact()
    with pytest.raises(Reverted, match=reason):
        embedded.deploy(embedded.faucet(), art["abi"], art["bytecode"], list(base.values()))


# -- a client that knows only the ABI and the address ---------------------------------------

def test_a_plain_web3_client_reads_the_model_and_round(embedded, tmp_path):
    faucet = embedded.faucet()
    rng = np.random.default_rng(4)
    w0 = rng.normal(size=13)
    dep = deploy(embedded, faucet, d=13, l=2, w0=w0, lr=0.2)
    msgs = submit_all(dep, faucet, 0, random_unit_rows(rng, 3, 13), [2**33] * 3)
    aggregate_round(dep, faucet, msgs, 0)
    (tmp_path / "contract.abi.json").write_text(json.dumps(dep.abi))
    address = dep.address

    # only web3.py from here on
    abi = json.loads((tmp_path / "contract.abi.json").read_text())
    c = embedded.w3.eth.contract(address=address, abi=abi)
    rnd = c.functions.current_round().call()
    scale = 2 ** c.functions.MODEL_BITS().call()
    model = [v / scale for v in c.functions.get_model().call()]
    assert rnd == 1
    assert np.array_equal(np.array(model), fp.decode_model(dep.fixed_model()))
    assert model[0] == c.functions.model_at(0).call() / scale
    assert np.max(np.abs(np.array(model) - w0)) > 0  # the round moved the model
