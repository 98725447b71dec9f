"""`learningchain grid --ray ADDRESS` on a real local Ray head: the same cells,
seeds, head hashes and resume as the local runner. Ray is optional."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from learningchain.cli.main import main
from learningchain.errors import ConfigError
from learningchain.experiments.grid import load_grid, run_grid

GRID = """
[grid]
attacks = ["sign-flip"]
aggregators = ["mean", "median"]
fractions = [0.2]
seeds = [3]
workers = 1
clean = true

[train]
dataset = "synthetic"
holders = 10
miners = 2
rounds = 2
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A one-CPU Ray head reached at 127.0.0.1, stopped at the end. ``ray start
    --block`` runs in its own process group, which is stopped by its id: ``ray
    stop`` would stop every Ray process of the user on the machine, other
    clusters included. Ray 2.x replaces a loopback --node-ip-address with the
    machine's address (services.resolve_ip_for_localhost) and its gRPC servers
    listen on every interface; the head lives only as long as this module's tests."""
    pytest.importorskip("ray", reason="the ray package is not installed (pip install -e '.[ray]')")
    ray_bin = Path(sys.executable).with_name("ray")
    port = _free_port()
    temp = Path(f"/tmp/lc-ray-{os.getpid()}-{port}")  # short: Ray's socket paths must fit in 107 bytes
    cmd = [str(ray_bin) if ray_bin.exists() else "ray", "start", "--head", "--block", f"--port={port}",
           "--node-ip-address=127.0.0.1", "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats",
           f"--temp-dir={temp}"]
    log = open(tmp_path_factory.mktemp("ray") / "head.log", "w")
    # without PYTHONPATH: the workers must get this checkout's package from the driver (py_modules)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    head = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=temp.parent)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            probe = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address={address!r}); ray.shutdown()"],
                                   capture_output=True, text=True)
            if probe.returncode == 0:
                break
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not start: {Path(log.name).read_text()[-2000:]}")
            time.sleep(1)
        yield address
    finally:
        head.send_signal(signal.SIGTERM)  # --block stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)  # whatever of that group is left
        except ProcessLookupError:
            pass
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _cells(out: Path) -> dict:
    rows = {}
    for path in sorted(out.rglob("summary.json")):
        s = json.loads(path.read_text())
        rows[str(path.parent.relative_to(out))] = (s["head_hash"], s["test_error"], s["train_loss"], s["height"],
                                  s["selected_byzantine_total"])
    return rows


@pytest.mark.slow
def test_a_grid_on_a_ray_cluster_equals_the_local_run_and_resumes(tmp_path, ray_head):
    config = tmp_path / "grid.toml"
    config.write_text(GRID)
    spec = load_grid(config)
    local = run_grid(spec, tmp_path / "local")
    assert main(["grid", str(config), "--ray", ray_head, "--out", str(tmp_path / "ray"), "--quiet"]) == 0
    assert len(local) == 4 and _cells(tmp_path / "ray") == _cells(tmp_path / "local")
    keys = ("cell", "attack", "aggregator", "byzantine", "seed", "test_error", "train_loss", "height")
    with open(tmp_path / "ray" / "results.csv") as fh, open(tmp_path / "local" / "results.csv") as gh:
        ray_rows, local_rows = [line.split(",") for line in fh], [line.split(",") for line in gh]
    head = ray_rows[0]
    idx = [head.index(k) for k in keys]
    assert [[r[i] for i in idx] for r in ray_rows] == [[r[i] for i in idx] for r in local_rows]
    assert (tmp_path / "ray" / "worst_case.csv").read_text() == (tmp_path / "local" / "worst_case.csv").read_text()
    # resume: a finished cell is reused, a removed one is sent to the cluster again
    (tmp_path / "ray" / "runs" / local[-1]["cell"] / "cell.json").unlink()
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray" / "runs").glob("*/cell.json")}
    reused = []
    again = run_grid(spec, tmp_path / "ray", ray=ray_head, on_result=lambda r, d, t, u: reused.append(u))
    assert sorted(reused) == [False, True, True, True]
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}
    assert [r["test_error"] for r in again] == [r["test_error"] for r in local]
    assert _cells(tmp_path / "ray") == _cells(tmp_path / "local")


def _worker_package(_) -> tuple:
    import learningchain

    root = Path(learningchain.__file__).parent
    return str(root), (root / "experiments" / "grid.py").read_text()


@pytest.mark.slow
def test_the_workers_import_the_drivers_package(ray_head):
    import learningchain
    from learningchain.experiments.cluster import connect

    ray = connect(ray_head)
    try:
        root, text = ray.get(ray.remote(_worker_package).remote(0))
    finally:
        ray.shutdown()
    assert text == (Path(learningchain.__file__).parent / "experiments" / "grid.py").read_text()
    assert "py_modules" in root


def test_ray_missing_is_named_and_nothing_imports_it_otherwise(tmp_path, monkeypatch):
    config = tmp_path / "grid.toml"
    config.write_text(GRID)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    with pytest.raises(ConfigError, match="--ray needs the 'ray' package"):
        run_grid(load_grid(config), tmp_path / "out", ray="127.0.0.1:1")
    assert main(["grid", str(config), "--ray", "127.0.0.1:1", "--out", str(tmp_path / "out2"), "--quiet"]) == 2
    code = ("import sys; from learningchain.cli.main import main; "
            f"rc = main(['grid', {str(config)!r}, '--out', {str(tmp_path / 'local')!r}, '--quiet']); "
            "assert rc == 0 and 'ray' not in sys.modules, sorted(m for m in sys.modules if 'ray' in m)")
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ), timeout=300)


FIGURE = """
name = "figray"
[defaults]
dataset = "synthetic"
holders = 8
rounds = 2
seeds = [0, 1]
[[panels]]
id = "a"
title = "(a)"
curves = [{ label = "clean", byzantine = 0 }, { label = "attacked", byzantine = 2, attack = "sign-flip" }]
"""


@pytest.mark.slow
def test_reproduce_on_a_ray_cluster_equals_the_local_run(tmp_path, ray_head):
    from learningchain.experiments.reproduce import reproduce

    figure = tmp_path / "figray.toml"
    figure.write_text(FIGURE)
    reproduce([str(figure)], out=tmp_path / "local", workers=1)
    first = reproduce([str(figure)], out=tmp_path / "ray", ray=ray_head)
    assert not any(r["cached"] for r in first["figray"])
    assert _cells(tmp_path / "ray") == _cells(tmp_path / "local") and len(_cells(tmp_path / "local")) == 4
    again = reproduce([str(figure)], out=tmp_path / "ray", ray=ray_head)  # every run is reused
    assert all(r["cached"] for r in again["figray"])
    assert (tmp_path / "ray" / "figray" / "curves.csv").read_text() == \
        (tmp_path / "local" / "figray" / "curves.csv").read_text()


class _FakeRay:
    """Enough of ray's API to run tasks in this process; the task of ``fail`` dies."""

    def __init__(self, fail):
        self.fail, self.calls = fail, []

    def remote(self, **options):
        def wrap(fn):
            class Task:
                @staticmethod
                def remote(item):
                    self.calls.append((fn, item))
                    return len(self.calls) - 1  # the ref: an index into calls
            return Task
        return wrap

    def wait(self, refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        fn, item = self.calls[ref]
        if self.fail(item):
            raise RuntimeError("The worker died unexpectedly\nSIGKILL")
        return fn(item)

    def shutdown(self):
        pass


def test_a_failed_ray_task_is_an_error_row_and_is_run_again_on_resume(tmp_path, monkeypatch):
    import learningchain.experiments.cluster as cluster

    config = tmp_path / "grid.toml"
    config.write_text(GRID)
    spec = load_grid(config)
    fake = _FakeRay(lambda item: item[0].aggregator == "median" and item[0].byzantine)
    monkeypatch.setattr(cluster, "connect", lambda address: fake)
    rows = run_grid(spec, tmp_path / "out", ray="fake:1")
    failed = [r for r in rows if r["status"] != "ok"]
    assert len(rows) == 4 and [r["cell"] for r in failed] == ["sign-flip__median__b2__s3"]
    assert failed[0]["error"] == "Ray task: RuntimeError: SIGKILL"
    assert _cells(tmp_path / "out") == {k: v for k, v in _cells(_local(spec, tmp_path)).items()
                                        if k != "runs/sign-flip__median__b2__s3"}
    fake.fail, fake.calls = (lambda item: False), []
    again = run_grid(spec, tmp_path / "out", ray="fake:1")
    assert [item[0].id for _, item in fake.calls] == ["sign-flip__median__b2__s3"]
    assert all(r["status"] == "ok" for r in again)
    assert _cells(tmp_path / "out") == _cells(tmp_path / "local")


def _local(spec, tmp_path):
    run_grid(spec, tmp_path / "local")
    return tmp_path / "local"
