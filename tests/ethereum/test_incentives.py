"""Deposits, rewards and refunds (issue: incentives, the Ethereum part).

Checked on the in-process EVM and on anvil: the aggregator of each valid round
is paid the reward from the holders' deposits, the rest comes back to the
holders, every misuse reverts with its reason, and the sum of the balances of
every account involved (and the contract) changes by exactly the gas fees.
"""

import numpy as np
import pytest

from learningchain.ethereum import fixedpoint as fp
from learningchain.ethereum.chain import Reverted

from .helpers import deploy, fresh_account, random_unit_rows, submit_all

REWARD = 10**15


def play_rounds(chain, dep, faucet, aggregators, rng, rounds, accounts):
    for t in range(rounds):
        rows = random_unit_rows(rng, 3, dep.rule.dim)
        senders = [fresh_account(chain, faucet, 10**17) for _ in range(3)]
        accounts.extend(senders)
        msgs = submit_all(dep, faucet, t, rows, [2**32] * 3, accounts=senders)
        keys = [fp.tie_key(t, m[0]) for m in msgs]
        accepted, _, _ = dep.aggregate(aggregators[t % len(aggregators)], msgs, dep.rule.select(rows, keys))
        assert accepted


def incentives_scenario(chain):
    faucet = chain.faucet()
    rng = np.random.default_rng(9)
    fees0 = chain.fees_paid
    before = chain.balance(faucet.address)
    dep = deploy(chain, faucet, d=6, l=2, messages=4, rounds=3, reward=REWARD)
    holders = [fresh_account(chain, faucet, 10**17) for _ in range(3)]
    nodes = [fresh_account(chain, faucet, 10**17) for _ in range(2)]
    accounts = [faucet] + holders + nodes
    deposits = [REWARD, 2 * REWARD, 4 * REWARD + 1]
    for h, amount in zip(holders, deposits):
        dep.deposit(h, amount)

    # misuse before anything was aggregated
    with pytest.raises(Reverted, match="round not aggregated"):
        dep.claim_reward(nodes[0], 0)
    with pytest.raises(Reverted, match="the run is not finished"):
        dep.withdraw(holders[0])
    with pytest.raises(Reverted, match="nothing to deposit"):
        dep.deposit(holders[0], 0)

    play_rounds(chain, dep, faucet, nodes, rng, 3, accounts)
    c = dep.contract.functions
    assert c.current_round().call() == 3
    assert [c.aggregator_of(t).call() for t in range(3)] == [nodes[0].address, nodes[1].address, nodes[0].address]

    paid = {n.address: 0 for n in nodes}
    for t in range(3):
        agg = nodes[t % 2]
        b0 = chain.balance(agg.address)
        r = dep.claim_reward(agg, t)
        paid[agg.address] += chain.balance(agg.address) - b0 + r["gasUsed"] * r["effectiveGasPrice"]
        assert c.reward_paid(t).call()
    assert paid == {nodes[0].address: 2 * REWARD, nodes[1].address: REWARD}  # paid per valid aggregation

    with pytest.raises(Reverted, match="reward already paid"):
        dep.claim_reward(nodes[0], 0)
    with pytest.raises(Reverted, match="not the aggregator of this round"):
        dep.claim_reward(nodes[0], 1)
    with pytest.raises(Reverted, match="round not aggregated"):
        dep.claim_reward(nodes[0], 3)
    with pytest.raises(Reverted, match="the run is not over"):
        _finish_early_refused(chain, faucet, holders[0])

    dep.finish(holders[0])  # three rounds done: anyone may close the run
    with pytest.raises(Reverted, match="the run is not open"):
        dep.finish(faucet)
    with pytest.raises(Reverted, match="the run is finished"):
        dep.deposit(holders[0], 1)
    with pytest.raises(Reverted, match="the run is not open"):
        dep.submit(holders[0], 3, 2**32, fp.pack_q(random_unit_rows(rng, 1, 6)[0]))

    total = sum(deposits)
    left = total - 3 * REWARD
    refunds = []
    for h in holders:
        b0 = chain.balance(h.address)
        r = dep.withdraw(h)
        refunds.append(chain.balance(h.address) - b0 + r["gasUsed"] * r["effectiveGasPrice"])
    with pytest.raises(Reverted, match="already withdrawn"):
        dep.withdraw(holders[1])
    with pytest.raises(Reverted, match="nothing deposited"):
        dep.withdraw(nodes[0])
    assert sum(refunds) == left  # what the rewards left goes back, to the wei
    for amount, refund in zip(deposits[:-1], refunds[:-1]):
        assert refund == left * amount // total  # pro rata; the last one takes the dust
    assert chain.balance(dep.address) == 0

    after = sum(chain.balance(a.address) for a in accounts) + chain.balance(dep.address)
    assert before - after == chain.fees_paid - fees0  # conserved, minus gas


def _finish_early_refused(chain, faucet, someone):
    """A holder cannot end a run that still has rounds to go."""
    dep = deploy(chain, faucet, d=3, l=1, messages=2, rounds=5, reward=0)
    dep.finish(someone)


def test_incentives_on_the_embedded_evm(embedded):
    incentives_scenario(embedded)


def test_incentives_on_anvil(anvil):
    incentives_scenario(anvil)


def test_aggregation_needs_deposits_that_cover_the_reward(embedded):
    faucet = embedded.faucet()
    rng = np.random.default_rng(1)
    dep = deploy(embedded, faucet, d=4, l=1, messages=2, rounds=5, reward=REWARD)
    rows = random_unit_rows(rng, 2, 4)
    msgs = submit_all(dep, faucet, 0, rows, [2**32] * 2)
    keys = [fp.tie_key(0, m[0]) for m in msgs]
    sel = dep.rule.select(rows, keys)
    with pytest.raises(Reverted, match="deposits do not cover the reward"):
        dep.aggregate(faucet, msgs, sel)
    dep.deposit(faucet, REWARD)
    assert dep.aggregate(faucet, msgs, sel)[0]
