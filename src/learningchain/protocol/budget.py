"""Each enrolled holder's privacy budget, enforced by the chain (issue 19).

Genesis may fix ``budget``: the total epsilon any one member may spend on the
chain. A message released in round t (the height of the block it was computed
at, plus one) spends that round's epsilon_t under the chain's schedule
(``privacy/schedules.py``): epsilon for ``constant``, epsilon/T for ``uniform``,
epsilon/(t(t+1)) for ``decay``. A member's spend on a chain is the sum over the
messages from its identity in the chain's blocks: basic (sequential)
composition. A block that would take a member past its budget is invalid.

Consensus needs the same verdict on every machine, so the arithmetic is exact:
every amount is a :class:`fractions.Fraction`, and a float parameter stands for
the decimal number genesis writes for it (Python's shortest round-trip form,
which is also its canonical JSON: an epsilon of 0.1 is exactly 1/10, so three
messages fit a budget of 0.3). Tighter accountants (optimal composition, RDP)
report a smaller spend for the same messages, but they are numerical
approximations; the chain enforces the exact, conservative rule.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Iterable, Mapping

from ..errors import ConfigError

__all__ = ["exact_decimal", "message_cost", "check_budget_params", "charge", "over_budget", "Spend"]

#: identity (20 bytes) -> (messages on the chain, exact epsilon spent)
Spend = Mapping[bytes, tuple]


def exact_decimal(value: float) -> Fraction:
    """The number a float parameter is written as in genesis (shortest round-trip)."""
    return Fraction(repr(float(value)))


def message_cost(params, round_: int) -> Fraction:
    """Exact epsilon one message computed at block height ``round_`` spends."""
    eps = exact_decimal(params.epsilon)
    t = int(round_) + 1
    if params.schedule == "constant":
        return eps
    if params.schedule == "uniform":
        return eps / params.rounds
    if params.schedule == "decay":
        return eps / (t * (t + 1))
    raise ConfigError(f"no budget rule for schedule {params.schedule!r}")  # pragma: no cover - params checks


def check_budget_params(params) -> None:
    """A budget needs enrolled members and a mechanism whose per-message epsilon is fixed."""
    budget = params.budget
    if budget is None:
        return
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) \
            or budget <= 0:
        raise ConfigError(f"budget must be a finite number > 0, got {budget!r}")
    if not params.members:
        raise ConfigError("budget needs members: a per-holder budget is enforced on enrolled identities only "
                          "(with open membership anyone can mint a fresh identity and its budget)")
    if params.mechanism == "none":
        raise ConfigError("budget needs a privacy mechanism: with mechanism 'none' messages spend no epsilon")
    if params.mechanism == "gaussian" and params.noise_multiplier > 0:
        raise ConfigError("budget needs a per-round epsilon: with the gaussian mechanism set noise_multiplier = 0 "
                          "(noise calibrated to (epsilon_t, delta) each round)")


def charge(spend: Spend, messages: Iterable, params) -> dict:
    """``spend`` after the block ``messages``: a new map, ``spend`` is left as it was."""
    out = dict(spend)
    for m in messages:
        count, eps = out.get(bytes(m.identity), (0, Fraction(0)))
        out[bytes(m.identity)] = (count + 1, eps + message_cost(params, m.round))
    return out


def over_budget(spend: Spend, identity: bytes, round_: int, params) -> tuple:
    """(would exceed?, spent before, spent after) for one more message from ``identity``."""
    _, before = spend.get(bytes(identity), (0, Fraction(0)))
    after = before + message_cost(params, round_)
    return after > exact_decimal(params.budget), before, after
