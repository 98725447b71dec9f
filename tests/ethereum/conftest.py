"""Chains for the Ethereum tests: the in-process EVM, and a real anvil node on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANVIL_NPM = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"


def find_anvil():
    if ANVIL_NPM.exists():
        return str(ANVIL_NPM)
    shared = os.environ.get("LEARNINGCHAIN_NODE_MODULES")  # a node_modules outside the checkout
    if shared:
        candidate = Path(shared) / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
        if candidate.exists():
            return str(candidate)
    return shutil.which("anvil")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def embedded():
    from learningchain.ethereum.chain import Chain

    chain = Chain.embedded()
    chain.fixed_gas = 12_000_000  # one call for the revert reason instead of a dozen for an estimate
    return chain


@contextlib.contextmanager
def _anvil(*flags):
    """A fresh anvil (automatic mining) on a free loopback port, with ``flags``; yields its URL."""
    binary = find_anvil()
    if binary is None:
        if os.environ.get("LEARNINGCHAIN_REQUIRE_ANVIL"):
            pytest.fail("anvil is required (LEARNINGCHAIN_REQUIRE_ANVIL) but node_modules has no "
                        "@foundry-rs/anvil; run npm install")
        pytest.skip("anvil not installed (npm install puts it in node_modules/@foundry-rs)")
    port = free_port()
    # --prune-history: keep old states in memory only (anvil otherwise writes them under
    # ~/.foundry/anvil/tmp, gigabytes for large rounds)
    proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", str(port), *flags,
                             "--silent", "--prune-history", "256"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"anvil exited: {proc.stderr.read().decode(errors='replace')}")
                if time.time() > deadline:
                    raise RuntimeError("anvil did not open its port within 30 s")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def anvil_url():
    """A fresh anvil on Prague rules."""
    with _anvil("--hardfork", "prague") as url:
        yield url


@pytest.fixture
def anvil(anvil_url):
    from learningchain.ethereum.chain import Chain

    return Chain.connect(anvil_url)


@pytest.fixture(autouse=True)
def keystore_password(monkeypatch):
    """A run on a JSON-RPC chain keeps its keys encrypted and is refused without a password
    (ethereum/keystore.py); tests that check the refusal delete it."""
    from learningchain.ethereum.keystore import PASSWORD_ENV

    monkeypatch.setenv(PASSWORD_ENV, "learningchain tests")


@pytest.fixture
def osaka():
    """An anvil on Osaka rules with the per-transaction gas cap of EIP-7825 enforced."""
    from learningchain.ethereum.chain import Chain

    with _anvil("--hardfork", "osaka", "--enable-tx-gas-limit") as url:
        yield Chain.connect(url)
