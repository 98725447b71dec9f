"""``learningchain grid``: attack x aggregator x fraction-Byzantine grids.

One TOML file describes a grid the way ByzFL's benchmark configs do::

    [grid]
    name = "synthetic"
    attacks = ["gaussian", "sign-flip", "alie"]
    aggregators = ["mean", "median", "l-nearest", "l-nearest-bounded"]
    fractions = [0.1, 0.3, 0.45]   # of the K holders, rounded down
    seeds = [0]
    workers = 2                    # processes (at most 2)
    clean = true                   # also run every rule without attackers
    f = "byzantine"                # the f option of rules that have one
    alphas = [0.1, 1.0]            # optional non-IID axis: partition = "dirichlet",
                                   # dirichlet_alpha = each of these

    [train]                        # any `learningchain train` option
    dataset = "synthetic"
    rounds = 200

    [attack_options.sign-flip]     # per-attack options
    scale = 1.0

    [aggregator_options.multi-krum]
    m = 10

Every cell is a full ``run_training``: the holders, the computing nodes and
the chain are real, and the error reported is that of the model on the head
block honest nodes accepted. ``f = "byzantine"`` gives rules with an ``f``
option the true number of Byzantine holders (what ByzFL does; l-nearest keeps
its own ``l``), ``f = "default"`` leaves them at their honest-majority default,
and an integer sets it. Results go to ``results.csv`` (one row per cell and
seed) and ``heatmap.png`` (final test error, attacks x rules, one panel per
fraction); each cell's ``summary.json`` and ``metrics.csv`` stay under
``runs/``, while its chain database is deleted unless ``keep_chains = true``
(an MNIST cell's chain is over 100 MB). ``worst_case.csv``, ``WORST_CASE.md``
and ``worst_case.png`` score every rule by its worst attack (see
:mod:`.worstcase`). Cells already finished with the same configuration are not
run again, so an interrupted grid resumes; ``--ray ADDRESS`` runs the others as
tasks of a Ray cluster (see :mod:`.cluster`).
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from matplotlib.figure import Figure

from ..attacks.holders import make_holder_attack
from ..config import DATASET_DEFAULTS, TrainConfig, check_honoured, check_name, read_toml
from ..config.tables import GRID_MAX_WORKERS, GridTable, check_train_keys
from ..errors import ConfigError, LearningChainError
from ..protocol.aggregation import get_rule
from ..protocol.params import ProtocolParams
from . import cluster  # the module: tests stand in for its Ray connection
from .train import run_training
from .gridplot import CLEAN, heatmap_figure, plot_heatmap
from .worstcase import write_worst_case

__all__ = ["GridSpec", "Cell", "load_grid", "grid_cells", "run_grid", "plot_heatmap", "heatmap_figure", "read_results",
           "MAX_WORKERS", "RESULT_FIELDS"]

MAX_WORKERS = GRID_MAX_WORKERS
RESULT_FIELDS = ["cell", "dataset", "attack", "aggregator", "fraction", "alpha", "byzantine", "holders", "seed", "status",
                 "test_error", "baseline_test_error", "train_loss", "rounds", "height", "selected_byzantine_total",
                 "rejected_blocks", "wall_seconds", "error"]


@dataclass(frozen=True)
class GridSpec:
    name: str
    attacks: tuple
    aggregators: tuple
    fractions: tuple
    base: dict
    seeds: tuple = (0,)
    workers: int = MAX_WORKERS
    clean: bool = True
    f: object = "byzantine"
    keep_chains: bool = False
    attack_options: dict = field(default_factory=dict)
    aggregator_options: dict = field(default_factory=dict)
    alphas: tuple = ()

    @property
    def holders(self) -> int:
        return int(TrainConfig.from_dict(self.base).resolved().holders)


@dataclass(frozen=True)
class Cell:
    attack: str
    aggregator: str
    fraction: float
    byzantine: int
    seed: int
    config: dict  # TrainConfig fields
    alpha: Optional[float] = None  # the Dirichlet alpha of a grid with an alphas axis

    @property
    def id(self) -> str:
        tail = "" if self.alpha is None else f"__a{self.alpha:g}"
        return f"{self.attack}__{self.aggregator}__b{self.byzantine}__s{self.seed}{tail}"


def load_grid(path: str | Path, *, overrides: Optional[dict] = None) -> GridSpec:
    """Read and check a grid config (unknown keys and bad values are refused):
    the [grid] table and the option tables through the config package, then
    every cell's train config, all before anything runs."""
    path = Path(path)
    data = read_toml(path, "grid config")
    unknown = sorted(set(data) - {"grid", "train", "attack_options", "aggregator_options"})
    if unknown:
        raise ConfigError(f"grid config {path}: unknown table(s) {unknown}; known: grid, train, attack_options, "
                          "aggregator_options")
    if not isinstance(data.get("grid"), dict):
        raise ConfigError(f"grid config {path} needs a [grid] table")
    try:
        grid = GridTable.from_dict(data["grid"])
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("unknown [grid] option", "[grid] has unknown key")) from None
    check_train_keys(data.get("train", {}), "[train] ")
    base = dict(data.get("train", {}))
    base.update(overrides or {})
    for key in ("byzantine", "attack", "aggregator", "attack_options", "aggregator_options", "seed", "out",
                "force"):
        if key in base:
            raise ConfigError(f"[train] must not set {key!r}: the grid sets it for every cell")
    if grid.alphas and ("dirichlet_alpha" in base or base.get("partition", "dirichlet") != "dirichlet"):
        raise ConfigError("[grid] alphas sets partition = \"dirichlet\" and dirichlet_alpha for every cell: "
                          "[train] must not set them otherwise")
    options = {}
    for table, what in (("attack_options", "attack"), ("aggregator_options", "aggregator")):
        opts = data.get(table, {})
        for name, value in opts.items():
            check_name(what, name, where=f"[{table}.{name}]: ")
            if not isinstance(value, dict):
                raise ConfigError(f"[{table}.{name}] must be a table of options")
        options[table] = {k: dict(v) for k, v in opts.items()}
    spec = GridSpec(name=grid.name or path.stem, attacks=grid.attacks, aggregators=grid.aggregators,
                    fractions=tuple(float(x) for x in grid.fractions), base=base, seeds=grid.seeds,
                    workers=grid.workers, clean=grid.clean, f=grid.f, keep_chains=grid.keep_chains,
                    attack_options=options["attack_options"], aggregator_options=options["aggregator_options"],
                    alphas=tuple(float(a) for a in grid.alphas))
    _check_cells(spec)
    return spec


def _check_cells(spec: GridSpec) -> None:
    """Every cell's config, its attack's and its rule's options, before anything runs."""
    for cell in grid_cells(spec):
        cfg = TrainConfig.from_dict(cell.config)
        check_honoured(cfg, "train")
        if cell.byzantine:
            make_holder_attack(cfg.attack, **cfg.attack_options)
        # the rule's options, on stand-in parameters (the run builds the real ones)
        ProtocolParams(dim=1, holders=spec.holders, aggregator=cfg.aggregator,
                       aggregator_options=dict(cfg.aggregator_options), mechanism="none", epsilon=0.0)


def byzantine_count(fraction: float, holders: int) -> int:
    """floor(fraction * K), never above the fraction (1e-9 absorbs float error in e.g. 0.3 * 30)."""
    return int(math.floor(fraction * holders + 1e-9))


def _aggregator_options(spec: GridSpec, aggregator: str, byzantine: int) -> dict:
    options = dict(spec.aggregator_options.get(aggregator, {}))
    if "f" in get_rule(aggregator).options and "f" not in options:
        if spec.f == "byzantine":
            options["f"] = byzantine
        elif isinstance(spec.f, int):
            options["f"] = spec.f
    return options


def grid_cells(spec: GridSpec) -> list:
    """Every cell: per seed (and per alpha of an alphas axis), every rule without
    attackers (``clean``), then fraction x attack x rule."""
    holders = spec.holders
    cells = []
    for seed in spec.seeds:
        for alpha in spec.alphas or (None,):
            base = dict(spec.base, seed=seed)
            if alpha is not None:
                base.update(partition="dirichlet", dirichlet_alpha=alpha)
            if spec.clean:
                for agg in spec.aggregators:
                    cfg = dict(base, byzantine=0, aggregator=agg, aggregator_options=_aggregator_options(spec, agg, 0))
                    cells.append(Cell(CLEAN, agg, 0.0, 0, seed, cfg, alpha))
            for fraction in spec.fractions:
                b = byzantine_count(fraction, holders)
                if b < 1:
                    raise ConfigError(f"fraction {fraction} of {holders} holders is no Byzantine holder")
                for attack in spec.attacks:
                    for agg in spec.aggregators:
                        cfg = dict(base, byzantine=b, attack=attack,
                                   attack_options=dict(spec.attack_options.get(attack, {})), aggregator=agg,
                                   aggregator_options=_aggregator_options(spec, agg, b))
                        cells.append(Cell(attack, agg, fraction, b, seed, cfg, alpha))
    return cells


def _run_cell(cell: Cell, run_dir: str, keep_chains: bool) -> dict:
    """Worker: one full training run; returns its CSV row (never raises)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    row = _row_base(cell)
    started = time.perf_counter()
    try:
        cfg = TrainConfig.from_dict(dict(cell.config, out=run_dir, force=True, progress=False))
        summary = run_training(cfg, progress=False)
        row.update(status="ok", test_error=summary["test_error"], baseline_test_error=summary["baseline_test_error"],
                   train_loss=summary["train_loss"], rounds=summary["rounds"], height=summary["height"],
                   selected_byzantine_total=summary["selected_byzantine_total"],
                   rejected_blocks=summary["rejected_blocks"], wall_seconds=summary["wall_seconds"],
                   holders=summary["holders"], dataset=cfg.dataset)
        with open(Path(run_dir) / "cell.json", "w") as fh:
            json.dump({"cell": cell.id, "config": cell.config, "row": row}, fh, indent=2, default=str)
    except Exception as exc:  # noqa: BLE001 - one failed cell must not stop the grid; the CSV says why
        kind = "" if isinstance(exc, LearningChainError) else f"{type(exc).__name__}: "
        row.update(status="error", error=f"{kind}{exc}", wall_seconds=round(time.perf_counter() - started, 3))
    finally:
        if not keep_chains:
            for name in ("chain.sqlite", "chain.sqlite-wal", "chain.sqlite-shm", "model.npy", "curve.png"):
                (Path(run_dir) / name).unlink(missing_ok=True)
    return row


def run_cell_packed(args: tuple) -> tuple:
    """Ray task: one grid cell in a temporary directory; returns (its CSV row, its files)."""
    cell, keep_chains = args
    with tempfile.TemporaryDirectory(prefix="learningchain-cell-") as tmp:
        run_dir = Path(tmp) / cell.id
        row = _run_cell(cell, str(run_dir), keep_chains)
        return row, cluster.pack(run_dir) if run_dir.is_dir() else {}


def _row_base(cell: Cell) -> dict:
    row = {k: None for k in RESULT_FIELDS}
    row.update(cell=cell.id, attack=cell.attack, aggregator=cell.aggregator, fraction=cell.fraction,
               alpha=cell.alpha, byzantine=cell.byzantine, seed=cell.seed, dataset=cell.config.get("dataset", "synthetic"),
               holders=cell.config.get("holders") or DATASET_DEFAULTS[cell.config.get("dataset", "synthetic")]
               ["holders"])
    return row


def _finished(cell: Cell, run_dir: Path) -> Optional[dict]:
    path = run_dir / "cell.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if json.dumps(data.get("config"), sort_keys=True, default=str) != json.dumps(cell.config, sort_keys=True,
                                                                                  default=str):
        return None
    return data.get("row")


def run_grid(spec: GridSpec, out: str | Path, *, workers: Optional[int] = None, ray: Optional[str] = None,
             on_result: Optional[Callable[[dict, int, int, bool], None]] = None) -> list:
    """Run every cell (in at most two processes, or as tasks of the Ray cluster at
    address ``ray``), write results.csv, heatmap.png and the worst-case table.
    ``on_result(row, done, total, reused)`` is called for each cell, first for those
    a previous run of the grid finished (``reused``)."""
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    cells = grid_cells(spec)
    rows: dict = {}
    todo = []
    for cell in cells:
        done = _finished(cell, out / "runs" / cell.id)
        if done is not None:
            rows[cell.id] = done
        else:
            todo.append(cell)
    total = len(cells)
    if on_result:
        for row in rows.values():
            on_result(row, len(rows), total, True)
    n_workers = max(1, min(workers or spec.workers, MAX_WORKERS))
    for cell, row in _execute(todo, out, spec.keep_chains, n_workers, ray):
        rows[cell.id] = row
        _write_results(out, cells, rows)
        if on_result:
            on_result(row, len(rows), total, False)
    ordered = _write_results(out, cells, rows)
    plot_heatmap(ordered, out / "heatmap.png", title=spec.name)
    write_worst_case(ordered, out, title=spec.name)
    return ordered


def _execute(todo: list, out: Path, keep_chains: bool, n_workers: int, ray: Optional[str]):
    """Yield ``(cell, row)`` as cells finish: in this process, in a process pool,
    or on a Ray cluster (the driver writes each cell's files into ``out/runs``)."""
    if not todo:
        return
    if ray is not None:
        ray_module = cluster.connect(ray)
        try:
            for (cell, _), result in cluster.ray_map(ray_module, run_cell_packed, [(c, keep_chains) for c in todo]):
                if isinstance(result, Exception):  # the task itself failed: the CSV says why, as for a run
                    row = dict(_row_base(cell), status="error", error=f"Ray task: {type(result).__name__}: "
                               f"{str(result).strip().splitlines()[-1] if str(result).strip() else ''}")
                    yield cell, row
                    continue
                row, files = result
                shutil.rmtree(out / "runs" / cell.id, ignore_errors=True)
                cluster.unpack(files, out / "runs" / cell.id)
                yield cell, row
        finally:
            ray_module.shutdown()
    elif n_workers == 1:
        for cell in todo:
            yield cell, _run_cell(cell, str(out / "runs" / cell.id), keep_chains)
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as pool:
            futures = {pool.submit(_run_cell, cell, str(out / "runs" / cell.id), keep_chains): cell
                       for cell in todo}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()


def _write_results(out: Path, cells: list, rows: dict) -> list:
    ordered = [rows[c.id] for c in cells if c.id in rows]
    tmp = out / "results.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=RESULT_FIELDS)
        writer.writeheader()
        for row in ordered:
            writer.writerow({k: row.get(k) for k in RESULT_FIELDS})
    tmp.replace(out / "results.csv")
    return ordered


def read_results(path: str | Path) -> list:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for key in ("fraction", "alpha", "test_error", "baseline_test_error", "train_loss", "wall_seconds"):
            row[key] = float(row[key]) if row.get(key) not in (None, "") else None
        for key in ("byzantine", "holders", "seed", "rounds", "height", "selected_byzantine_total",
                    "rejected_blocks"):
            row[key] = int(float(row[key])) if row.get(key) not in (None, "") else None
    return rows
