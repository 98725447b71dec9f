"""What the explorer shows, read from a run directory or a node's data directory.

Every read opens the chain store read-only (``node.store.open_readonly``: SQLite's
``mode=ro``, never a write) and closes it again, so the explorer can watch a
chain that a run or a node is writing, and can never change it.

A run that is still going writes into a hidden sibling of its ``--out``
(``.<name>.new-<pid>``, see experiments/rundir.py) and moves it into place when it
ends; until then the view follows that directory, so a live run is seen live.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import DecodeError, LearningChainError, StoreError
from ..node.store import open_readonly
from ..protocol.transition import params_of_genesis

__all__ = ["ChainView", "NotFound"]

#: Most blocks one page of the block list holds.
MAX_PAGE = 100


class NotFound(LearningChainError):
    """No such block (or nothing to show there yet)."""


def _hex(b: bytes) -> str:
    return "0x" + bytes(b).hex()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_json(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class ChainView:
    """A read-only view of one chain and, for a run, its summary and metrics.

    ``path``: a run directory, a node data directory, or a chain.sqlite file.
    ``node_status``: for the explorer a node serves, a callable returning the
    node's /status document (peers, sync state).
    """

    def __init__(self, path: str | os.PathLike, *, node_status: Optional[Callable[[], dict]] = None):
        self.path = Path(path)
        self.node_status = node_status

    # -- where the data is ------------------------------------------------------
    def live_dir(self) -> Optional[Path]:
        """The directory a still-running run writes into, if there is one."""
        parent, name = self.path.parent, self.path.name
        best = None
        try:
            candidates = list(parent.glob(f".{name}.new-*"))
        except OSError:
            return None
        for cand in candidates:
            suffix = cand.name.rsplit("-", 1)[-1]
            if suffix.isdigit() and _pid_alive(int(suffix)) and (cand / "chain.sqlite").exists():
                if best is None or cand.stat().st_mtime > best.stat().st_mtime:
                    best = cand
        return best

    def data_dir(self) -> tuple[Path, bool]:
        """(directory holding the chain, whether a run is still writing it)."""
        if self.path.is_file():
            return self.path.parent, False
        live = self.live_dir()
        if live is not None:
            return live, True
        return self.path, False

    def _store(self):
        where = self.path if self.path.is_file() else self.data_dir()[0] / "chain.sqlite"
        if not where.exists():
            raise NotFound(f"no chain yet at {where}")
        return open_readonly(where)

    def _read(self, fn):
        store = self._store()
        try:
            return fn(store)
        except (sqlite3.DatabaseError, DecodeError, TypeError, ValueError) as exc:
            raise StoreError(f"{store.path}: the store cannot be read ({exc})") from None
        finally:
            store.close()

    # -- documents ----------------------------------------------------------------
    def head(self) -> dict:
        def read(store):
            h = store.head_hash()
            block = store.get(h) if h is not None else None
            if block is None:
                raise NotFound("the chain has no head yet")
            return {"hash": _hex(block.hash), "height": block.height, "timestamp": block.header.timestamp}

        out = read_or_none(self._read, read) or {"hash": None, "height": None, "timestamp": None}
        out["live"] = self.data_dir()[1]
        return out

    def overview(self) -> dict:
        directory, live = self.data_dir()
        summary = _read_json(directory / "summary.json") if not live else None
        doc = {"path": str(self.path), "live": live, "head": self.head(), "summary": _public_summary(summary)}
        doc["genesis"] = read_or_none(self._read, _genesis_info)
        if self.node_status is not None:
            doc["node"] = self._node_doc()
        return doc

    def _node_doc(self) -> dict:
        try:
            return self.node_status()
        except Exception as exc:  # the node's state is its own concern; the page shows what it can
            return {"error": str(exc)}

    def metrics(self) -> dict:
        """Per-round test error and training loss and the baseline curve: metrics.csv of a
        finished run, or the rows a running one checkpoints after every round."""
        directory, live = self.data_dir()
        rows = []
        try:
            with open(directory / "metrics.csv", newline="") as fh:
                for row in csv.DictReader(fh):
                    rows.append({k: _number(v) for k, v in row.items()})
        except OSError:
            checkpoint = _read_json(directory / "checkpoint.json") or {}
            rows = [r for r in checkpoint.get("rows") or [] if isinstance(r, dict)]
        if not rows and self.node_status is not None:  # a node: the heads it evaluated
            history = self._node_doc().get("test_error_history") or []
            rows = [{"round": int(h), "test_error": e} for h, e in history]
        summary = _read_json(directory / "summary.json") or {}
        return {"rows": rows, "baseline": summary.get("baseline_curve") or [],
                "baseline_test_error": summary.get("baseline_test_error")}

    def blocks(self, *, before: Optional[int] = None, limit: int = 25) -> dict:
        """The canonical chain from height ``before - 1`` (default: the head) downward."""
        limit = max(1, min(int(limit), MAX_PAGE))
        byzantine = self._byzantine_identities()

        def read(store):
            head = store.get(store.head_hash())
            top = head.height if before is None else min(int(before) - 1, head.height)
            out = []
            for height in range(top, max(-1, top - limit), -1):
                block = store.get(store.canonical_hash(height))
                out.append(_block_row(block, byzantine))
            return {"head_height": head.height, "blocks": out, "next": top - limit + 1 if top - limit >= 0 else None}

        return self._read(read)

    def block(self, ref: str) -> dict:
        """One block by hash (0x-hex) or height, with its messages."""
        byzantine = self._byzantine_identities()

        def read(store):
            if ref.isascii() and ref.isdigit():  # str.isdigit alone takes other scripts' digits
                height = int(ref)
                h = store.canonical_hash(height) if height < 1 << 62 else None  # SQLite's integers
            else:
                try:
                    h = bytes.fromhex(ref[2:] if ref.startswith("0x") else ref)
                except ValueError:
                    raise NotFound(f"{ref!r} is neither a height nor a block hash") from None
            block = store.get(h) if h is not None else None
            if block is None:
                raise NotFound(f"no block {ref} in this chain")
            canonical = store.canonical_hash(block.height) == block.hash
            return _block_detail(block, byzantine, canonical)

        return self._read(read)

    def _byzantine_identities(self) -> set:
        summary = _read_json(self.data_dir()[0] / "summary.json") or {}
        return {str(a).lower() for a in summary.get("byzantine_identities") or []}


def read_or_none(read, fn):
    try:
        return read(fn)
    except NotFound:
        return None


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    return int(value) if value.is_integer() and "." not in str(text) else value


#: Summary keys the overview shows (the rest is in summary.json itself).
_SUMMARY_KEYS = ("dataset", "model", "parameters", "holders", "miners", "byzantine", "attack", "aggregator", "l",
                 "test_error", "train_loss", "baseline_test_error", "rounds", "height", "head_hash", "genesis_hash",
                 "stopped_by", "interrupted", "epsilon_per_round", "epsilon_total", "epsilon_total_tight",
                 "delta_tight", "privacy", "rejected_blocks", "rejected_by_reason", "rejected_messages",
                 "selected_byzantine_total", "wall_seconds")


def _public_summary(summary: Optional[dict]) -> Optional[dict]:
    if summary is None:
        return None
    return {k: summary[k] for k in _SUMMARY_KEYS if k in summary}


def _genesis_info(store) -> dict:
    genesis = store.get(store.canonical_hash(0))
    if genesis is None:
        raise NotFound("no genesis")
    params = params_of_genesis(genesis)
    return {"hash": _hex(genesis.hash), "aggregator": params.aggregator, "holders": params.holders,
            "dim": params.dim, "consensus": params.consensus, "mechanism": params.mechanism,
            "epsilon": params.epsilon, "schedule": params.schedule, "rounds": params.rounds,
            "members": len(params.members), "budget": params.budget}


def _block_row(block, byzantine: set) -> dict:
    h = block.header
    selected = [block.messages[i] for i in block.selection]
    return {"height": h.height, "hash": _hex(block.hash), "miner": _hex(h.miner), "difficulty": h.difficulty,
            "timestamp": h.timestamp, "messages": len(block.messages), "selected": len(selected),
            "selected_byzantine": sum(1 for m in selected if _hex(m.identity) in byzantine)}


def _block_detail(block, byzantine: set, canonical: bool) -> dict:
    h = block.header
    chosen = set(block.selection)
    messages = [{"index": i, "identity": _hex(m.identity), "norm": float(m.norm), "round": m.round,
                 "selected": i in chosen, "byzantine": _hex(m.identity) in byzantine if byzantine else None}
                for i, m in enumerate(block.messages)]
    header = {"height": h.height, "hash": _hex(block.hash), "parent": _hex(h.parent), "genesis": _hex(h.genesis),
              "timestamp": h.timestamp, "params_hash": _hex(h.params_hash), "messages_root": _hex(h.messages_root),
              "selection_hash": _hex(h.selection_hash), "model_hash": _hex(h.model_hash), "miner": _hex(h.miner),
              "difficulty": h.difficulty, "seal": _hex(h.seal), "version": h.version}
    return {"header": header, "canonical": canonical, "messages": messages, "selection": list(block.selection),
            "model": {"dim": int(block.model.shape[0]), "norm": float(np.linalg.norm(block.model))}}
