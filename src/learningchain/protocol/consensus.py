"""Who may write the next block: proof of work and proof of authority.

Proof of work: ``sha256(seal_hash || nonce)`` read as a big-endian integer must be
below ``2**(256 - difficulty)``; the expected number of tries is ``2**difficulty``
and that is also the block's weight in the fork choice. Difficulty is fixed by
genesis, or retargeted every ``window`` blocks toward ``interval_ms`` between
blocks, one bit at a time (a pure function of the parent chain's timestamps).

Proof of authority: the seal is a recoverable signature of the seal hash by one of
the authorities listed in genesis. The in-turn signer for height h is
``authorities[h % n]`` and its block weighs 2, an out-of-turn block weighs 1
(as in Ethereum's clique); the header's ``difficulty`` must state that weight.
As in clique, an authority seals at most one of any ``n // 2 + 1`` consecutive
blocks, so no minority of the authorities can write a chain on its own: without
the rule one authority could seal a long private chain of out-of-turn blocks and
outweigh the chain the others built in turn.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Optional

from ..crypto import PrivateKey, recover_address
from ..errors import ConfigError, InvalidBlock, InvalidMessage
from ..types import Address, hexstr
from .block import Header
from .forkchoice import block_work  # the weight rule lives with the fork choice; re-exported

__all__ = [
    "pow_value",
    "pow_target",
    "check_pow",
    "solve_pow",
    "block_work",
    "expected_difficulty",
    "difficulty_range",
    "seal_authority",
    "check_authority",
    "in_turn_authority",
    "authority_rank",
    "recent_signer_window",
    "sealed_recently",
    "check_signer_recency",
    "authority_weight",
    "RETARGET_KEYS",
]

RETARGET_KEYS = {"interval_ms", "window", "min_bits", "max_bits"}


def pow_target(bits: int) -> int:
    return 1 << (256 - bits)


def pow_value(seal_hash: bytes, nonce: int) -> int:
    return int.from_bytes(hashlib.sha256(seal_hash + nonce.to_bytes(8, "little")).digest(), "big")


def check_pow(header: Header) -> None:
    if len(header.seal) != 8:
        raise InvalidBlock("bad-seal", f"a proof-of-work seal is an 8-byte nonce, got {len(header.seal)} bytes",
                           height=header.height)
    nonce = int.from_bytes(header.seal, "little")
    if pow_value(header.seal_hash, nonce) >= pow_target(header.difficulty):
        raise InvalidBlock("bad-pow", f"hash does not meet {header.difficulty} bits of difficulty",
                           height=header.height)


def solve_pow(header: Header, *, start: int = 0, max_tries: Optional[int] = None) -> Optional[Header]:
    """Search nonces from ``start``; the sealed header, or None after ``max_tries``.

    The sha256 state of the 32-byte seal hash is computed once and copied per try,
    so a try costs one 8-byte update (about 0.4 us here).
    """
    target = pow_target(header.difficulty)
    prefix = hashlib.sha256(header.seal_hash)
    nonce = start
    stop = None if max_tries is None else start + max_tries
    while stop is None or nonce < stop:
        if nonce >= 1 << 64:
            return None
        h = prefix.copy()
        h.update(nonce.to_bytes(8, "little"))
        if int.from_bytes(h.digest(), "big") < target:
            return header.with_seal(nonce.to_bytes(8, "little"))
        nonce += 1
    return None


def check_retarget_options(options: dict) -> None:
    if not options:
        return
    unknown = set(options) - RETARGET_KEYS
    if unknown:
        raise ConfigError(f"unknown retarget option(s) {sorted(unknown)}; known: {sorted(RETARGET_KEYS)}")
    for key in RETARGET_KEYS:
        if not isinstance(options.get(key), int) or options[key] < 0:
            raise ConfigError(f"retarget needs a non-negative integer {key!r}, got {options.get(key)!r}")
    if options["window"] < 1 or options["interval_ms"] < 1:
        raise ConfigError("retarget window and interval_ms must be >= 1")
    if not options["min_bits"] <= options["max_bits"] <= 64:
        raise ConfigError("retarget needs min_bits <= max_bits <= 64")


def expected_difficulty(params, parent: Header, ancestor: Callable[[bytes], Header]) -> int:
    """Difficulty bits the child of ``parent`` must carry (a pure function of the chain).

    Without ``retarget`` it is the genesis difficulty. With it, the difficulty
    stays that of the parent except right after every full window of ``window``
    blocks, where it moves one bit toward ``interval_ms``: up when the window's
    mean interval was below 2/3 of the target, down when above 3/2 of it.
    """
    rt = params.retarget
    if not rt or parent.height == 0:
        return params.difficulty
    window = rt["window"]
    if parent.height % window != 0:
        return parent.difficulty
    first = parent
    for _ in range(window):
        first = ancestor(first.parent)
    span = parent.timestamp - first.timestamp
    bits = parent.difficulty
    if 3 * span < 2 * window * rt["interval_ms"]:
        bits += 1
    elif 2 * span > 3 * window * rt["interval_ms"]:
        bits -= 1
    return max(rt["min_bits"], min(rt["max_bits"], bits))


def difficulty_range(params) -> tuple[int, int]:
    """Inclusive bounds on the difficulty of any proof-of-work block of the chain:
    the genesis difficulty, widened to ``min_bits..max_bits`` with retargeting.
    (What can be checked of a block whose parent is unknown.)"""
    lo = hi = params.difficulty
    if params.retarget:
        lo, hi = min(lo, params.retarget["min_bits"]), max(hi, params.retarget["max_bits"])
    return lo, hi


def in_turn_authority(params, height: int) -> Address:
    """The authority whose turn height ``height`` is: ``authorities[height % n]``."""
    auths = params.authority_addresses
    return auths[height % len(auths)]


def authority_weight(params, address: bytes, height: int) -> int:
    """The weight a block at ``height`` sealed by authority ``address`` must state:
    2 in turn, 1 out of turn (as in Ethereum's clique)."""
    return 2 if bytes(address) == in_turn_authority(params, height) else 1


def authority_rank(params, address: bytes, height: int) -> int:
    """How many turns after the in-turn signer of ``height`` the authority
    ``address`` comes (0 = in turn): the order in which authorities back off."""
    auths = params.authority_addresses
    return (auths.index(bytes(address)) - auths.index(in_turn_authority(params, height))) % len(auths)


def recent_signer_window(params) -> int:
    """How many of its parent's ancestors (the parent included) a block's authority must
    not have sealed: ``n // 2`` (n authorities), so that one authority seals at most one
    of any ``n // 2 + 1`` consecutive blocks (Ethereum's clique)."""
    return len(params.authority_addresses) // 2


def sealed_recently(params, address: bytes, parent: Header, ancestor: Callable[[bytes], Header]) -> Optional[int]:
    """The height of a block among the last :func:`recent_signer_window` blocks up to
    ``parent`` that ``address`` sealed (None: none did, so it may seal ``parent``'s child)."""
    h = parent
    for _ in range(recent_signer_window(params)):
        if h.height == 0:
            break
        if h.miner == bytes(address):
            return h.height
        h = ancestor(h.parent)
    return None


def check_signer_recency(header: Header, parent: Header, params, ancestor: Callable[[bytes], Header]) -> None:
    """Proof of authority: the block's authority sealed none of the parent's last
    :func:`recent_signer_window` blocks."""
    last = sealed_recently(params, header.miner, parent, ancestor)
    if last is not None:
        window = recent_signer_window(params)
        raise InvalidBlock("recent-signer", f"authority {hexstr(header.miner)} sealed block {last}, one of the "
                           f"last {window}: an authority seals at most one of any {window + 1} consecutive blocks",
                           height=header.height)


def seal_authority(header: Header, key: PrivateKey) -> Header:
    return header.with_seal(key.sign(header.seal_hash))


def check_authority(header: Header, params) -> None:
    """The seal is a signature by the header's miner, who is an authority, and the
    difficulty states the in-turn (2) or out-of-turn (1) weight."""
    try:
        signer = recover_address(header.seal_hash, header.seal)
    except InvalidMessage as exc:
        raise InvalidBlock("bad-seal", f"authority signature: {exc.detail}", height=header.height) from None
    if not params.is_authority(signer):
        raise InvalidBlock("not-authority", f"sealed by {hexstr(signer)}, which is not an authority",
                           height=header.height)
    if signer != header.miner:
        raise InvalidBlock("bad-seal", f"sealed by {hexstr(signer)} but names miner {hexstr(header.miner)}",
                           height=header.height)
    weight = authority_weight(params, signer, header.height)
    if header.difficulty != weight:
        raise InvalidBlock("bad-difficulty",
                           f"authority block must state weight {weight}, states {header.difficulty}",
                           height=header.height)
