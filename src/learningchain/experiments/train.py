"""``learningchain train``: one LearningChain run, end to end, on the real protocol.

Builds the parties of the run from a :class:`~learningchain.config.TrainConfig`
(``learningchain.parties``: data, holders, genesis, computing nodes), plays it
on a backend (the native chain, :mod:`.native`, or an Ethereum contract,
:mod:`learningchain.ethereum.runner`) through one run loop (:mod:`.loop`),
trains the centralized baseline on the pooled data, and writes the run
directory (:mod:`.report`): ``summary.json``, ``metrics.csv``, ``curve.png``,
``chain.sqlite``, ``model.npy`` and ``model.json``. The model reported is the
one on the head the honest parties accepted: nothing bypasses the chain.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import torch

from ..config import TrainConfig, check_honoured
from ..errors import ConfigError, LearningChainError, StoreError
from ..node import SQLiteStore
from ..node.store import DamagedStore, open_readonly
from ..node.verify import verify_chain
from ..parties import (GENESIS_TIME_MS, ChainSetup, Parties, apply_target_epsilon, build_chain_setup, build_miners,
                       build_params, build_parties, check_miners, resolve_noise_multiplier)
from .loop import run_backend
from .native import ATTACKER_CHAIN, NativeBackend
from .report import (Evaluator, backdoor_attack, common_summary, curve_figure, curve_title, progress_bar,
                     status_printer, write_curve)
from .checkpoint import Checkpointer, check_native_checkpoint, find_resumable, read_checkpoint
from .rundir import RunDir, check_out_dir, in_run_dir

# The builders moved to ``learningchain.parties`` and the report to ``.report``; the
# names other code imports from here stay importable.
__all__ = ["run_training", "resume_training", "run_training_ethereum", "build_params", "build_chain_setup", "build_parties",
           "build_miners", "check_miners", "apply_target_epsilon", "resolve_noise_multiplier", "ChainSetup",
           "Parties", "check_out_dir", "write_curve", "curve_figure", "curve_title", "Evaluator", "common_summary",
           "progress_bar", "status_printer", "GENESIS_TIME_MS", "ATTACKER_CHAIN"]


def run_training(cfg: TrainConfig, *, progress: Optional[bool] = None,
                 on_round: Optional[Callable[[dict], None]] = None, data=None) -> dict:
    """Run ``cfg`` on its backend and return the summary (also written to ``summary.json``);
    ``data``: a user's arrays or Dataset given from Python (``cfg.dataset`` = ``"user"``)."""
    cfg = cfg.resolved()
    check_honoured(cfg, "train")  # a key this run would ignore is refused, never silently dropped
    if cfg.backend == "ethereum":
        return run_training_ethereum(cfg, progress=progress, on_round=on_round, data=data)
    started = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    target = check_out_dir(cfg.out, cfg.dataset, force=cfg.force)
    parties = build_parties(cfg, data=data)  # refuses a bad configuration before anything is written
    check_miners(cfg)

    def run(out: Path) -> dict:
        backend = NativeBackend(cfg, parties, out)
        ckpt = Checkpointer(out, cfg, parties.genesis.hash) if backend.checkpointable else None
        return run_backend(cfg, parties, backend, out, started, progress, on_round, checkpoint=ckpt)

    return in_run_dir(target, run)


def resume_training(path, *, progress: Optional[bool] = None,
                    on_round: Optional[Callable[[dict], None]] = None, rpc_url: Optional[str] = None) -> dict:
    """Continue the interrupted run at ``path`` (``train --resume``): a native run from its
    chain and checkpoint (experiments/checkpoint.py), a full-mode Ethereum run from its
    contract (``experiments.ethereum_run.resume_training_ethereum``; ``rpc_url``: its node, when not
    the config's); returns the summary."""
    if (Path(path) / "contract.json").exists():
        from ..ethereum.runner import refuse_unresumable

        refuse_unresumable(Path(path))
    source, target = find_resumable(Path(path))
    doc, pending = read_checkpoint(source)
    cfg = Checkpointer.config_of(doc)
    if cfg.backend == "ethereum":
        from .ethereum_run import resume_training_ethereum

        return resume_training_ethereum(source, target, doc, cfg, rpc_url=rpc_url, progress=progress,
                                        on_round=on_round)
    if rpc_url is not None:
        raise ConfigError(f"{source}: --rpc-url applies to a run of the Ethereum backend, not this native run")
    if cfg.backend != "native":
        raise ConfigError(f"{source}: only native runs resume from a checkpoint")
    torch.set_num_threads(cfg.threads)
    parties = build_parties(cfg)
    # Everything is checked before anything is written: a refused resume leaves the run
    # directory, its checkpoint and its chain exactly as they were.
    check_native_checkpoint(doc, source, len(parties.holders))
    if parties.genesis.hash.hex() != doc["genesis"]:
        raise LearningChainError(f"{source}: its config builds genesis 0x{parties.genesis.hash.hex()}, the checkpoint "
                                 f"names 0x{doc['genesis']} (another version or other data?)")
    check_stored_chain(source, doc, parties)
    head = bytes.fromhex(doc["state"]["head"])
    store = SQLiteStore(source / "chain.sqlite", create=False)
    try:
        store.truncate_to(head)  # a block stored after the last checkpoint is made again
    finally:
        store.close()
    rundir = RunDir.adopt(source, target)
    started = time.perf_counter() - float(doc["elapsed"])

    def run(out: Path) -> dict:
        backend = NativeBackend(cfg, parties, out)
        backend.restore(doc["state"], pending)
        ckpt = Checkpointer(out, cfg, parties.genesis.hash, elapsed=float(doc["elapsed"]))
        return run_backend(cfg, parties, backend, out, started, progress, on_round, rows=doc["rows"],
                           checkpoint=ckpt)

    return in_run_dir(target, run, rundir=rundir)


def check_stored_chain(source: Path, doc: dict, parties: Parties) -> None:
    """The chain a native resume continues, checked read-only: every stored block replayed
    as ``learningchain chain verify`` replays it (node/verify.py), the genesis the run's,
    the checkpoint's head a block of its canonical chain at the height of the last metrics
    row, and each evaluated row's test error that of the model on the chain at that height.
    Raises StoreError (the chain) or LearningChainError (the checkpoint) naming what is wrong."""
    path = source / "chain.sqlite"
    left = "; the run was left as it was"
    if not path.is_file():
        raise StoreError(f"{path}: the run's chain is missing, there is nothing to continue")
    report = verify_chain(path)
    if not report.ok:
        where = f" at height {report.first_bad_height}" if report.first_bad_height is not None else ""
        reason = report.error.replace(where, "", 1) if where else report.error
        raise StoreError(f"{path}: the stored chain is invalid{where} ({reason}): a run does not continue "
                         f"a chain that `learningchain chain verify` refuses{left}")
    if report.genesis_hash != parties.genesis.hash:
        raise StoreError(f"{path}: the stored chain starts at genesis 0x{report.genesis_hash.hex()}, the run's "
                         f"config builds 0x{parties.genesis.hash.hex()}{left}")
    head = bytes.fromhex(doc["state"]["head"])
    rows = doc["rows"]
    try:
        store = open_readonly(path)
    except DamagedStore as exc:
        raise StoreError(f"{path}: {exc}{left}") from None
    try:
        block = store.get(head)
        if block is None or store.canonical_hash(block.height) != head:
            raise LearningChainError(f"{source}: the checkpoint's head 0x{head.hex()} is not a block of the stored "
                                     f"chain's canonical chain (height {report.height}){left}")
        last = rows[-1]["height"] if rows else 0
        if last != block.height:
            raise LearningChainError(f"{source}: the checkpoint's head is at height {block.height}, its last "
                                     f"metrics row at height {last}{left}")
        evaluate = None
        for i, row in enumerate(rows):
            if row["test_error"] is None:
                continue
            evaluate = evaluate or Evaluator(parties.spec, parties.dataset, backdoor=backdoor_attack(parties))
            model = store.get(store.canonical_hash(row["height"])).model
            err = evaluate.test_error(model)
            if abs(err - row["test_error"]) > max(1e-9, 1.5 / len(evaluate.ye)):
                raise LearningChainError(f"{source}: the checkpoint's metrics row {i + 1} records test error "
                                         f"{row['test_error']}, the model on the chain at height {row['height']} "
                                         f"has {err}{left}")
    finally:
        store.close()


def run_training_ethereum(cfg: TrainConfig, *, progress: Optional[bool] = None,
                          on_round: Optional[Callable[[dict], None]] = None, chain=None,
                          reward_wei: Optional[int] = None, data=None) -> dict:
    """Run ``cfg`` on Ethereum (``chain``: the embedded EVM or ``--rpc-url`` unless given)
    and return the summary: the native keys plus the chain's."""
    # web3, eth-tester and vyper are the optional ``ethereum`` extra
    from ..ethereum.runner import (DEFAULT_REWARD_WEI, check_ethereum, check_resumable, contract_params,
                                   make_backend, open_chain, resumable, secure_config)
    from .ethereum_run import KeepingRunDir

    cfg = cfg.resolved()
    reward_wei = DEFAULT_REWARD_WEI if reward_wei is None else reward_wei
    check_ethereum(cfg, reward_wei)
    started = time.perf_counter()
    chain = chain or open_chain(cfg)  # an unreachable --rpc-url is refused before anything is written
    cfg = secure_config(cfg, chain)  # a reachable chain: noise, batches and keys from the OS CSPRNG
    check_resumable(cfg, chain)  # its keys are kept encrypted: the password is there, or nothing starts
    target = check_out_dir(cfg.out, f"{cfg.dataset}-eth", force=cfg.force)
    parties = build_parties(cfg, data=data)
    cparams = contract_params(cfg, parties, reward_wei)

    keep = resumable(cfg, chain)

    def run(out: Path) -> dict:
        ckpt = Checkpointer(out, cfg, parties.genesis.hash) if keep else None
        backend = make_backend(cfg, parties, cparams, chain, reward_wei=reward_wei, out=out if keep else None,
                               checkpoint=ckpt)
        return run_backend(cfg, parties, backend, out, started, progress, on_round, checkpoint=ckpt)

    return in_run_dir(target, run, rundir=KeepingRunDir(target) if keep else None)
