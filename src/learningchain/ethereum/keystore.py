"""The keys a run on a JSON-RPC chain needs to be resumed, encrypted in its run directory.

A run on a chain others can reach draws its keys from the OS CSPRNG; a killed
process would take them with it, and with them the computing nodes' unclaimed
rewards and the holders' deposits. So, before the contract is deployed, each
long-lived account (the holders' deposit wallets, the computing nodes) is written
to ``keys/`` as a standard Web3 Secret Storage file (eth-account's
``Account.encrypt``: scrypt, AES-128-CTR, a MAC), which any Ethereum wallet tool
can also open. A third kind of file, ``pseudonyms.json``, holds a random 32-byte
secret in the same format: each pseudo-identity (the fresh account a holder's
message is sent from) is HMAC-SHA256 of that secret, the round and the message's
index, so a resumed run re-sends an unfinished round's messages from the very
accounts the killed one used, and the contract's one-message-per-sender rule
stops any double submission. Without the secret the pseudo-identities look as
random and unlinkable as fresh keys.

The password comes from ``$LEARNINGCHAIN_KEYSTORE_PASSWORD``; a JSON-RPC run
without it is refused before anything is deployed. Files are 0600 in a 0700
directory; no key is ever logged (``Account``'s repr shows the address only).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..crypto import SECP256K1_N
from ..errors import ConfigError
from .chain import Account

__all__ = ["PASSWORD_ENV", "KEYS_DIR", "password", "RunKeys", "pseudonym", "write_private"]

PASSWORD_ENV = "LEARNINGCHAIN_KEYSTORE_PASSWORD"
KEYS_DIR = "keys"
PSEUDONYMS = "pseudonyms"


def password() -> str:
    """The keystore password, from the environment; refused when unset or empty."""
    value = os.environ.get(PASSWORD_ENV)
    if not value:
        raise ConfigError(f"a run on a JSON-RPC chain keeps its keys, encrypted, in the run directory so that it can "
                          f"be resumed: set ${PASSWORD_ENV} to the password that encrypts them")
    return value


def write_private(path: Path, data: bytes) -> None:
    """0600 from the start (never readable by others, not even for a moment), then renamed."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _encrypt(secret: bytes, pw: str) -> bytes:
    from eth_account import Account as _EA

    return json.dumps(_EA.encrypt(secret, pw)).encode()


def _decrypt(path: Path, pw: str) -> bytes:
    from eth_account import Account as _EA

    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: the key file is missing") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable key file ({exc})") from None
    try:
        return bytes(_EA.decrypt(doc, pw))
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise ConfigError(f"{path}: wrong password (${PASSWORD_ENV})") from None
        raise ConfigError(f"{path}: not a key file eth-account can open ({exc})") from None


def pseudonym(secret: bytes, rnd: int, index: int) -> Account:
    """The pseudo-identity of message ``index`` of round ``rnd``: HMAC-SHA256(secret, ...), the
    first output that is a valid secp256k1 key (all but one in 2**128 are)."""
    for counter in range(256):
        raw = hmac.new(secret, b"learningchain pseudo-identity" + int(rnd).to_bytes(32, "big")
                       + int(index).to_bytes(32, "big") + bytes([counter]), hashlib.sha256).digest()
        if 0 < int.from_bytes(raw, "big") < SECP256K1_N:
            return Account.from_secret(raw, "holder")
    raise AssertionError("unreachable: 256 HMAC outputs out of range")  # pragma: no cover


@dataclass
class RunKeys:
    """The run's long-lived accounts and the secret its pseudo-identities come from."""

    wallets: list
    nodes: list
    pseudonym_secret: bytes

    @classmethod
    def fresh(cls, holders: int, miners: int) -> "RunKeys":
        from .network import new_account  # the OS CSPRNG

        return cls([new_account(None, f"wallet-{k}") for k in range(holders)],
                   [new_account(None, f"node-{j}") for j in range(miners)],
                   bytes(new_account(None).key.key))

    def pseudonym(self, rnd: int, index: int) -> Account:
        return pseudonym(self.pseudonym_secret, rnd, index)

    def addresses(self) -> dict:
        return {"wallets": [a.address for a in self.wallets], "nodes": [a.address for a in self.nodes]}

    def write(self, directory: Path, pw: str) -> None:
        """Each key to ``directory`` (created 0700, and refused if it already holds keys)."""
        directory = Path(directory)
        directory.mkdir(mode=0o700)
        os.chmod(directory, 0o700)  # whatever the umask
        for acct in self.wallets + self.nodes:
            write_private(directory / f"{acct.label}.json", _encrypt(bytes(acct.key.key), pw))
        write_private(directory / f"{PSEUDONYMS}.json", _encrypt(self.pseudonym_secret, pw))

    @classmethod
    def read(cls, directory: Path, pw: str, holders: int, miners: int) -> "RunKeys":
        directory = Path(directory)
        if not directory.is_dir():
            raise ConfigError(f"{directory}: the run's keys are missing")
        # the pseudonyms' file first: a wrong password is found after one decryption, not K + M
        secret = _decrypt(directory / f"{PSEUDONYMS}.json", pw)
        wallets = [Account.from_secret(_decrypt(directory / f"wallet-{k}.json", pw), f"wallet-{k}")
                   for k in range(holders)]
        nodes = [Account.from_secret(_decrypt(directory / f"node-{j}.json", pw), f"node-{j}")
                 for j in range(miners)]
        return cls(wallets, nodes, secret)
