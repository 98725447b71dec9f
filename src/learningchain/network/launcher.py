"""``learningchain network up``: N node processes on loopback, one config.

:class:`LocalNetwork` prepares a directory per node, writes the shared config
(``network.toml``: under proof of authority it first creates each node's key so
that the authorities can be listed in genesis), starts ``learningchain node``
processes, reads their ``GET /status``, can kill and restart one (the tests use
that), and stops them with SIGTERM. :func:`network_up` is the command: it shows
live progress, stops the nodes once they all hold the last round's block on the
same head, replays every node's chain with ``chain verify`` and leaves each
node's directory (chain, keys, log, final status) in the output directory.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from ..errors import ConfigError, LearningChainError
from ..node.store import open_readonly
from ..node.verify import verify_chain
from ..protocol.forkchoice import head_key
from .config import NetConfigFile
from .node_files import load_or_create_key

__all__ = ["LocalNetwork", "network_up", "free_ports", "assign_holders"]


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports the OS reports free now (bound and released)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def assign_holders(holders: int, nodes: int) -> list[list[int]]:
    """Holder k lives in node k mod N (every node hosts a near-equal share)."""
    return [[k for k in range(holders) if k % nodes == i] for i in range(nodes)]


def _src_path() -> str:
    """The directory holding this ``learningchain`` package (put on the nodes' PYTHONPATH)."""
    return str(Path(__file__).resolve().parents[2])


@dataclass
class NodeProc:
    index: int
    dir: Path
    port: int
    http_port: int
    holders: list
    bootstrap: list
    proc: Optional[subprocess.Popen] = None
    starts: int = 0
    extra: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.dir.name


class LocalNetwork:
    def __init__(self, out, conf: NetConfigFile, nodes: int, *, holders_of: Optional[list] = None,
                 min_peers: Optional[int] = None, python: str = sys.executable, host: str = "127.0.0.1",
                 verbose: bool = False, extra_args: Optional[dict] = None, roles: Optional[list] = None,
                 permissioned: bool = False):
        if nodes < 1:
            raise ConfigError(f"--nodes must be >= 1, got {nodes}")
        if conf.network.budget is not None and not (permissioned or conf.network.members):
            raise ConfigError("[network] budget needs enrolled holders: pass --permissioned or list them in "
                              "[network] members")
        self.out = Path(out)
        self.conf = conf
        self.n = nodes
        cfg = conf.train.resolved()
        self.holders_of = holders_of if holders_of is not None else assign_holders(cfg.holders, nodes)
        self.min_peers = nodes - 1 if min_peers is None else min_peers
        self.python = python
        self.host = host
        self.verbose = verbose
        self.extra_args = extra_args or {}
        self.roles = roles
        self.permissioned = permissioned  # create the holders' keys first and enrol them in genesis
        self.nodes: list[NodeProc] = []
        self.evaluate = True  # ask nodes for their head model's test error in status polls
        self.config_path = self.out / "network.toml"

    # -- preparing ------------------------------------------------------------------------
    def prepare(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        ports = free_ports(2 * self.n, self.host)
        for i in range(self.n):
            d = self.out / f"node-{i}"
            bootstrap = [] if i == 0 else [f"{self.host}:{ports[2 * (i - 1)]}"]
            self.nodes.append(NodeProc(i, d, ports[2 * i], ports[2 * i + 1], self.holders_of[i], bootstrap,
                                       extra=list(self.extra_args.get(i, []))))
        if self.conf.network.genesis_time_ms is None:  # retarget windows measure from a real start time
            self.conf = replace(self.conf, network=self.conf.network.replace(genesis_time_ms=int(time.time() * 1000)))
        consensus = self.conf.network.consensus or self.conf.train.consensus
        if consensus == "poa" and not self.conf.network.authorities:
            auths = []
            for node in self.nodes:
                node.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                auths.append("0x" + load_or_create_key(node.dir / "node.key").address.hex())
            self.conf = replace(self.conf, network=self.conf.network.replace(consensus="poa",
                                                                              authorities=tuple(auths)))
        if self.permissioned and not self.conf.network.members:
            members = {}
            for node in self.nodes:
                node.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                for k in node.holders:
                    members[k] = "0x" + load_or_create_key(node.dir / f"holder-{k}.key").address.hex()
            self.conf = replace(self.conf, network=self.conf.network.replace(
                members=tuple(members[k] for k in sorted(members))))
        self.config_path.write_text(self.conf.to_toml())

    def command(self, node: NodeProc) -> list[str]:
        cmd = [self.python, "-m", "learningchain", "node", "--data-dir", str(node.dir),
               "--listen", f"{self.host}:{node.port}", "--http", f"{self.host}:{node.http_port}",
               "--config", str(self.config_path), "--min-peers", str(self.min_peers), "--quiet"]
        if node.bootstrap:
            cmd += ["--peers", ",".join(node.bootstrap)]
        if node.holders:
            cmd += ["--holder-index", ",".join(str(k) for k in node.holders)]
        if self.roles is not None:
            cmd += ["--role", self.roles[node.index]]
        elif not node.holders:
            cmd += ["--role", "miner"]
        if self.verbose:
            cmd.append("--verbose")
        return cmd + node.extra

    # -- processes --------------------------------------------------------------------------
    def start(self, index: Optional[int] = None) -> None:
        targets = self.nodes if index is None else [self.nodes[index]]
        env = dict(os.environ)
        env["PYTHONPATH"] = _src_path() + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("OMP_NUM_THREADS", "1")
        for node in targets:
            if node.proc is not None and node.proc.poll() is None:
                raise LearningChainError(f"{node.name} is already running (pid {node.proc.pid})")
            node.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            out = open(node.dir / "stdout.log", "ab")
            node.proc = subprocess.Popen(self.command(node), stdout=out, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL)
            out.close()
            node.starts += 1

    def alive(self, index: int) -> bool:
        p = self.nodes[index].proc
        return p is not None and p.poll() is None

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        p = self.nodes[index].proc
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            p.wait(30)

    def restart(self, index: int) -> None:
        self.start(index)

    def stop(self, timeout: float = 20.0) -> dict:
        """SIGTERM every node, wait for clean exits, SIGKILL what is left; exit codes by node."""
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes = {}
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                codes[node.name] = node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                codes[node.name] = node.proc.wait()
        return codes

    # -- observing ----------------------------------------------------------------------------
    def status(self, index: int, timeout: float = 2.0) -> Optional[dict]:
        node = self.nodes[index]
        query = "" if self.evaluate else "?eval=0"
        try:
            with urllib.request.urlopen(f"http://{self.host}:{node.http_port}/status{query}", timeout=timeout) as r:
                return json.loads(r.read().decode())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def statuses(self) -> list:
        return [self.status(i) if self.alive(i) else None for i in range(self.n)]

    def wait_for(self, predicate: Callable[[list], bool], timeout: float, *, poll: float = 0.25,
                 on_poll: Optional[Callable[[list], None]] = None, what: str = "the network") -> list:
        deadline = time.monotonic() + timeout
        while True:
            sts = self.statuses()
            if on_poll is not None:
                on_poll(sts)
            if predicate(sts):
                return sts
            for node in self.nodes:
                if node.proc is not None and node.proc.poll() not in (None, 0, -9, -15) and node.starts:
                    tail = _tail(node.dir / "stdout.log")
                    raise LearningChainError(f"{node.name} exited with code {node.proc.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise LearningChainError(f"timed out after {timeout:g} s waiting for {what}; "
                                         f"last heights {[s and s['height'] for s in sts]}")
            time.sleep(poll)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def converged(sts: list, height: int) -> bool:
    """Every node answered, is at ``height`` or above, and all name the same head."""
    if not sts or any(s is None for s in sts):
        return False
    return all(s["height"] >= height for s in sts) and len({s["head"] for s in sts}) == 1


def _progress_line(sts: list, rounds: int, started: float) -> str:
    heights = [s["height"] if s else "-" for s in sts]
    live = [s for s in sts if s]
    best = max(live, key=lambda s: head_key(s["work"], bytes.fromhex(s["head"][2:]))) if live else None
    agree = sum(1 for s in live if best and s["head"] == best["head"])
    err = best.get("test_error") if best else None
    peers = [len(s["peers"]) if s else "-" for s in sts]
    return (f"[{time.monotonic() - started:6.1f}s] round {best['round'] if best else 0}/{rounds}  "
            f"heights {heights}  head {best['head'][:12] if best else '-'} ({agree}/{len(sts)} agree)  "
            f"test error {('%.4f' % err) if err is not None else '-'}  peers {peers}")


def network_up(conf: NetConfigFile, *, nodes: int, out, timeout: float = 600.0, quiet: bool = False,
               compare: Optional[Callable] = None, verbose: bool = False, force: bool = False,
               permissioned: bool = False, on_progress: Optional[Callable[[str], None]] = None) -> dict:
    """Run N nodes to the chain's last round; returns the summary (also in out/summary.json).

    ``compare``: a function that runs the same config in process (``learningchain
    train``'s ``run_training``), whose results the summary adds beside the network's.
    """
    out = Path(out)
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"--timeout must be a positive number of seconds, got {timeout!r}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory")
    cfg = conf.train.resolved()
    rounds = conf.network.stop_height if conf.network.stop_height is not None else cfg.rounds
    net = LocalNetwork(out, conf, nodes, verbose=verbose, permissioned=permissioned)  # refuses a bad --nodes first
    _prepare_out(net, out, force=force)
    started = time.monotonic()
    codes, final = _run_to_round(net, rounds, timeout, started, quiet=quiet, on_progress=on_progress)
    wall = time.monotonic() - started
    summary_nodes = [_node_summary(node, final[i] if final else None, codes.get(node.name))
                     for i, node in enumerate(net.nodes)]
    heads = {n["head"] for n in summary_nodes}
    seconds_per_round = _seconds_per_round(net.nodes[0].dir)
    summary = {
        "nodes": nodes,
        "rounds": rounds,
        "holders": cfg.holders,
        "dataset": cfg.dataset,
        "consensus": net.conf.network.consensus or cfg.consensus,
        "same_head": len(heads) == 1,
        "head": summary_nodes[0]["head"] if len(heads) == 1 else None,
        "all_verified": all(n["verify"] == "OK" for n in summary_nodes),
        "test_error": summary_nodes[0]["test_error"],
        "seconds_per_round": seconds_per_round,
        "wall_seconds": round(wall, 3),
        "out": str(out),
        "node_details": summary_nodes,
    }
    if compare is not None:
        inproc = compare(replace(cfg, out=str(out / "inprocess"), force=True, progress=False))
        summary["inprocess_test_error"] = inproc["test_error"]
        summary["inprocess_seconds_per_round"] = inproc["seconds_per_round"]
        summary["baseline_test_error"] = inproc["baseline_test_error"]
    with open(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
        fh.write("\n")
    return summary


def _prepare_out(net: LocalNetwork, out: Path, *, force: bool) -> None:
    """Replace an earlier network run in ``out`` (only with ``force``) and create the nodes' directories."""
    if out.exists() and any(out.glob("node-*/chain.sqlite")):
        if not force:
            raise ConfigError(f"{out} already holds a network run; pass --force to replace it or choose another --out")
        for d in out.glob("node-*"):
            shutil.rmtree(d)
    try:
        net.prepare()
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create the network's directories: {exc.strerror or exc}") from None


def _run_to_round(net: LocalNetwork, rounds: int, timeout: float, started: float, *, quiet: bool,
                  on_progress: Optional[Callable[[str], None]]) -> tuple[dict, list]:
    """Start the nodes, wait until they all reach ``rounds`` (showing progress) and stop
    them; returns (each node's exit code by name, their last polled statuses)."""
    say = on_progress or (lambda line: print(line, flush=True))
    tty = sys.stdout.isatty() and on_progress is None
    last = [0.0]

    def show(sts):
        if quiet:
            return
        now = time.monotonic()
        if tty:
            sys.stdout.write("\r" + _progress_line(sts, rounds, started)[:160].ljust(160))
            sys.stdout.flush()
        elif now - last[0] >= 2.0:
            say(_progress_line(sts, rounds, started))
            last[0] = now

    codes = {}
    final: list = []
    try:
        net.start()
        for node in net.nodes if not quiet else []:
            say(f"node-{node.index}: status at http://{net.host}:{node.http_port}/status, log {node.dir / 'node.log'}")
        stable = [0]

        def done(sts):
            if converged(sts, rounds):
                stable[0] += 1
            else:
                stable[0] = 0
            return stable[0] >= 2

        final = net.wait_for(done, timeout, poll=0.5, on_poll=show, what=f"all nodes to reach round {rounds}")
        if tty and not quiet:
            sys.stdout.write("\n")
    finally:
        codes = net.stop()
    return codes, final


def _node_summary(node: NodeProc, polled: Optional[dict], exit_code) -> dict:
    """One node's line of the summary: its status (the file it left, else the last poll) and its chain verified."""
    try:
        st_file = json.loads((node.dir / "status.json").read_text())
    except (OSError, ValueError):
        st_file = None
    st = st_file or polled or {}
    report = verify_chain(node.dir)
    return {
        "name": node.name, "dir": str(node.dir), "holders": node.holders, "exit_code": exit_code,
        "height": st.get("height"), "head": st.get("head"), "test_error": st.get("test_error"),
        "blocks_mined": st.get("blocks_mined"), "messages_sent": st.get("messages_sent"),
        "rejected_blocks": st.get("rejected_blocks"), "refused": st.get("refused"),
        "verify": "OK" if report.ok else f"INVALID at {report.first_bad_height}: {report.error}",
        "verified_blocks": report.checked,
    }


def _seconds_per_round(node_dir: Path) -> Optional[float]:
    """Mean time between blocks 1 and the head, from the chain's own timestamps."""
    try:
        store = open_readonly(node_dir / "chain.sqlite")
    except LearningChainError:
        return None
    try:
        n = store.canonical_length() - 1
        if n < 2:
            return None
        first = store.get(store.canonical_hash(1)).header.timestamp
        last = store.get(store.canonical_hash(n)).header.timestamp
        return round((last - first) / 1000.0 / (n - 1), 6)
    finally:
        store.close()


def describe(summary: dict) -> str:
    lines = [f"  nodes / rounds / holders   {summary['nodes']} / {summary['rounds']} / {summary['holders']}",
             f"  consensus                  {summary['consensus']}",
             f"  same head on every node    {summary['same_head']}  {(summary['head'] or '')[:20]}",
             f"  every chain verifies       {summary['all_verified']}",
             f"  head model test error      {_f(summary['test_error'])}"]
    if "inprocess_test_error" in summary:
        lines.append(f"  in-process test error      {_f(summary['inprocess_test_error'])}  "
                     f"(baseline {_f(summary['baseline_test_error'])})")
    lines.append(f"  seconds per round          {_f(summary['seconds_per_round'])}")
    lines.append(f"  wall seconds               {_f(summary['wall_seconds'])}")
    for n in summary["node_details"]:
        lines.append(f"  {n['name']:<8} height {n['height']}  head {(n['head'] or '-')[:14]}  mined "
                     f"{n['blocks_mined']}  holders {n['holders']}  verify {n['verify']}  exit {n['exit_code']}")
    lines.append(f"  run directory              {summary['out']}")
    return "\n".join(lines)


def _f(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)
