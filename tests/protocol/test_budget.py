"""Per-member privacy budgets fixed by genesis and enforced by every validator:
exact basic composition over the messages of each enrolled identity on the chain."""

from fractions import Fraction

import pytest

from learningchain.errors import ConfigError
from learningchain.protocol import ProtocolParams
from learningchain.protocol.budget import charge, message_cost, over_budget

from ..helpers import make_keys, message_for, genesis_for, small_params


def _members(n=4, seed=5):
    keys = make_keys(n, seed=seed)
    return keys, tuple("0x" + k.address.hex() for k in keys)


def _params(members, **over):
    base = dict(members=tuple(members), max_messages=len(members), holders=len(members), difficulty=0,
                mechanism="l2-laplace", epsilon=0.1, budget=0.3)
    base.update(over)
    return small_params(**base)


def test_a_budget_is_committed_in_genesis_and_chains_without_one_keep_their_encoding():
    keys, members = _members()
    plain = small_params(members=members, max_messages=4)
    assert b"budget" not in plain.encode()
    assert ProtocolParams.decode(plain.encode()).budget is None
    budgeted = _params(members)
    assert b'"budget":0.3' in budgeted.encode()
    assert ProtocolParams.decode(budgeted.encode()) == budgeted
    assert budgeted.encode() != _params(members, budget=0.4).encode()


@pytest.mark.parametrize("over, match", [
    (dict(members=()), "budget needs members"),
    (dict(mechanism="none", epsilon=0.0), "needs a privacy mechanism"),
    (dict(mechanism="gaussian", delta=1e-5, noise_multiplier=1.0), "noise_multiplier = 0"),
    (dict(budget=0.0), "finite number > 0"),
    (dict(budget=float("inf")), "finite number > 0"),
    (dict(budget=-1.0), "finite number > 0"),
])
def test_a_budget_the_chain_cannot_enforce_is_refused(over, match):
    _, members = _members()
    if "members" in over:
        members, over = over["members"], {k: v for k, v in over.items() if k != "members"}
        over.update(max_messages=64, holders=4)
    with pytest.raises(ConfigError, match=match):
        _params(members, **over)


def test_each_schedule_charges_its_round_epsilon_exactly():
    _, members = _members()
    assert message_cost(_params(members), 0) == Fraction(1, 10)
    assert message_cost(_params(members, schedule="uniform", rounds=7), 3) == Fraction(1, 70)
    # decay: round t = height + 1 spends eps / (t (t + 1)); T rounds sum to eps T / (T + 1)
    decay = _params(members, schedule="decay", epsilon=0.5)
    assert message_cost(decay, 0) == Fraction(1, 4) and message_cost(decay, 2) == Fraction(1, 24)
    assert sum(message_cost(decay, r) for r in range(9)) == Fraction(1, 2) * Fraction(9, 10)


def test_spend_is_exact_decimal_arithmetic_three_messages_of_a_tenth_fit_three_tenths():
    keys, members = _members()
    params = _params(members)  # epsilon 0.1, budget 0.3: in floats 0.1 + 0.1 + 0.1 > 0.3
    assert 0.1 + 0.1 + 0.1 > 0.3
    genesis = genesis_for(params)
    msg = message_for(keys[0], params, genesis, [1.0, 0.5, -0.2, 0.1, 0.3])
    spend = {}
    for n in range(3):
        assert over_budget(spend, keys[0].address, 0, params)[0] is False
        spend = charge(spend, [msg], params)
    assert spend[bytes(keys[0].address)] == (3, Fraction(3, 10))
    over, before, after = over_budget(spend, keys[0].address, 0, params)
    assert over and before == Fraction(3, 10) and after == Fraction(2, 5)
    assert over_budget(spend, keys[1].address, 0, params)[0] is False  # per identity
