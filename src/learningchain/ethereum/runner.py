"""``learningchain train --backend ethereum``: the same experiment, on an Ethereum chain.

The data, model, protocol parameters, holders and Byzantine attacks come from
the same builder as the native run (:func:`learningchain.experiments.train.build_parties`);
the chain is an in-process EVM by default or the node at ``--rpc-url``. The run:

1. the faucet (the chain's funded account, or ``$LEARNINGCHAIN_FAUCET_KEY``)
   deploys the contract with the protocol parameters and w_0, and opens round 0;
2. each holder's long-lived wallet deposits its share of the computing nodes'
   rewards into the contract (issue "incentives": holders share the cost);
3. every round each holder reads the model from the contract, sends its message
   from a fresh pseudo-identity account, and a computing node drawn at random
   has the contract aggregate the round, then claims its reward;
4. the faucet ends the run and every holder wallet withdraws what the rewards
   left of its deposit.

The run directory looks like the native one (``summary.json``, ``metrics.csv``,
``curve.png``, ``model.npy``, ``model.json``) plus ``contract.abi.json``; the
model written is the one stored in the contract.
"""

from __future__ import annotations

import json
import math
import time
from typing import Callable, Optional

import numpy as np

from ..config import TrainConfig
from ..errors import ConfigError
from .chain import Chain
from .contract import ContractParams
from .network import Deployment, EthereumNetwork, new_account

__all__ = ["run_training_ethereum", "DEFAULT_REWARD_WEI", "open_chain"]

#: Paid from the holders' deposits to the account that completes each aggregation.
DEFAULT_REWARD_WEI = 10**15
#: blocks a round stays open for messages when fewer than K holders have sent
WINDOW_BLOCKS = 16
#: Holders deposit this multiple of the rewards a full run pays, so a refund is left.
DEPOSIT_FACTOR = 2


def open_chain(cfg: TrainConfig) -> Chain:
    return Chain.connect(cfg.rpc_url) if cfg.rpc_url else Chain.embedded()


def _close_quietly(dep: Deployment, owner, wallets: list) -> None:
    import logging

    log = logging.getLogger(__name__)
    try:
        dep.finish(owner)
    except Exception as exc:
        log.warning("could not finish the run at %s: %s", dep.address, exc)
        return
    for w in wallets:
        try:
            dep.withdraw(w)
        except Exception as exc:
            log.warning("could not withdraw the deposit of %s: %s", w.address, exc)


def run_training_ethereum(cfg: TrainConfig, *, progress: Optional[bool] = None,
                          on_round: Optional[Callable[[dict], None]] = None, chain: Optional[Chain] = None,
                          reward_wei: int = DEFAULT_REWARD_WEI) -> dict:
    """Run ``cfg`` on Ethereum and return the summary (the native keys plus the chain's)."""
    from ..experiments.rundir import check_out_dir, in_run_dir
    from ..experiments.train import build_parties

    cfg = cfg.resolved()
    if cfg.byzantine_miners:
        raise ConfigError("the Ethereum backend has no Byzantine computing nodes to simulate: every Ethereum "
                          "node re-executes the contract, which refuses a wrong aggregation")
    if reward_wei < 0:
        raise ConfigError(f"reward_wei must be >= 0, got {reward_wei}")
    started = time.perf_counter()
    target = check_out_dir(cfg.out, f"{cfg.dataset}-eth", force=cfg.force)
    parties = build_parties(cfg)
    extra = sum(max(0, int(getattr(a, "max_messages", 1)) - 1) for a in parties.attacks.values())
    # a round closes at once when all K holders have sent, else WINDOW_BLOCKS after it opened
    cparams = ContractParams.from_params(parties.params, messages=cfg.holders + extra, rounds=cfg.rounds,
                                         reward=reward_wei, quorum=max(cfg.holders, parties.params.min_messages),
                                         window=WINDOW_BLOCKS)
    chain = chain or open_chain(cfg)  # an unreachable --rpc-url is refused before anything is written
    return in_run_dir(target, lambda out: _run(cfg, parties, cparams, chain, out, started, progress, on_round,
                                               reward_wei))


def _run(cfg: TrainConfig, parties, cparams: ContractParams, chain: Chain, out, started: float,
         progress: Optional[bool], on_round: Optional[Callable[[dict], None]], reward_wei: int) -> dict:
    """The run on ``chain``, written into ``out``; the summary says ``interrupted`` after Ctrl-C."""
    from ..experiments.train import Evaluator, _write_outputs, common_summary, progress_bar, status_printer

    faucet = chain.faucet()
    fees_before = chain.fees_paid
    start_balance = chain.balance(faucet.address)

    dep = Deployment.deploy(chain, faucet, cparams, parties.genesis.model)
    # Accounts are drawn from the seed and the contract's address: reproducible on the
    # same chain state, and fresh when the same seed runs again on the same node.
    salt = int(dep.address, 16) % 2**63
    rng = np.random.default_rng([cfg.seed, 5, salt])
    wallets = [new_account(rng, f"wallet-{k}") for k in range(cfg.holders)]
    nodes = [new_account(rng, f"node-{j}") for j in range(cfg.miners)]
    used = [a.address for a in wallets + nodes if chain.balance(a.address) != 0]
    if used:
        raise ConfigError(f"a fresh account already holds ether on this chain ({used[0]})")
    deposit = math.ceil(DEPOSIT_FACTOR * reward_wei * cfg.rounds / cfg.holders) if reward_wei else 0
    if deposit:
        gas_money = 200_000 * chain.fee_fields()["maxFeePerGas"] * 4
        for w in wallets:
            chain.transfer(faucet, w.address, deposit + gas_money, what="faucet")
            dep.deposit(w, deposit)

    net = EthereumNetwork(dep, parties.holders, nodes, faucet, rng=np.random.default_rng([cfg.seed, 3]),
                          key_rng=np.random.default_rng([cfg.seed, 6, salt]), attacks=parties.attacks)
    evaluate = Evaluator(parties.spec, parties.dataset)
    rows = []
    stopped_by = "rounds"
    bar = progress_bar(cfg, progress, f"{cfg.dataset} K={cfg.holders} (ethereum)", "round")
    gas_rounds = []
    selected_byz_total = 0
    try:
        for t in range(1, cfg.rounds + 1):
            res = net.step()
            err, loss = (None, None)
            if t % cfg.eval_every == 0 or t == cfg.rounds:
                err, loss = evaluate(res.head.model)
            selected_byz_total += res.byzantine_selected
            round_gas = sum(res.gas_submit) + res.gas_aggregate + res.gas_claim
            gas_rounds.append((sum(res.gas_submit), len(res.gas_submit), res.gas_aggregate, res.gas_claim))
            row = {
                "round": t,
                "height": res.head.height,
                "test_error": err,
                "train_loss": loss,
                "selected_byzantine": res.byzantine_selected,
                "winner": res.winner,
                "byzantine_winner": 0,
                "rejected": int(not res.head_changed),
                "messages": res.messages,
                "gas": round_gas,
                "gas_aggregate": res.gas_aggregate,
                "block": res.head.block_number,
                "seconds": round(res.seconds, 6),
            }
            rows.append(row)
            if on_round:
                on_round(row)
            bar.update(1)
            if err is not None:
                bar.set_postfix(err=f"{err:.4f}", round=res.head.height)
            if cfg.target_error is not None and err is not None and err <= cfg.target_error:
                stopped_by = "target-error"
                break
    except KeyboardInterrupt:
        # the rounds done so far are written, marked as interrupted; the contract is closed
        stopped_by = "interrupted"
        _close_quietly(dep, faucet, wallets if deposit else [])
    except BaseException:
        # a failed run still closes the contract and returns the holders' deposits
        _close_quietly(dep, faucet, wallets if deposit else [])
        raise
    finally:
        bar.close()

    # The end of the run: the owner closes it, the holders take back what is left.
    say = status_printer(cfg, progress)
    if stopped_by != "interrupted":
        say("closing the contract and refunding the holders' deposits ...")
        dep.finish(faucet)
    refunds = []
    for w in wallets if deposit and stopped_by != "interrupted" else []:
        before = chain.balance(w.address)
        r = dep.withdraw(w)
        refunds.append(chain.balance(w.address) - before + int(r["gasUsed"]) * int(r["effectiveGasPrice"]))

    head = net.head
    accounts = [faucet.address] + [a.address for a in wallets + nodes] + net.pseudo_identities + [dep.address]
    end_balance = sum(chain.balance(a) for a in accounts)
    fees = chain.fees_paid - fees_before
    n = max(1, len(gas_rounds))
    sub_total = sum(g[0] for g in gas_rounds)
    sub_count = sum(g[1] for g in gas_rounds)
    gas = {
        "submit_mean": round(sub_total / max(1, sub_count)),
        "aggregate_mean": round(sum(g[2] for g in gas_rounds) / n),
        "claim_mean": round(sum(g[3] for g in gas_rounds) / n),
        "round_mean": round(sum(g[0] + g[2] + g[3] for g in gas_rounds) / n),
        "aggregation_chunks": cparams.chunks,
        "setup": dep.setup_gas,
        "block_gas_limit": chain.gas_limit(),
    }
    try:
        summary, baseline = common_summary(cfg, parties, rows, head, evaluate, stopped_by, started, say=say)
    except KeyboardInterrupt:  # during the baseline: the rounds are done, the baseline is left out
        stopped_by = "interrupted"
        summary, baseline = common_summary(cfg, parties, rows, head, evaluate, stopped_by, started)
    summary.update({
        "backend": "ethereum",
        "l": parties.params.l,
        "rejected_blocks": net.rejected_aggregations,
        "rejected_by_reason": {},
        "rejected_messages": dict(net.messages_rejected),
        "selected_byzantine_total": selected_byz_total,
        "contract_address": dep.address,
        "chain_id": chain.chain_id,
        "chain": "embedded EVM (eth-tester, py-evm)" if chain.kind == "embedded" else chain.url,
        "gas_per_round": gas["round_mean"],
        "gas": gas,
        "incentives": {
            "reward_per_aggregation_wei": reward_wei,
            "deposit_per_holder_wei": deposit,
            "deposits_total_wei": deposit * (cfg.holders if deposit else 0),
            "rewards_paid_wei": int(sum(net.rewards_paid.values())),
            "aggregations_by_node": {nodes[i].address: c for i, c in sorted(net.aggregations.items())},
            "refunds_total_wei": int(sum(refunds)),
            "balance_before_wei": start_balance,
            "balance_after_wei": end_balance,
            "fees_wei": fees,
            "conserved": start_balance - end_balance == fees,
        },
    })
    say("writing summary.json, metrics.csv, model.npy and curve.png ...")
    _write_outputs(out, summary, rows, baseline["curve"], parties, head)
    with open(out / "contract.abi.json", "w") as fh:
        json.dump(dep.abi, fh, indent=1)
        fh.write("\n")
    with open(out / "contract.json", "w") as fh:
        json.dump({"address": dep.address, "chain_id": summary["chain_id"], "deploy_block": dep.deploy_block,
                   "abi": "contract.abi.json", "model_bits": 40, "chunks": cparams.chunks,
                   "chunk_words": cparams.chunk_words}, fh, indent=1)
        fh.write("\n")
    summary["out"] = str(out)
    return summary
