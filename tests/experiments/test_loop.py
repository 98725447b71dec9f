"""One run loop for every backend: rows, stopping, and what it tells the backend."""

import numpy as np
import pytest

from learningchain.config import TrainConfig
from learningchain.experiments.loop import run_rounds
from learningchain.parties import RoundOutcome


class FakeBackend:
    label, unit, height_key = "fake", "block", "h"

    def __init__(self, errors, fail_at=None):
        self.errors = list(errors)
        self.fail_at = fail_at
        self.t = 0
        self.aborted = 0

    def step(self) -> RoundOutcome:
        self.t += 1
        if self.t == self.fail_at:
            raise self.fail_exc
        return RoundOutcome(height=self.t, model=np.array([self.errors[self.t - 1]]), head_changed=True,
                            selected_byzantine=self.t % 2, winner=0, byzantine_winner=False, rejected=False,
                            seconds=0.5, extra={"gas": 100 * self.t})

    def abort(self):
        self.aborted += 1


def evaluate(w):
    return float(w[0]), 2 * float(w[0])


def cfg(**kw):
    return TrainConfig(rounds=4, progress=False, **kw).resolved()


def test_a_row_per_round_with_the_backends_columns_before_seconds():
    rows, stopped_by = run_rounds(cfg(), FakeBackend([0.4, 0.3, 0.2, 0.1]), evaluate)
    assert stopped_by == "rounds" and [r["round"] for r in rows] == [1, 2, 3, 4]
    assert list(rows[0]) == ["round", "height", "test_error", "train_loss", "selected_byzantine", "winner",
                             "byzantine_winner", "rejected", "gas", "seconds"]
    assert rows[-1]["test_error"] == 0.1 and rows[-1]["train_loss"] == 0.2 and rows[-1]["gas"] == 400


def test_the_loop_evaluates_every_eval_every_rounds_and_the_last():
    rows, _ = run_rounds(cfg(eval_every=3), FakeBackend([0.4, 0.3, 0.2, 0.1]), evaluate)
    assert [r["test_error"] is not None for r in rows] == [False, False, True, True]


def test_the_loop_stops_at_the_target_error():
    rows, stopped_by = run_rounds(cfg(target_error=0.3), FakeBackend([0.4, 0.3, 0.2, 0.1]), evaluate)
    assert stopped_by == "target-error" and len(rows) == 2


def test_ctrl_c_keeps_the_rounds_done_and_a_failure_aborts_the_backend_and_is_raised():
    backend = FakeBackend([0.4, 0.3, 0.2, 0.1], fail_at=3)
    backend.fail_exc = KeyboardInterrupt()
    rows, stopped_by = run_rounds(cfg(), backend, evaluate)
    assert stopped_by == "interrupted" and len(rows) == 2 and backend.aborted == 1
    backend = FakeBackend([0.4, 0.3, 0.2, 0.1], fail_at=2)
    backend.fail_exc = RuntimeError("chain gone")
    with pytest.raises(RuntimeError, match="chain gone"):
        run_rounds(cfg(), backend, evaluate)
    assert backend.aborted == 1


def test_on_round_sees_each_row():
    seen = []
    run_rounds(cfg(), FakeBackend([0.4, 0.3, 0.2, 0.1]), evaluate, on_round=seen.append)
    assert [r["round"] for r in seen] == [1, 2, 3, 4]
