"""The interface a chain offers the run loop (``experiments/loop.py``).

The native chain (``experiments/native.py`` over the in-process network) and
the Ethereum contract (``ethereum/runner.py``) each implement :class:`Backend`;
the loop, the evaluator and the report writer are written once against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

__all__ = ["Backend", "RoundOutcome"]


@dataclass(frozen=True)
class RoundOutcome:
    """One round as the run reports it.

    ``selected_byzantine``: Byzantine messages the head block selected;
    ``rejected``: honest nodes refused a block this round (native) or the
    aggregation failed (Ethereum); ``extra``: the backend's own columns of
    ``metrics.csv``, written before ``seconds``.
    """

    height: int
    model: np.ndarray
    head_changed: bool
    selected_byzantine: int
    winner: int
    byzantine_winner: bool
    rejected: bool
    seconds: float
    extra: dict = field(default_factory=dict)


class Backend(Protocol):
    label: str  # the progress bar's description
    unit: str  # what a round makes: "block", "round"
    height_key: str  # the progress bar's name for the height

    @property
    def head(self):
        """The head the honest parties accepted: ``height``, ``hash`` and ``model``."""

    def step(self) -> RoundOutcome:
        """Play one round."""

    def abort(self) -> None:
        """The rounds stopped on an exception or Ctrl-C: release what must not be left open."""

    def finish(self, stopped_by: str, say: Callable[[str], None]) -> None:
        """The rounds are over (``stopped_by``): settle the chain before the summary is read."""

    def summary(self, common: dict, baseline: dict, say: Callable[[str], None]) -> dict:
        """The backend's keys of summary.json, added to ``common`` (the keys every
        backend reports); ``baseline``: the centralized baseline's results."""

    def write(self, out: Path, summary: dict) -> None:
        """The backend's own files of the run directory."""

    def close(self) -> None:
        """Release stores and connections."""
