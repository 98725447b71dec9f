"""Checkpoints and ``learningchain train --resume DIR``: the chain is the checkpoint.

A native run writes, after every round, ``checkpoint.json`` (the config, the
genesis hash, the metrics rows so far, the seconds spent, and the state that is
not on the chain: the generators of the holders and of the block-writer draw, the
holders' keys and spend, the network's counters) and ``checkpoint-messages.bin``
(the messages waiting on the head, when the holders have answered it and no block
took them yet), each by an atomic rename. The chain itself is ``chain.sqlite``,
written block by block.

To resume, the run's parties are built again from the config (same genesis), the
store is cut back to the checkpoint's head (a block written after the last
checkpoint, before a SIGKILL, is forgotten and made again), every other node
validates the stored chain by recomputation as if it heard it from the network,
and the rounds go on from the next one. With a seeded generator the run ends
with the same head, model and metrics as a run that was never interrupted; with
``secure_rng`` (the OS generator, which cannot be replayed) it goes on with fresh
draws.

Where the run is: ``--resume DIR`` takes DIR itself when it holds an interrupted
run (Ctrl-C leaves it there, or beside an older run as ``DIR.interrupted-TIME``),
or else the directory a killed run left beside DIR (``.DIR.new-PID``, whose
process is gone).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from ..config import TrainConfig
from ..errors import ConfigError, DecodeError, LearningChainError
from ..protocol.message import decode_message
from ..protocol.params import MAX_DIM

__all__ = ["CHECKPOINT", "PENDING", "write_checkpoint", "read_checkpoint", "find_resumable", "Checkpointer"]

CHECKPOINT = "checkpoint.json"
PENDING = "checkpoint-messages.bin"
FORMAT = 1


def _write_atomic(path: Path, data: bytes) -> None:
    """Write, then rename into place: a killed process leaves the old file or the new
    one, never half of one. No fsync: like the chain store (WAL, synchronous=NORMAL),
    a checkpoint survives the process, not a power cut, and it is written every round."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holders' keys are in it
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def write_checkpoint(out: Path, doc: dict, pending: list) -> None:
    """The pending messages first, then the document that names how many there are."""
    _checkpoint_writer(out, doc, pending)()


def _checkpoint_writer(out: Path, doc: dict, pending: list):
    """The checkpoint's bytes, made now, and a function that writes them."""
    blob = b"".join(len(raw).to_bytes(4, "little") + raw for raw in (m.encode() for m in pending))
    text = json.dumps(dict(doc, format=FORMAT, pending=len(pending)), separators=(",", ":")).encode()

    def write() -> None:
        _write_atomic(out / PENDING, blob)
        _write_atomic(out / CHECKPOINT, text)

    return write


def read_checkpoint(run_dir: Path) -> tuple[dict, list]:
    """(checkpoint document, pending messages); LearningChainError when either is unreadable."""
    try:
        doc = json.loads((run_dir / CHECKPOINT).read_text())
        blob = (run_dir / PENDING).read_bytes()
    except (OSError, ValueError) as exc:
        raise LearningChainError(f"{run_dir}: no readable checkpoint ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise LearningChainError(f"{run_dir / CHECKPOINT}: not a checkpoint of this version")
    messages, at = [], 0
    try:
        while at < len(blob):
            size = int.from_bytes(blob[at:at + 4], "little")
            messages.append(decode_message(blob[at + 4:at + 4 + size], max_dim=MAX_DIM))
            at += 4 + size
    except (DecodeError, ValueError) as exc:
        raise LearningChainError(f"{run_dir / PENDING}: damaged ({exc})") from None
    if len(messages) != doc.get("pending"):
        raise LearningChainError(f"{run_dir / PENDING}: {len(messages)} messages, the checkpoint names "
                                 f"{doc.get('pending')}")
    return doc, messages


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def find_resumable(path: Path) -> tuple[Path, Path]:
    """(directory holding the interrupted run, the run directory it ends in)."""
    path = Path(path)
    if (path / CHECKPOINT).exists():
        summary = _summary(path)
        if summary is not None and not summary.get("interrupted"):
            raise ConfigError(f"{path} holds a finished run: nothing to resume")
        return path, path
    left = []
    for cand in path.parent.glob(f".{path.name}.new-*"):
        pid = cand.name.rsplit("-", 1)[-1]
        if pid.isdigit() and (cand / CHECKPOINT).exists():
            if not _pid_gone(int(pid)):
                raise ConfigError(f"{cand} belongs to a run that is still going (process {pid})")
            left.append(cand)
    if not left:
        if path.exists():
            raise ConfigError(f"{path} holds no checkpoint to resume (a run of the native backend writes "
                              f"{CHECKPOINT} after every round)")
        raise ConfigError(f"{path}: no such run, and no interrupted run beside it")
    return max(left, key=lambda p: p.stat().st_mtime), path


def _summary(path: Path) -> Optional[dict]:
    try:
        data = json.loads((path / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Checkpointer:
    """Writes a native run's checkpoint after every round (see the module's docstring)."""

    def __init__(self, out: Path, cfg: TrainConfig, genesis_hash: bytes, *, elapsed: float = 0.0):
        self.out = Path(out)
        self.config = cfg.to_dict()
        self.genesis = genesis_hash.hex()
        self.elapsed = elapsed  # seconds spent before this process took the run over

    def __call__(self, backend, rows: list, seconds: float) -> None:
        state, pending = backend.checkpoint_state()
        doc = {"config": self.config, "genesis": self.genesis, "round": len(rows), "rows": rows,
               "elapsed": self.elapsed + seconds, "state": state}
        write = _checkpoint_writer(self.out, doc, pending)
        # a checkpoint names the head block: a chain store that writes behind writes it
        # once that block is on disk, so no checkpoint is ever ahead of the chain
        after = getattr(backend, "after_stored", None)
        if after is None:
            write()
        else:
            after(write)

    @staticmethod
    def config_of(doc: dict) -> TrainConfig:
        try:
            return TrainConfig.from_dict(doc["config"])
        except (KeyError, TypeError) as exc:
            raise LearningChainError(f"the checkpoint's config is unreadable ({exc})") from None
