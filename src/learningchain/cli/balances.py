"""``learningchain chain balances PATH``: what each miner earned and the holders paid."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from ..errors import DecodeError, StoreError
from ..node.store import open_readonly
from ..protocol.rewards import balances_of
from ..protocol.transition import params_of_genesis


def chain_balances(path):
    store = open_readonly(path)
    try:
        blocks = store.canonical_blocks(0)
        genesis = next(blocks, None)
        if genesis is None:
            raise StoreError(f"{store.path} holds no chain")
        params = params_of_genesis(genesis)
        return params, balances_of(blocks, params.rewards)
    except (sqlite3.DatabaseError, DecodeError, TypeError, ValueError) as exc:
        raise StoreError(f"{store.path}: the store cannot be read ({exc}); run `learningchain chain verify` "
                         "on it") from None
    finally:
        store.close()


def cmd_balances(args) -> int:
    params, b = chain_balances(args.path)
    miners = sorted(b.mined, key=lambda a: (-b.mined[a], a))
    holders = [a for a, v in b.balances.items() if v < 0]
    if args.json:
        print(json.dumps({
            "rewards": params.rewards,
            "blocks": b.blocks,
            "miners": {"0x" + a.hex(): {"blocks": b.mined[a], "balance": b.balances.get(a, 0)} for a in miners},
            "holders": {"0x" + a.hex(): b.balances[a] for a in sorted(holders)},
            "paid_to_miners": b.paid_to_miners,
            "paid_by_holders": b.paid_by_holders,
        }, indent=2))
        return 0
    print(f"rewards: {params.rewards or 'none'}; {b.blocks} blocks")
    print(f"{'miner':<44}{'blocks':>8}{'balance':>16}")
    for a in miners:
        print(f"0x{a.hex():<42}{b.mined[a]:>8}{b.balances.get(a, 0):>16}")
    print(f"holders: {len(holders)} pseudo-identities paid {b.paid_by_holders} in total")
    print(f"miners received {b.paid_to_miners}; balanced: {b.paid_to_miners == b.paid_by_holders}")
    return 0


def register(sub, csub) -> None:
    p = csub.add_parser("balances", allow_abbrev=False,
                        help="replay the chain's rewards: miners' earnings and holders' cost")
    p.add_argument("path", help="chain.sqlite or a run directory")
    p.add_argument("--json", action="store_true", help="print the balances as JSON")
    p.set_defaults(func=cmd_balances)
