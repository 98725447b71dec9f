"""Ethereum runs from the experiments layer: the run directory that keeps a
resumable run's keys when it fails, and the resume of a full-mode run on a
JSON-RPC chain from its contract (``learningchain train --resume DIR``; see
:mod:`learningchain.ethereum.runner` for what such a run writes)."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable, Optional

from ..config import TrainConfig
from ..errors import ConfigError, LearningChainError
from ..ethereum.chain import Chain
from ..ethereum.keystore import KEYS_DIR, RunKeys, password
from ..ethereum.network import Deployment, replay_model
from ..ethereum.runner import (EthereumBackend, contract_params, read_json, recovered_rows, refuse_unresumable,
                               verify_deployment)
from ..parties import build_parties
from .checkpoint import Checkpointer
from .loop import run_backend
from .rundir import RunDir, in_run_dir

__all__ = ["KeepingRunDir", "resume_training_ethereum"]

log = logging.getLogger(__name__)


class KeepingRunDir(RunDir):
    """A resumable run's temporary directory: kept where it is when the run fails once its
    keys are written (``learningchain train --resume OUT`` finds it there once this process
    has exited), since those keys hold deposits and rewards on a live contract."""

    def discard(self) -> None:
        if self.source is None and (self.path / KEYS_DIR).exists():
            log.warning("the run failed; its keys and contract.json are kept in %s: `learningchain train --resume "
                        "%s` continues it", self.path, self.target)
            return
        super().discard()


def resume_training_ethereum(source: Path, target: Path, doc: dict, cfg: TrainConfig, *,
                             rpc_url: Optional[str] = None, progress: Optional[bool] = None,
                             on_round: Optional[Callable[[dict], None]] = None) -> dict:
    """Continue the interrupted full-mode run in ``source`` (its checkpoint ``doc``, its config
    ``cfg``) on its contract, at ``rpc_url`` or the config's --rpc-url. Everything is checked
    before the directory is taken over, and nothing in it is changed when a check fails:
    contract.json, the chain id, the contract's code and parameters, its state (open, rounds
    left), the keys (password), and the model: the contract's round is at or past the
    checkpoint's, and its model is the checkpoint's model carried through the rounds since,
    recomputed from the chain's messages with the Python twin."""
    source = Path(source)
    if cfg.eth_mode != "full":
        raise ConfigError(f"{source}: a run of the {cfg.eth_mode} mode does not resume; only full-mode runs do")
    refuse_unresumable(source)
    cdoc = read_json(source / "contract.json", "so no contract to resume (a run killed before its deployment, or "
                                                "not an Ethereum run)")
    if not cdoc.get("resumable"):
        refuse_unresumable(source)
        raise ConfigError(f"{source / 'contract.json'}: not a resumable run")
    pw = password()
    url = rpc_url or cfg.rpc_url
    if not url:
        raise ConfigError(f"{source}: give the chain's node with --rpc-url")
    chain_id = int(cdoc["chain_id"])
    if cfg.chain_id is not None and cfg.chain_id != chain_id:
        raise ConfigError(f"contract.json names chain {chain_id}, the run's config pins {cfg.chain_id}")
    chain = Chain.connect(url, chain_id=chain_id, max_fee_gwei=cfg.max_fee_gwei,
                          priority_fee_gwei=cfg.priority_fee_gwei)
    if rpc_url:
        cfg = dataclasses.replace(cfg, rpc_url=rpc_url)
    parties = build_parties(cfg)
    if parties.genesis.hash.hex() != doc.get("genesis"):
        raise LearningChainError(f"{source}: its config builds genesis 0x{parties.genesis.hash.hex()}, the checkpoint "
                                 f"names 0x{doc.get('genesis')} (another version or other data?)")
    reward_wei = int(cdoc["reward_wei"])
    cparams = contract_params(cfg, parties, reward_wei)
    dep = Deployment(chain, cdoc["address"], cparams, block=int(cdoc["deploy_block"]))
    verify_deployment(dep, cdoc, cparams)
    f = dep.contract.functions
    if int(f.status().call()) != 1:
        raise ConfigError(f"{source}: the contract at {dep.address} is closed (finished): nothing to resume")
    keys = RunKeys.read(source / cdoc.get("keys", KEYS_DIR), pw, cfg.holders, cfg.miners)
    if keys.addresses() != {"wallets": cdoc.get("wallets"), "nodes": cdoc.get("nodes")}:
        raise ConfigError(f"{source}: the keys in {KEYS_DIR}/ are not the accounts contract.json names")
    state = doc.get("state") or {}
    if state.get("address") != dep.address:
        raise ConfigError(f"{source}: the checkpoint is of the contract at {state.get('address')}, contract.json "
                          f"names {dep.address}")
    mine, theirs = int(state["contract_round"]), dep.current_round()
    if theirs < mine:
        raise ConfigError(f"the contract at {dep.address} is at round {theirs}, behind the checkpoint's {mine}: "
                          "another chain, or a reorganised one")
    expect = replay_model(dep, [int(v) for v in state["model"]], mine, theirs)
    if dep.fixed_model() != expect:
        raise ConfigError(f"the contract's model at round {theirs} is not the checkpoint's model of round {mine} "
                          "carried through the chain's messages since")
    rows = list(doc.get("rows") or [])
    rows += recovered_rows(rows, mine, theirs)
    log.info("resuming the run at %s from round %d (the checkpoint had %d)", dep.address, theirs, mine)
    rundir = RunDir.adopt(source, target)
    started = time.perf_counter() - float(doc.get("elapsed", 0.0))

    def run(out: Path) -> dict:
        ckpt = Checkpointer(out, cfg, parties.genesis.hash, elapsed=float(doc.get("elapsed", 0.0)))
        backend = EthereumBackend.resume(cfg, parties, cparams, chain, reward_wei=reward_wei, out=out, dep=dep,
                                         keys=keys)
        ckpt(backend, rows, 0.0)
        return run_backend(cfg, parties, backend, out, started, progress, on_round, rows=rows, checkpoint=ckpt)

    return in_run_dir(target, run, rundir=rundir)
