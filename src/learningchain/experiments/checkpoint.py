"""Checkpoints and ``learningchain train --resume DIR``: the chain is the checkpoint.

A native run writes, after every round, ``checkpoint.json`` (the config, the
genesis hash, the metrics rows so far, the seconds spent, and the state that is
not on the chain: the generators of the holders and of the block-writer draw, the
holders' keys and spend, the network's counters) and ``checkpoint-messages.bin``
(the messages waiting on the head, when the holders have answered it and no block
took them yet), each by an atomic rename. The chain itself is ``chain.sqlite``,
written block by block.

To resume, the run's parties are built again from the config (same genesis); the
checkpoint's fields (:func:`check_native_checkpoint`) and the stored chain (replayed
as ``chain verify`` replays it) are checked before anything is written, so a refused
resume leaves the run as it was; then the store is cut back to the checkpoint's
head (a block written after the last checkpoint, before a SIGKILL, is forgotten and
made again), every other node
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
import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import TrainConfig
from ..errors import ConfigError, DecodeError, LearningChainError
from ..protocol.message import decode_message
from ..protocol.params import MAX_DIM

__all__ = ["CHECKPOINT", "PENDING", "write_checkpoint", "read_checkpoint", "check_native_checkpoint", "find_resumable",
           "Checkpointer"]

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
        config = doc.get("config")
        if not isinstance(config, dict):
            raise LearningChainError(f"the checkpoint's config is {_kind(config)}, not an object of run options")
        try:
            return TrainConfig.from_dict(config)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LearningChainError(f"the checkpoint's config is unreadable ({exc})") from None


# -- the checkpoint's form, checked before a resume writes anything -----------------------

def _kind(value) -> str:
    if value is None:
        return "null"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name} ({json.dumps(value, default=str)[:40]})"


class _Checker:
    """Raises LearningChainError naming the file and the field that is wrong."""

    def __init__(self, where: Path):
        self.where = where

    def fail(self, field: str, what: str):
        raise LearningChainError(f"{self.where / CHECKPOINT}: {field} {what}; the checkpoint is damaged, the run "
                                 "was left as it was")

    def get(self, doc: dict, key: str, field: str):
        if key not in doc:
            self.fail(field, "is missing")
        return doc[key]

    def obj(self, doc: dict, key: str, field: str) -> dict:
        value = self.get(doc, key, field)
        if not isinstance(value, dict):
            self.fail(field, f"is {_kind(value)}, not an object")
        return value

    def count(self, value, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.fail(field, f"is {_kind(value)}, not a whole number >= 0")
        return value

    def hexbytes(self, value, field: str, size: Optional[int] = None) -> bytes:
        try:
            raw = bytes.fromhex(value) if isinstance(value, str) else None
        except ValueError:
            raw = None
        if raw is None or (size is not None and len(raw) != size):
            want = f"{size} bytes in hex" if size is not None else "bytes in hex"
            self.fail(field, f"is {_kind(value)}, not {want}")
        return raw

    def hexlist(self, value, field: str, size: int, what: str) -> None:
        """A list of ``size``-byte values in hex (``what`` names them)."""
        if not isinstance(value, list):
            self.fail(field, f"is {_kind(value)}, not a list of {what}")
        for i, item in enumerate(value):
            self.hexbytes(item, f"{field}[{i}]", size)

    def rng(self, value, field: str) -> None:
        """A state of the PCG64 generator every seeded party of a run draws from."""
        try:
            np.random.PCG64().state = value
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError):
            self.fail(field, f"is {_kind(value)}, not the state of a PCG64 generator")

    def counter(self, value, field: str, index_keys: bool = False) -> None:
        if not isinstance(value, dict):
            self.fail(field, f"is {_kind(value)}, not an object")
        for k, n in value.items():
            if index_keys:
                if not k.isdigit():
                    self.fail(f"{field}[{k!r}]", "is not a node index")
            self.count(n, f"{field}[{k!r}]")


#: What a metrics row of a native run holds besides optional columns (attack success, backend extras).
_ROW_COUNTS = ("round", "height", "selected_byzantine", "winner", "byzantine_winner", "rejected")


def _check_rows(c: _Checker, rows, rounds: int) -> None:
    """The metrics rows of the rounds played: one per round, well-formed cells. Their values
    are the run's own record (metrics.csv), checked here for their form; the resume checks
    their heights and test errors against the chain (``train.check_stored_chain``), the
    other columns are not recomputed."""
    if not isinstance(rows, list):
        c.fail("rows", f"is {_kind(rows)}, not a list of metrics rows")
    if len(rows) != rounds:
        c.fail("rows", f"holds {len(rows)} rows, the checkpoint is of round {rounds}")
    keys = None
    last_height = 0
    for i, row in enumerate(rows):
        at = f"rows[{i}]"
        if not isinstance(row, dict):
            c.fail(at, f"is {_kind(row)}, not a metrics row")
        if keys is None:
            keys = list(row)
        elif list(row) != keys:
            c.fail(at, f"has the columns {list(row)}, the rows before it {keys}")
        for key in _ROW_COUNTS:
            c.count(c.get(row, key, f"{at}.{key}"), f"{at}.{key}")
        if row["round"] != i + 1:
            c.fail(f"{at}.round", f"is {row['round']}, not {i + 1}")
        if row["height"] < last_height:
            c.fail(f"{at}.height", f"is {row['height']}, below the round before ({last_height})")
        last_height = row["height"]
        err = c.get(row, "test_error", f"{at}.test_error")
        if err is not None and (isinstance(err, bool) or not isinstance(err, (int, float)) or not 0 <= err <= 1):
            c.fail(f"{at}.test_error", f"is {_kind(err)}, not an error rate in [0, 1]")
        loss = c.get(row, "train_loss", f"{at}.train_loss")
        if loss is not None and (isinstance(loss, bool) or not isinstance(loss, (int, float)) or math.isnan(loss)
                                 or loss < 0):
            c.fail(f"{at}.train_loss", f"is {_kind(loss)}, not a loss >= 0")
        for key, value in row.items():
            if value is not None and not isinstance(value, (bool, int, float, str)):
                c.fail(f"{at}.{key}", f"is {_kind(value)}, not a number or text")


def _check_holder(c: _Checker, state, field: str) -> None:
    from ..crypto import PrivateKey

    if not isinstance(state, dict):
        c.fail(field, f"is {_kind(state)}, not a holder's state")
    rng = c.get(state, "rng", f"{field}.rng")
    if rng is not None:
        c.rng(rng, f"{field}.rng")
    key = c.hexbytes(c.get(state, "key", f"{field}.key"), f"{field}.key", 32)
    try:
        PrivateKey(key)
    except Exception:  # coincurve refuses 0 and values >= the curve order
        c.fail(f"{field}.key", "is not a valid secp256k1 private key")
    c.count(c.get(state, "sent", f"{field}.sent"), f"{field}.sent")
    spent = c.get(state, "spent", f"{field}.spent")
    try:
        ok = isinstance(spent, str) and Fraction(spent) >= 0
    except (ValueError, ZeroDivisionError):
        ok = False
    if not ok:
        c.fail(f"{field}.spent", f"is {_kind(spent)}, not a privacy spend >= 0 written as a fraction")
    stopped = c.get(state, "stopped", f"{field}.stopped")
    if stopped is not None and not isinstance(stopped, str):
        c.fail(f"{field}.stopped", f"is {_kind(stopped)}, not text")


def check_native_checkpoint(doc: dict, where: Path, holders: int) -> None:
    """Every field a native run's resume reads from ``doc`` (the checkpoint of the run in
    ``where``, whose config builds ``holders`` holders) is there and of its form, so that
    a damaged checkpoint is refused with the field named before anything is written."""
    c = _Checker(Path(where))
    rounds = c.count(c.get(doc, "round", "round"), "round")
    c.hexbytes(c.get(doc, "genesis", "genesis"), "genesis", 32)
    elapsed = c.get(doc, "elapsed", "elapsed")
    if (isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)) or not math.isfinite(elapsed)
            or elapsed < 0):
        c.fail("elapsed", f"is {_kind(elapsed)}, not a number of seconds >= 0")
    _check_rows(c, c.get(doc, "rows", "rows"), rounds)
    state = c.obj(doc, "state", "state")
    if c.count(c.get(state, "round", "state.round"), "state.round") != rounds:
        c.fail("state.round", f"is {state['round']}, the checkpoint's round {rounds}")
    c.hexbytes(c.get(state, "head", "state.head"), "state.head", 32)
    c.rng(c.get(state, "rng", "state.rng"), "state.rng")
    c.count(c.get(state, "mining_tries", "state.mining_tries"), "state.mining_tries")
    c.count(c.get(state, "selected_byzantine_total", "state.selected_byzantine_total"),
            "state.selected_byzantine_total")
    c.hexlist(c.get(state, "answered", "state.answered"), "state.answered", 32, "block hashes")
    rejected = c.obj(state, "rejected_blocks", "state.rejected_blocks")
    for h, reason in rejected.items():
        c.hexbytes(h, f"state.rejected_blocks key {h[:20]!r}", 32)
        if not isinstance(reason, str):
            c.fail(f"state.rejected_blocks[{h[:20]!r}]", f"is {_kind(reason)}, not a reason")
    c.counter(c.get(state, "rejected_by_node", "state.rejected_by_node"), "state.rejected_by_node", index_keys=True)
    c.counter(c.get(state, "messages_rejected", "state.messages_rejected"), "state.messages_rejected")
    c.hexlist(c.get(state, "byzantine_identities", "state.byzantine_identities"), "state.byzantine_identities", 20,
              "identities")
    saved = c.get(state, "holders", "state.holders")
    if not isinstance(saved, list):
        c.fail("state.holders", f"is {_kind(saved)}, not a list of holders' states")
    if len(saved) != holders:
        c.fail("state.holders", f"holds {len(saved)} holders' states, the run's config has {holders} holders")
    for i, h in enumerate(saved):
        _check_holder(c, h, f"state.holders[{i}]")
