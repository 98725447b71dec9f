"""Incentives: who is paid for which block, as a pure function of the chain.

The paper's computing nodes "earn the reward for [their] computation
contribution" and "the data holders share the cost". Genesis fixes the rule in
``ProtocolParams.rewards``; balances follow from replaying the canonical chain,
so every node computes the same ones, and rejected blocks, never being on the
chain, earn nothing. The economy is closed: every unit a miner receives is paid
by holders' pseudo-identities, so balances always sum to zero.

Rules (integers, in the chain's smallest unit):

* ``{"mode": "split", "block_reward": R}``: each block pays its miner R, and R is
  shared by the pseudo-identities whose messages the block carries: R // n each,
  the remainder R % n one unit each to the first messages in canonical order.
* ``{"mode": "fee", "fee_per_message": F}``: each message in a block costs its
  pseudo-identity F, paid to the block's miner.
* ``{}`` (the default): no payments.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from ..errors import ConfigError

__all__ = ["check_rewards", "block_payments", "Balances", "balances_of"]

_KEYS = {"split": {"mode", "block_reward"}, "fee": {"mode", "fee_per_message"}}


def check_rewards(rewards: dict) -> None:
    if not rewards:
        return
    mode = rewards.get("mode")
    if mode not in _KEYS:
        raise ConfigError(f"rewards mode must be one of {sorted(_KEYS)}, got {mode!r}")
    extra = set(rewards) - _KEYS[mode]
    missing = _KEYS[mode] - set(rewards)
    if extra or missing:
        raise ConfigError(f"rewards in mode {mode!r} take exactly {sorted(_KEYS[mode])}; "
                          f"unknown {sorted(extra)}, missing {sorted(missing)}")
    for key in _KEYS[mode] - {"mode"}:
        value = rewards[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"rewards {key} must be a non-negative integer, got {value!r}")


def block_payments(block, rewards: dict) -> dict:
    """Balance changes one block makes: address -> signed integer."""
    delta: dict = defaultdict(int)
    if not rewards or block.height == 0:
        return delta
    miner = bytes(block.header.miner)
    payers = [bytes(m.identity) for m in block.messages]
    if rewards["mode"] == "fee":
        fee = rewards["fee_per_message"]
        for p in payers:
            delta[p] -= fee
        delta[miner] += fee * len(payers)
    else:
        reward = rewards["block_reward"]
        if payers:
            share, rest = divmod(reward, len(payers))
            for i, p in enumerate(payers):
                delta[p] -= share + (1 if i < rest else 0)
            delta[miner] += reward
    return delta


@dataclass
class Balances:
    balances: dict = field(default_factory=lambda: defaultdict(int))
    mined: dict = field(default_factory=lambda: defaultdict(int))  # miner -> accepted blocks
    paid_to_miners: int = 0
    paid_by_holders: int = 0
    blocks: int = 0


def balances_of(blocks, rewards: dict, start: Balances | None = None) -> Balances:
    """Replay ``blocks`` (the canonical chain from genesis, in order), on top of ``start``
    (what earlier blocks paid, e.g. those a pruned store counted before dropping their messages)."""
    out = start if start is not None else Balances()
    for block in blocks:
        count_block(out, block, rewards)
    return out


def count_block(out: Balances, block, rewards: dict) -> None:
    """Add one canonical block's payments to ``out``."""
    if block.height == 0:
        return
    out.blocks += 1
    out.mined[bytes(block.header.miner)] += 1
    for addr, d in block_payments(block, rewards).items():
        out.balances[addr] += d
        if d > 0:
            out.paid_to_miners += d
        else:
            out.paid_by_holders -= d
