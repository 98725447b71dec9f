"""One run loop for every backend: T rounds (or until the head meets
``target_error``), evaluated and reported the same way on the native chain and
on Ethereum. The model reported is the one on the head the honest parties
accepted: nothing bypasses the chain."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

from ..config import TrainConfig
from ..parties import Backend, Parties
from .report import Evaluator, backdoor_attack, common_summary, progress_bar, status_printer, write_outputs

__all__ = ["run_backend", "run_rounds"]


def run_rounds(cfg: TrainConfig, backend: Backend, evaluate: Evaluator, *, progress: Optional[bool] = None,
               on_round: Optional[Callable[[dict], None]] = None, rows: Optional[list] = None,
               checkpoint: Optional[Callable] = None) -> tuple[list, str]:
    """Step ``backend`` round by round; returns (metrics rows, why it stopped:
    ``rounds``, ``target-error`` or ``interrupted`` after Ctrl-C). ``rows``: the rows
    of the rounds a resumed run already played (it goes on from the next one);
    ``checkpoint(backend, rows, seconds)`` is called after every round."""
    rows = list(rows or [])
    stopped_by = "rounds"
    started = time.perf_counter()
    bar = progress_bar(cfg, progress, backend.label, backend.unit, initial=len(rows))
    has_backdoor = getattr(evaluate, "backdoor", None) is not None
    try:
        for t in range(len(rows) + 1, cfg.rounds + 1):
            res = backend.step()
            err, loss = (None, None)
            backdoor = {"attack_success_rate": None} if has_backdoor else {}
            if t % cfg.eval_every == 0 or t == cfg.rounds:
                err, loss = evaluate(res.model)
                if has_backdoor:
                    backdoor["attack_success_rate"] = evaluate.attack_success(res.model)
            row = {
                "round": t,
                "height": res.height,
                "test_error": err,
                **backdoor,
                "train_loss": loss,
                "selected_byzantine": res.selected_byzantine,
                "winner": res.winner,
                "byzantine_winner": int(res.byzantine_winner),
                "rejected": int(res.rejected),
                **res.extra,
                "seconds": round(res.seconds, 6),
            }
            rows.append(row)
            if checkpoint is not None:
                checkpoint(backend, rows, time.perf_counter() - started)
            if on_round:
                on_round(row)
            bar.update(1)
            if err is not None:
                bar.set_postfix({"err": f"{err:.4f}", backend.height_key: res.height})
            if cfg.target_error is not None and err is not None and err <= cfg.target_error:
                stopped_by = "target-error"
                break
    except KeyboardInterrupt:
        stopped_by = "interrupted"  # the rounds done so far are written, marked as interrupted
        backend.abort()
    except BaseException:
        backend.abort()
        raise
    finally:
        bar.close()
    return rows, stopped_by


def run_backend(cfg: TrainConfig, parties: Parties, backend: Backend, out: Path, started: float,
                progress: Optional[bool], on_round: Optional[Callable[[dict], None]], *,
                rows: Optional[list] = None, checkpoint: Optional[Callable] = None) -> dict:
    """The whole run on ``backend``, written into ``out``; returns the summary.
    ``rows`` and ``checkpoint``: see :func:`run_rounds`."""
    try:
        evaluate = Evaluator(parties.spec, parties.dataset, backdoor=backdoor_attack(parties))
        rows, stopped_by = run_rounds(cfg, backend, evaluate, progress=progress, on_round=on_round, rows=rows,
                                      checkpoint=checkpoint)
        say = status_printer(cfg, progress)
        backend.finish(stopped_by, say)
        head = backend.head
        try:
            summary, baseline = common_summary(cfg, parties, rows, head, evaluate, stopped_by, started, say=say)
        except KeyboardInterrupt:  # during the baseline: the rounds are done, the baseline is left out
            summary, baseline = common_summary(cfg, parties, rows, head, evaluate, "interrupted", started)
        summary.update(backend.summary(summary, baseline, say))
        say("writing summary.json, metrics.csv, model.npy and curve.png ...")
        write_outputs(out, summary, rows, baseline["curve"], parties, head)
        backend.write(out, summary)
    finally:
        backend.close()
    summary["out"] = str(out)
    return summary
