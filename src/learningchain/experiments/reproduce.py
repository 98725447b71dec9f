"""``learningchain reproduce``: the paper's figures from declarative configs.

Each figure is one TOML file in ``experiments/figures/``: a grid of panels, each
with a base config and the curves to draw (overrides of
:class:`~learningchain.config.TrainConfig`), and a ``quick`` variant for a few
minutes' run. Every curve is a full ``learningchain train`` run through the
chain. Results per figure: ``runs/`` (one run directory per curve; a finished
run with the same config is reused, so an interrupted reproduction resumes),
``curves.csv`` (every curve and every panel's centralized baseline),
``summary.csv`` (final numbers) and ``<fig>.png`` laid out like the paper's.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Callable, Optional

from matplotlib.figure import Figure

from ..config import TrainConfig, check_honoured
from ..config.schema import parse_toml_text
from ..config.tables import FigureTable
from ..errors import ConfigError
from . import cluster  # the module: tests stand in for its Ray connection
from .train import run_training

__all__ = ["FIGURES", "load_figure", "figure_jobs", "reproduce", "Job", "collect_results"]

FIGURES = ("fig5", "fig6", "fig7")
_VOLATILE = {"out", "force", "progress"}


@dataclass(frozen=True)
class Job:
    figure: str
    panel: str
    panel_title: str
    curve: str
    config: TrainConfig
    seed: int = 0


def load_figure(name_or_path: str) -> dict:
    """A figure spec by name (``fig5``) or from a TOML file; checked on load."""
    if name_or_path in FIGURES:
        text = resources.files("learningchain.experiments").joinpath("figures", f"{name_or_path}.toml").read_text()
        source = f"figures/{name_or_path}.toml"
    else:
        path = Path(name_or_path)
        if not path.exists():
            raise ConfigError(f"unknown figure {name_or_path!r}; known: {', '.join(FIGURES)} (or a TOML path)")
        text, source = path.read_text(), str(path)
    return FigureTable.check(parse_toml_text(text, source), source)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def figure_jobs(spec: dict, *, quick: bool, out: Path) -> list:
    jobs = []
    for panel in spec["panels"]:
        for i, curve in enumerate(panel["curves"]):
            data = dict(spec.get("defaults", {}))
            data.update(panel.get("config", {}))
            data.update({k: v for k, v in curve.items() if k not in ("label", "quick")})
            if quick:
                data.update(spec.get("quick", {}))
                data.update(panel.get("quick", {}))
                data.update(curve.get("quick", {}))
            seeds = data.pop("seeds", [data.get("seed", 0)])
            if not isinstance(seeds, list) or not seeds or not all(isinstance(x, int) for x in seeds):
                raise ConfigError(f"{spec['name']} panel {panel['id']}: seeds must be a list of integers")
            for seed in seeds:
                where = f"{spec['name']} panel {panel['id']} curve {curve['label']!r}"
                data.update(out=None, force=True, progress=False, seed=seed)
                try:
                    cfg = TrainConfig.from_dict(data)
                    check_honoured(cfg, "train")
                except ConfigError as exc:
                    raise ConfigError(f"{where}: {exc}") from None
                label = _fill(curve["label"], cfg, where)
                title = _fill(panel["title"], cfg, f"{spec['name']} panel {panel['id']} title")
                name = f"{panel['id']}-{i}-{_slug(label)}" + (f"-s{seed}" if seed else "")
                cfg = replace(cfg, out=str(out / spec["name"] / "runs" / name))
                jobs.append(Job(spec["name"], panel["id"], title, label, cfg, seed))
    return jobs


_STATED_BYZANTINE = re.compile(r"(\d+) Byzantine\b")


def _fill(text: str, cfg: TrainConfig, where: str) -> str:
    """A label or title with ``{key}`` filled in from the run's resolved config
    (``{byzantine} Byzantine``), so that it states what the run did, quick or
    full; a number of Byzantine holders stated outright must be the run's."""
    values = cfg.resolved().to_dict()
    try:
        filled = text.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot fill in {text!r} ({exc!r}); use {{key}} with a config key") from None
    stated = _STATED_BYZANTINE.search(filled)
    if stated and "{" not in text and int(stated.group(1)) != values["byzantine"]:
        raise ConfigError(f"{where}: says {stated.group(0)!r} but the run has {values['byzantine']} Byzantine "
                          f"holders; write {{byzantine}} Byzantine")
    return filled


def merge_seeds(results: list) -> list:
    """One result per (panel, curve): curves and final errors averaged over seeds.

    ``seed_curves`` keeps each seed's own curve ({seed: curve}), from which the
    claims are decided against the seeds' spread (:mod:`.claims`)."""
    groups: dict = {}
    for r in results:
        groups.setdefault((r["job"].panel, r["job"].curve), []).append(r)
    merged = []
    for (panel, curve), rs in groups.items():
        seed_curves = {r["job"].seed: r["curve"] for r in rs}
        if len(rs) == 1:
            merged.append(dict(rs[0], seeds=1, seed_curves=seed_curves))
            continue
        rounds = sorted(set.intersection(*(set(t for t, _ in r["curve"]) for r in rs)))
        mean = [(t, sum(dict(r["curve"])[t] for r in rs) / len(rs)) for t in rounds]
        summary = dict(rs[0]["summary"])
        for key in ("test_error", "baseline_test_error", "wall_seconds", "selected_byzantine_total"):
            summary[key] = sum(r["summary"][key] for r in rs) / len(rs)
        merged.append({"job": rs[0]["job"], "summary": summary, "curve": mean,
                       "cached": all(r["cached"] for r in rs), "seeds": len(rs), "seed_curves": seed_curves})
    return merged


def _comparable(cfg_dict: dict) -> dict:
    return {k: v for k, v in cfg_dict.items() if k not in _VOLATILE}


def _cached(job: Job) -> Optional[dict]:
    path = Path(job.config.out) / "summary.json"
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    want = _comparable(job.config.resolved().to_dict())
    have = _comparable(summary.get("config", {}))
    if "data_dir" in have:  # the old name of idx_dir
        have.setdefault("idx_dir", have.pop("data_dir"))
    # options added to TrainConfig after the run was made count as equal when
    # the new config leaves them at their defaults
    defaults = TrainConfig().to_dict()
    for key in list(want):
        if key not in have and want[key] == defaults.get(key):
            del want[key]
    if summary.get("interrupted"):
        return None
    return summary if want == have and (Path(job.config.out) / "metrics.csv").exists() else None


def run_job(job: Job) -> dict:
    """Run one curve (in a worker process) and return what the figure needs."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    summary = _cached(job)
    cached = summary is not None
    if summary is None:
        summary = run_training(job.config)
    with open(Path(job.config.out) / "metrics.csv") as fh:
        rows = [(int(r["round"]), float(r["test_error"])) for r in csv.DictReader(fh) if r["test_error"]]
    return {"job": job, "summary": summary, "curve": rows, "cached": cached}


def reproduce(names, *, out: Path, quick: bool = False, workers: int = 2, ray: Optional[str] = None,
              progress: Optional[Callable[[dict, int, int], None]] = None) -> dict:
    """Run the figures; returns {figure: [result, ...]} and writes their files.
    ``progress(result, done, total)`` is called once with ``(None, 0, total)``
    before the first run starts, then as each run finishes. With ``ray`` (an
    address) the runs not finished in ``out`` are tasks of that Ray cluster."""
    out = Path(out)
    specs = {spec["name"]: spec for spec in map(load_figure, names)}  # a TOML path is keyed by its name
    all_jobs = [job for spec in specs.values() for job in figure_jobs(spec, quick=quick, out=out)]
    results: dict = {name: [] for name in specs}
    started = time.perf_counter()
    if progress:
        progress(None, 0, len(all_jobs))
    for done, res in enumerate(_execute(all_jobs, workers, ray), start=1):
        results[res["job"].figure].append(res)
        if progress:
            progress(res, done, len(all_jobs))
    order = {}
    for i, j in enumerate(all_jobs):
        order.setdefault((j.figure, j.panel, j.curve), i)
    for name, spec in specs.items():
        results[name] = merge_seeds(results[name])
        results[name].sort(key=lambda r: order[(r["job"].figure, r["job"].panel, r["job"].curve)])
        write_figure(spec, results[name], out / name, quick=quick)
    elapsed = time.perf_counter() - started
    timing = {"figures": list(specs), "quick": quick, "workers": workers, "wall_seconds": round(elapsed, 1),
              "runs": len(all_jobs), "reused_runs": sum(r["cached"] for rs in results.values() for r in rs)}
    with open(out / ("timing-quick.json" if quick else "timing.json"), "w") as fh:
        json.dump(timing, fh, indent=2)
    return results


def _execute(jobs: list, workers: int, ray: Optional[str]):
    """Yield each job's result as it finishes: in this process, in a process pool or
    on a Ray cluster (the driver writes the run directory a task sends back)."""
    if ray is not None:
        yield from _execute_on_ray(jobs, ray)
    elif workers <= 1:
        for job in jobs:
            yield run_job(job)
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(run_job, job) for job in jobs]
            for fut in as_completed(futures):
                yield fut.result()


def _execute_on_ray(jobs: list, address: str):
    todo = []
    for job in jobs:
        if _cached(job) is not None:
            yield run_job(job)
        else:
            todo.append(job)
    if not todo:
        return
    ray = cluster.connect(address)
    try:
        for job, files in cluster.ray_map(ray, _run_job_packed, todo):
            if isinstance(files, Exception):  # as a failed run stops a local reproduce
                raise files
            cluster.unpack(files, job.config.out)
            yield dict(run_job(job), cached=False)
    finally:
        ray.shutdown()


def _run_job_packed(job: Job) -> dict:
    """A Ray task: the job's run in a temporary directory on the worker; returns its files."""
    return cluster.run_training_packed(job.config)


def write_figure(spec: dict, results: list, out: Path, *, quick: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "curves.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["figure", "panel", "curve", "seeds", "round", "test_error"])
        seen_baseline = set()
        for r in results:
            job = r["job"]
            for t, err in r["curve"]:
                w.writerow([job.figure, job.panel, job.curve, r.get("seeds", 1), t, err])
            if job.panel not in seen_baseline:
                seen_baseline.add(job.panel)
                for t, err in r["summary"].get("baseline_curve", []):
                    w.writerow([job.figure, job.panel, "centralized baseline", 1, t, err])
    fields = ["figure", "panel", "curve", "seeds", "dataset", "holders", "byzantine", "aggregator", "epsilon", "schedule",
              "rounds", "test_error", "baseline_test_error", "epsilon_total", "selected_byzantine_total",
              "wall_seconds"]
    with open(out / "summary.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in results:
            s, cfg = r["summary"], r["summary"]["config"]
            w.writerow({
                "figure": r["job"].figure, "panel": r["job"].panel, "curve": r["job"].curve,
                "seeds": r.get("seeds", 1),
                "dataset": cfg["dataset"], "holders": s["holders"], "byzantine": s["byzantine"],
                "aggregator": s["aggregator"], "epsilon": None if cfg["no_dp"] else cfg["epsilon"],
                "schedule": cfg["schedule"], "rounds": s["rounds"], "test_error": s["test_error"],
                "baseline_test_error": s["baseline_test_error"], "epsilon_total": s["epsilon_total"],
                "selected_byzantine_total": s["selected_byzantine_total"], "wall_seconds": s["wall_seconds"],
            })
    plot_figure(spec, results, out / f"{spec['name']}{'-quick' if quick else ''}.png")


def plot_figure(spec: dict, results: list, path: Path) -> None:
    rows, cols = spec.get("rows", 1), spec.get("cols", len(spec["panels"]))
    fig = Figure(figsize=(4.6 * cols, 3.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    by_panel: dict = {}
    for r in results:
        by_panel.setdefault(r["job"].panel, []).append(r)
    for idx, panel in enumerate(spec["panels"]):
        ax = axes[idx // cols][idx % cols]
        panel_results = by_panel.get(panel["id"], [])
        top = 0.0
        for r in panel_results:
            if r["curve"]:
                xs, ys = zip(*r["curve"])
                ax.plot(xs, ys, label=r["job"].curve, linewidth=1.3)
                top = max(top, max(ys))
        if panel_results and panel_results[0]["summary"].get("baseline_curve"):
            bx, by = zip(*panel_results[0]["summary"]["baseline_curve"])
            ax.plot(bx, by, "k--", label="centralized baseline", linewidth=1.2)
            top = max(top, max(by))
        ax.set_title(panel_results[0]["job"].panel_title if panel_results else panel["title"], fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylabel("test error")
        ax.set_ylim(0, min(1.0, max(0.1, top * 1.08)))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for idx in range(len(spec["panels"]), rows * cols):
        axes[idx // cols][idx % cols].axis("off")
    fig.suptitle(spec.get("title", spec["name"]), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def collect_results(out: Path, *, quick: bool = False) -> dict:
    """Results of every figure whose runs are all finished in ``out`` (no new runs)."""
    found = {}
    for name in FIGURES:
        jobs = figure_jobs(load_figure(name), quick=quick, out=Path(out))
        rows = []
        for job in jobs:
            summary = _cached(job)
            if summary is None:
                break
            with open(Path(job.config.out) / "metrics.csv") as fh:
                curve = [(int(r["round"]), float(r["test_error"])) for r in csv.DictReader(fh) if r["test_error"]]
            rows.append({"job": job, "summary": summary, "curve": curve, "cached": True})
        else:
            found[name] = merge_seeds(rows)
    return found
