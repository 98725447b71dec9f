"""``learningchain chain privacy PATH``: every identity's privacy spend, replayed from the chain."""

from __future__ import annotations

import json
import sqlite3
from fractions import Fraction

from ..errors import DecodeError, StoreError
from ..node.store import open_readonly
from ..protocol.budget import charge, exact_decimal
from ..protocol.transition import params_of_genesis


def chain_privacy(path):
    """(params, blocks, {identity: (messages, exact epsilon)}) over the canonical chain
    stored at ``path``, opened read-only. Members that never sent are listed at zero."""
    store = open_readonly(path)
    try:
        blocks = store.canonical_blocks(0)
        genesis = next(blocks, None)
        if genesis is None:
            raise StoreError(f"{store.path} holds no chain")
        params = params_of_genesis(genesis)
        spend = {bytes.fromhex(a[2:]): (0, Fraction(0)) for a in params.members}
        count = 0
        for block in blocks:
            spend = charge(spend, block.messages, params)
            count += 1
        return params, count, spend
    except (sqlite3.DatabaseError, DecodeError, TypeError, ValueError) as exc:
        raise StoreError(f"{store.path}: the store cannot be read ({exc}); run `learningchain chain verify` "
                         "on it") from None
    finally:
        store.close()


def _rule(params) -> tuple[bool, str]:
    """(is epsilon per message fixed by genesis?, the rule in words)"""
    if params.mechanism == "none":
        return False, "mechanism none: messages carry no noise and are not differentially private"
    if params.mechanism == "gaussian" and params.noise_multiplier > 0:
        return False, (f"gaussian mechanism with noise multiplier {params.noise_multiplier:g}: the epsilon of a "
                       "message depends on the accountant, the chain does not fix it")
    per = {"constant": f"epsilon {params.epsilon:g} per message",
           "uniform": f"epsilon {params.epsilon:g}/{params.rounds} per message",
           "decay": f"epsilon {params.epsilon:g}/(t(t+1)) per message of round t"}[params.schedule]
    delta = f", delta {params.delta:g} per message" if params.mechanism == "gaussian" else ""
    return True, f"{params.mechanism}, {params.schedule} schedule: {per}{delta}, basic composition (exact)"


def cmd_privacy(args) -> int:
    params, blocks, spend = chain_privacy(args.path)
    fixed, rule = _rule(params)
    budget = None if params.budget is None else exact_decimal(params.budget)
    order = sorted(spend, key=lambda a: (-spend[a][0], a))
    if args.json:
        rows = {}
        for a in order:
            n, eps = spend[a]
            row = {"messages": n}
            if fixed:
                row.update(epsilon=float(eps), epsilon_exact=str(eps))
                if budget is not None:
                    row.update(budget_left=float(budget - eps), budget_left_exact=str(budget - eps))
            rows["0x" + a.hex()] = row
        print(json.dumps({"blocks": blocks, "rule": rule, "budget": params.budget,
                          "membership": "enrolled" if params.members else "open", "identities": rows}, indent=2))
        return 0
    print(f"{blocks} blocks; {rule}; messages that reached a block")
    if params.members:
        left = f"budget {params.budget:g} per member, enforced by every validator" if budget is not None \
            else "no budget in genesis"
        print(f"membership: {len(params.members)} enrolled holders; {left}")
    else:
        print("membership: open; each pseudo-identity's spend (a holder with fresh identities spends "
              "on each of them, and its total is their sum)")
    head = f"{'identity':<44}{'messages':>9}"
    if fixed:
        head += f"{'epsilon':>14}" + (f"{'budget left':>14}" if budget is not None else "")
    print(head)
    for a in order:
        n, eps = spend[a]
        line = f"0x{a.hex():<42}{n:>9}"
        if fixed:
            line += f"{float(eps):>14.6g}" + (f"{float(budget - eps):>14.6g}" if budget is not None else "")
        print(line)
    return 0


def register(sub, csub) -> None:
    p = csub.add_parser("privacy", allow_abbrev=False,
                        help="replay every holder's privacy spend from the chain (messages, epsilon, budget left)")
    p.add_argument("path", help="chain.sqlite or a run directory")
    p.add_argument("--json", action="store_true", help="print the spend as JSON")
    p.set_defaults(func=cmd_privacy)
