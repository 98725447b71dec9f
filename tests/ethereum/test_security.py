"""The security findings of the Ethereum backend (issue 17), each against its fix.

* an unfinished multi-chunk aggregation cannot lock a round: anyone continues it
  under its claim, submissions are never refused for it, and a wrong or abandoned
  attempt loses its bond;
* a submission that lands after the quorum does not break a pending aggregation;
* parameters whose aggregation could exceed 2^24 gas a transaction are refused;
* rewards nobody claims are swept to the refund pool after a deadline.
"""

import numpy as np
import pytest

from learningchain.ethereum import fixedpoint as fp
from learningchain.ethereum.chain import Reverted
from learningchain.ethereum.contract import ContractParams
from learningchain.ethereum.fixedpoint import FixedRule

from .helpers import deploy, fresh_account, random_unit_rows, submit_all

BOND = 10**16
ZERO_ADDRESS = "0x" + "00" * 20


def _round(chain, faucet, *, d=30, k=5, seed=14, bond=BOND, chunk_words=2, **kw):
    rng = np.random.default_rng(seed)
    rows = random_unit_rows(rng, k, d)
    dep = deploy(chain, faucet, d=d, l=2, messages=k + 2, chunk_words=chunk_words, bond=bond, **kw)
    msgs = submit_all(dep, faucet, 0, rows, [2**32] * k)
    right = dep.rule.select(rows, [fp.tie_key(0, m[0]) for m in msgs])
    return dep, rows, msgs, tuple(right)


def _first_chunk(chain, dep, sender, msgs, selection, value):
    data = fp.aggregation_data(msgs, 0, dep.cparams.chunk_words)
    mask = fp.selection_mask(selection)
    _, salt = dep.commit(sender, mask)  # the first chunk reveals its sender's commitment
    chain.call_tx(sender, dep.contract, "aggregate", 0, mask, data, salt, value=value)


def test_a_first_chunk_without_its_bond_is_refused(embedded):
    faucet = embedded.faucet()
    dep, _, msgs, right = _round(embedded, faucet)
    with pytest.raises(Reverted, match="the first chunk must carry the bond"):
        _first_chunk(embedded, dep, faucet, msgs, right, 0)
    one, _, msgs1, right1 = _round(embedded, faucet, chunk_words=4)
    assert one.cparams.chunks == 1
    with pytest.raises(Reverted, match="a one-transaction aggregation takes no bond"):
        _first_chunk(embedded, one, faucet, msgs1, right1, BOND)


def test_the_lock_attack_no_longer_stalls_a_round(embedded):
    """Chunk 0 sent and abandoned: submissions go on, nobody can replace the attempt,
    and any computing node finishes it at once (no waiting for it to go stale)."""
    faucet = embedded.faucet()
    dep, rows, msgs, right = _round(embedded, faucet)
    c = dep.contract.functions
    attacker = fresh_account(embedded, faucet, 10**18)
    _first_chunk(embedded, dep, attacker, msgs, right, BOND)
    started = embedded.block_number()
    assert dep.attempt() == (1, fp.selection_mask(right), len(msgs))
    # submissions are not refused while the attempt runs
    dep.submit(fresh_account(embedded, faucet), 0, 2**32, fp.pack_q(rows[0]))
    # a second attacker cannot restart it
    other = fresh_account(embedded, faucet, 10**18)
    with pytest.raises(Reverted, match="aggregation in progress: continue it"):
        _first_chunk(embedded, dep, other, msgs, right, BOND)
    node = fresh_account(embedded, faucet, 10**18)
    before = embedded.balance(attacker.address)
    nxt, claim, n = dep.attempt()
    accepted, _, _ = dep.aggregate(node, msgs[:n], fp.mask_selection(claim), start=nxt)
    assert accepted and dep.current_round() == 1
    assert embedded.block_number() < started + dep.cparams.chunks + int(c.STALE_BLOCKS().call())
    # neither the starter that left the work to others nor the account that finished it is paid
    assert c.aggregator_of(0).call() == ZERO_ADDRESS
    assert embedded.balance(attacker.address) == before + BOND  # a right claim gets its bond back


def test_a_wrong_claim_lock_is_finished_by_anyone_and_loses_its_bond(embedded):
    faucet = embedded.faucet()
    dep, _, msgs, right = _round(embedded, faucet, seed=15)
    wrong = tuple(sorted(set(range(len(msgs))) - set(right)))[:2]
    attacker = fresh_account(embedded, faucet, 10**18)
    _first_chunk(embedded, dep, attacker, msgs, wrong, BOND)
    node = fresh_account(embedded, faucet, 10**18)
    nxt, claim, n = dep.attempt()
    accepted, _, _ = dep.aggregate(node, msgs[:n], fp.mask_selection(claim), start=nxt)
    assert not accepted and dep.current_round() == 0 and dep.attempt() is None
    assert dep.contract.functions.forfeited().call() == BOND
    assert dep.aggregate(node, msgs, right)[0] and dep.current_round() == 1


def test_a_stale_attempt_is_replaced_and_its_bond_forfeited(embedded):
    faucet = embedded.faucet()
    dep, _, msgs, right = _round(embedded, faucet, seed=16)
    attacker = fresh_account(embedded, faucet, 10**18)
    _first_chunk(embedded, dep, attacker, msgs, right, BOND)
    stale = embedded.block_number() + dep.cparams.chunks + int(dep.contract.functions.STALE_BLOCKS().call())
    embedded.wait_until_block(stale + 1)
    node = fresh_account(embedded, faucet, 10**18)
    assert dep.aggregate(node, msgs, right)[0]
    assert dep.contract.functions.forfeited().call() == BOND


def test_a_late_submission_does_not_break_a_pending_aggregation(embedded):
    """The aggregator's data covers the round's first n >= quorum messages; a message that
    lands before its transaction does (up to max_messages - quorum of them) is left out."""
    faucet = embedded.faucet()
    rng = np.random.default_rng(21)
    rows = random_unit_rows(rng, 6, 13)
    dep = deploy(embedded, faucet, d=13, l=2, messages=6, min_messages=2, quorum=4)
    msgs = submit_all(dep, faucet, 0, rows[:4], [2**32] * 4)
    selection = dep.rule.select(rows[:4], [fp.tie_key(0, m[0]) for m in msgs])
    submit_all(dep, faucet, 0, rows[4:], [2**32] * 2)  # after quorum, before the aggregation
    W0 = dep.fixed_model()
    assert dep.aggregate(faucet, msgs, selection)[0]
    assert dep.fixed_model() == dep.rule.update(W0, rows[:4], [2**32] * 4, selection)
    # fewer than the quorum is still refused, and so is more than the round holds
    dep2 = deploy(embedded, faucet, d=13, l=2, messages=6, min_messages=2, quorum=4, window=1000)
    msgs2 = submit_all(dep2, faucet, 0, rows[:4], [2**32] * 4)
    sel3 = dep2.rule.select(rows[:3], [fp.tie_key(0, m[0]) for m in msgs2[:3]])
    with pytest.raises(Reverted, match="the round is still taking messages"):
        dep2.aggregate(faucet, msgs2[:3], sel3)
    with pytest.raises(Reverted, match="more messages than the round holds"):
        dep2.aggregate(faucet, msgs2 + msgs[:1], selection)


def test_parameters_whose_aggregation_cannot_fit_2_24_gas_are_refused(embedded):
    """One message of d = 8,192 in one chunk would update 8,192 coordinates in one
    transaction (over 30M gas): the constructor refuses it."""
    from learningchain.ethereum.contract import load_artifact

    faucet = embedded.faucet()
    rule = FixedRule(8192, 20, 10, 1, 1, fp.encode_rate(0.5), 0)
    art = load_artifact()
    for cw in (1024, 97):
        cparams = ContractParams(rule, 1, 1, cw, 10, 0, None, 0, 0)
        with pytest.raises(Reverted, match="could exceed 2\\*\\*24 gas"):
            embedded.deploy(faucet, art["abi"], art["bytecode"], cparams.constructor_args())
    ok = ContractParams(rule, 1, 1, 96, 10, 0, None, 0, 0)
    assert embedded.deploy(faucet, art["abi"], art["bytecode"], ok.constructor_args())


@pytest.mark.parametrize("which", ["embedded", "anvil"])
def test_unclaimed_rewards_are_swept_to_the_refund_pool(which, request):
    chain = request.getfixturevalue(which)
    faucet = chain.faucet()
    reward = 10**15
    dep = deploy(chain, faucet, d=6, l=2, messages=4, rounds=2, reward=reward)
    holders = [fresh_account(chain, faucet, 10**17) for _ in range(2)]
    for h, amount in zip(holders, (2 * reward, 3 * reward)):
        dep.deposit(h, amount)
    rng = np.random.default_rng(5)
    node = fresh_account(chain, faucet, 10**17)
    for t in range(2):
        rows = random_unit_rows(rng, 3, 6)
        msgs = submit_all(dep, faucet, t, rows, [2**32] * 3)
        assert dep.aggregate(node, msgs, dep.rule.select(rows, [fp.tie_key(t, m[0]) for m in msgs]))[0]
    dep.claim_reward(node, 0)  # round 1's reward is never claimed
    dep.finish(faucet)
    c = dep.contract.functions
    for h in holders:
        dep.withdraw(h)
    assert c.refunded().call() == 5 * reward - 2 * reward
    with pytest.raises(Reverted, match="rewards may still be claimed"):
        chain.call_tx(faucet, dep.contract, "sweep")
    chain.travel_to(c.finished_at().call() + c.CLAIM_SECONDS().call() + 1)
    with pytest.raises(Reverted, match="the claim deadline has passed"):
        dep.claim_reward(node, 1)
    chain.call_tx(holders[0], dep.contract, "sweep")
    with pytest.raises(Reverted, match="nothing to sweep"):
        chain.call_tx(faucet, dep.contract, "sweep")
    got = []
    for h in holders:
        assert not c.withdrawn(h.address).call()
        before = chain.balance(h.address)
        r = dep.withdraw(h)
        got.append(chain.balance(h.address) - before + int(r["gasUsed"]) * int(r["effectiveGasPrice"]))
        assert c.withdrawn(h.address).call()
    assert sum(got) == reward and got[0] == reward * 2 // 5
    assert chain.balance(dep.address) == 0


def _run_accounts(chain, summary):
    """The holders' wallets (Deposited) and the (sender, norm, q) of every message of a run."""
    from learningchain.ethereum.contract import load_artifact

    c = chain.w3.eth.contract(address=summary["contract_address"], abi=load_artifact()["abi"])
    wallets = {e["args"]["holder"] for e in c.events.Deposited.get_logs(from_block=0)}
    msgs = [(e["args"]["sender"], int(e["args"]["norm"]), bytes(e["args"]["q"]))
            for e in c.events.Submitted.get_logs(from_block=0)]
    return wallets, msgs


def test_on_a_reachable_chain_keys_and_noise_do_not_come_from_the_seed(tmp_path, anvil):
    """Two runs with the same seed on the same node share no key and no noise draw, and no
    key is the one the seed and the public contract address would give."""
    from learningchain.config import TrainConfig
    from learningchain.ethereum.network import new_account
    from learningchain.ethereum.network import KEYS_KEYSTORE
    from learningchain.experiments.train import run_training_ethereum
    from learningchain.privacy.secure import GENERATOR_SECURE

    runs = []
    for i in range(2):
        cfg = TrainConfig(out=str(tmp_path / str(i)), force=True, backend="ethereum", dataset="breast-cancer",
                          rounds=2, holders=3, miners=1, epsilon=1.0, seed=0, progress=False)
        s = run_training_ethereum(cfg, chain=anvil)
        assert s["key_generator"] == KEYS_KEYSTORE and s["privacy"]["generator"] == GENERATOR_SECURE
        wallets, msgs = _run_accounts(anvil, s)
        assert len(wallets) == 3 and len(msgs) == 6
        salt = int(s["contract_address"], 16) % 2**63
        rng5, rng6 = np.random.default_rng([0, 5, salt]), np.random.default_rng([0, 6, salt])
        assert not wallets & {new_account(rng5).address for _ in range(3)}
        assert not {m[0] for m in msgs} & {new_account(rng6).address for _ in range(6)}
        runs.append((wallets, msgs))
    (w0, m0), (w1, m1) = runs
    assert not w0 & w1
    assert not {m[0] for m in m0} & {m[0] for m in m1}
    assert not {m[1] for m in m0} & {m[1] for m in m1}  # the noised norms
    assert not {m[2] for m in m0} & {m[2] for m in m1}  # the noised unit vectors


def test_a_seeded_generator_is_refused_on_a_reachable_chain(tmp_path, anvil):
    from learningchain.config import TrainConfig
    from learningchain.errors import ConfigError
    from learningchain.experiments.train import run_training_ethereum

    cfg = TrainConfig(out=str(tmp_path), force=True, backend="ethereum", dataset="breast-cancer", rounds=1,
                      holders=3, secure_rng=False, progress=False)
    with pytest.raises(ConfigError, match="secure_rng = false is for the in-process EVM only"):
        run_training_ethereum(cfg, chain=anvil)


def test_the_chain_id_is_pinned_and_fees_are_capped(anvil_url, monkeypatch):
    from learningchain.errors import ConfigError
    from learningchain.ethereum import chain as chain_mod
    from learningchain.ethereum.chain import GWEI, Chain, EthereumError

    with pytest.raises(ConfigError, match="on chain 31337, not the pinned chain_id 1"):
        Chain.connect(anvil_url, chain_id=1)
    pinned = Chain.connect(anvil_url, chain_id=31337)
    assert pinned.chain_id == 31337
    monkeypatch.setattr(chain_mod, "DEV_CHAIN_IDS", frozenset())
    with pytest.raises(ConfigError, match="pin it with --chain-id 31337"):
        Chain.connect(anvil_url)
    base = int(pinned.w3.eth.get_block("latest")["baseFeePerGas"])
    capped = Chain.connect(anvil_url, chain_id=31337, max_fee_gwei=(base + GWEI // 10) / GWEI,
                           priority_fee_gwei=0.1)
    fees = capped.fee_fields()
    assert fees["maxPriorityFeePerGas"] == GWEI // 10 and fees["maxFeePerGas"] == base + GWEI // 10
    low = Chain.connect(anvil_url, chain_id=31337, max_fee_gwei=base / GWEI / 2)
    with pytest.raises(EthereumError, match="exceeds max_fee_gwei"):
        low.fee_fields()


def test_train_refuses_a_chain_id_pin_on_the_in_process_evm(tmp_path):
    from learningchain.config import TrainConfig
    from learningchain.errors import ConfigError
    from learningchain.experiments.train import run_training_ethereum

    cfg = TrainConfig(out=str(tmp_path), force=True, backend="ethereum", dataset="breast-cancer", rounds=1,
                      holders=3, chain_id=5, progress=False)
    with pytest.raises(ConfigError, match="chain_id pins the chain of --rpc-url"):
        run_training_ethereum(cfg)


def test_the_runners_computing_node_finishes_an_abandoned_attempt(embedded):
    """The driver's side of finding 2: a node that finds chunk 0 of someone else's attempt
    finishes it and the round is aggregated in that step."""
    from learningchain.ethereum.network import EthereumNetwork

    faucet = embedded.faucet()
    dep, _, msgs, right = _round(embedded, faucet, seed=17)
    attacker = fresh_account(embedded, faucet, 10**18)
    _first_chunk(embedded, dep, attacker, msgs, right, BOND)
    node = fresh_account(embedded, faucet, 10**18)
    net = EthereumNetwork(dep, [], [node], faucet, rng=np.random.default_rng(0))
    accepted, selection, gas, rejections = net._aggregate(node, dep.head(), msgs)
    assert accepted and tuple(selection) == right and gas > 0 and not rejections
    assert dep.current_round() == 1 and dep.contract.functions.aggregator_of(0).call() == ZERO_ADDRESS


def test_a_model_the_rpc_endpoint_reports_wrong_after_a_round_is_refused():
    # The holders train on the model the endpoint returns: a lying JSON-RPC node (here,
    # get_model with coordinate 0 raised by 1000.0) was taken as the new head unchecked.
    from eth_abi import decode, encode

    from learningchain.ethereum.chain import Chain, EthereumError
    from learningchain.ethereum.network import EthereumNetwork

    chain = Chain.embedded()
    chain.fixed_gas = 8_000_000
    faucet = chain.faucet()
    k, d = 5, 12
    rows = random_unit_rows(np.random.default_rng(3), k, d)
    dep = deploy(chain, faucet, d=d, l=3, messages=k, min_messages=k, quorum=k)
    W0 = dep.fixed_model()
    net = EthereumNetwork(dep, [], [fresh_account(chain, faucet, 10**19)], faucet, rng=np.random.default_rng(0))
    msgs = submit_all(dep, faucet, 0, rows, [2**32] * k)
    net.answered.claim(0)  # the holders' messages are on chain (sent above through the real ABI)
    provider = chain.w3.provider
    honest = provider.make_request
    selector = "0x" + dep.contract.functions.get_model()._encode_transaction_data()[2:10]

    def lying(method, params):
        resp = honest(method, params)
        if method == "eth_call" and str(params[0].get("data", "")).startswith(selector) and "result" in resp:
            (values,) = decode(["int256[]"], bytes.fromhex(resp["result"][2:]))
            values = [values[0] + 1000 * 2**40, *values[1:]]
            resp = dict(resp, result="0x" + encode(["int256[]"], [values]).hex())
        return resp

    provider.make_request = lying
    try:
        with pytest.raises(EthereumError, match="round 0: the model the chain reports differs .* coordinate 0"):
            net.step()
    finally:
        provider.make_request = honest
    # the contract itself holds the twin's update: an honest endpoint passes the same check
    selection = dep.rule.select(rows, [fp.tie_key(0, m[0]) for m in msgs])
    assert dep.fixed_model() == dep.rule.update(W0, rows, [m[1] for m in msgs], selection)
