"""A connection to an Ethereum chain: the in-process EVM or any JSON-RPC node.

``Chain.embedded()`` starts an in-process chain (eth-tester on py-evm, Prague
rules, automatic mining: one block per transaction); ``Chain.connect(url)``
talks to a node over JSON-RPC (the tests use anvil). Either way transactions are
signed here by the account that sends them and submitted raw, so a
pseudo-identity key never leaves its holder.

Every transaction is first estimated (``eth_estimateGas``): a call that would
revert is refused before it is sent, with the contract's reason, as
:class:`Reverted`.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Optional

from ..errors import ConfigError, LearningChainError

__all__ = ["Chain", "EthereumError", "Reverted", "Account", "FAUCET_KEY_ENV", "DEV_KEYS", "EVM_ENV", "EVMS"]

log = logging.getLogger(__name__)

FAUCET_KEY_ENV = "LEARNINGCHAIN_FAUCET_KEY"
#: picks the in-process EVM when Chain.embedded is not told: "pyrevm" or "py-evm"
EVM_ENV = "LEARNINGCHAIN_EVM"
#: seconds before an unmined transaction is re-sent with higher fees, on a JSON-RPC chain
REPLACE_AFTER_ENV = "LEARNINGCHAIN_REPLACE_AFTER"
EVMS = ("pyrevm", "py-evm")
GWEI = 10**9
#: The publicly known development keys of eth-tester (1, 2, ...) and anvil (the
#: "test test ... junk" mnemonic); used only for chains that fund them at genesis.
DEV_KEYS = {
    "eth-tester": "0x" + "00" * 31 + "01",
    "anvil": "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
}
#: chain ids of development chains, the only ones on which the public DEV_KEYS are used
#: (eth-tester and anvil / hardhat use 131277322940537 and 31337)
DEV_CHAIN_IDS = frozenset({131277322940537, 31337, 1337})


def _wei(gwei: float) -> int:
    return int(round(float(gwei) * GWEI))


class EthereumError(LearningChainError):
    """The Ethereum chain refused or failed a request."""


class Reverted(EthereumError):
    """A contract call reverted; ``reason`` is the contract's revert string."""

    def __init__(self, reason: str, what: str = "transaction"):
        super().__init__(f"{what} reverted: {reason}")
        self.reason = reason


@dataclass
class Account:
    """A key that signs its own transactions, with its next nonce."""

    key: object  # eth_account LocalAccount
    nonce: Optional[int] = None
    label: str = ""

    @property
    def address(self) -> str:
        return self.key.address

    @classmethod
    def from_secret(cls, secret: bytes | str, label: str = "") -> "Account":
        from eth_account import Account as _EA

        return cls(_EA.from_key(secret), label=label)


_REASON = re.compile(r"execution reverted:?\s*(.*)", re.S)


def _revert_reason(exc: Exception) -> Optional[str]:
    """The revert string of a web3/eth-tester error, or None when it is no revert."""
    name = type(exc).__name__
    text = str(getattr(exc, "message", None) or exc)
    if name in ("ContractLogicError", "ContractCustomError", "TransactionFailed") or "revert" in text.lower():
        m = _REASON.search(text)
        reason = (m.group(1) if m else text).strip().strip("'\"")
        if reason.startswith("b'") or reason.startswith('b"'):
            reason = reason[2:-1]
        return reason or "reverted without a reason"
    return None


@dataclass
class Chain:
    w3: object
    kind: str  # "embedded" or "rpc"
    url: Optional[str] = None
    fees_paid: int = 0  # wei spent on gas by the transactions this object sent
    receipts: list = field(default_factory=list)
    keep_receipts: bool = False
    #: gas limits learnt per kind of transaction: estimating costs a binary search
    #: (a dozen executions) on the in-process EVM, so it is done once per kind.
    gas_hints: dict = field(default_factory=dict)
    #: when set, a transaction without an explicit limit gets this one after a single
    #: call that reports any revert (no estimate); for tests on the in-process EVM
    fixed_gas: Optional[int] = None
    #: the chain id every transaction is signed for (pinned at connection)
    pinned_chain_id: Optional[int] = None
    #: the most a transaction pays per gas, and the largest tip it offers (wei)
    max_fee: int = 100 * GWEI
    max_tip: int = GWEI
    #: seconds a transaction may wait unmined before it is re-sent with the same nonce and
    #: higher fees (EIP-1559 replacement, within max_fee); None: never
    replace_after: Optional[float] = None
    #: the in-process EVM ("pyrevm" or "py-evm"); None on a JSON-RPC node
    evm: Optional[str] = None

    # -- construction -----------------------------------------------------------------
    @classmethod
    def embedded(cls, *, gas_limit: Optional[int] = None, max_fee_gwei: float = 100.0,
                 priority_fee_gwei: float = 1.0, evm: Optional[str] = None) -> "Chain":
        """An in-process chain (Prague) with funded dev accounts, on ``evm``: "pyrevm" (revm,
        the default where installed) or "py-evm" (eth-tester); ``$LEARNINGCHAIN_EVM`` picks it
        when ``evm`` is not given."""
        from . import revm

        evm = evm or os.environ.get(EVM_ENV) or ("pyrevm" if revm.available() else "py-evm")
        if evm not in EVMS:
            raise ConfigError(f"unknown in-process EVM {evm!r}: choose one of {', '.join(EVMS)}")
        if evm == "pyrevm":
            from web3 import Web3

            w3 = Web3(revm.RevmProvider(gas_limit=gas_limit))
            return cls(w3, "embedded", pinned_chain_id=int(w3.eth.chain_id), max_fee=_wei(max_fee_gwei),
                       max_tip=_wei(priority_fee_gwei), evm="pyrevm")
        try:
            from eth_tester import EthereumTester, PyEVMBackend
            from web3 import EthereumTesterProvider, Web3
        except ImportError as exc:  # pragma: no cover
            raise ConfigError("the Ethereum backend needs web3[tester] (pip install 'learningchain[ethereum]')") \
                from exc
        overrides = {"gas_limit": gas_limit} if gas_limit else None
        backend = PyEVMBackend(genesis_parameters=PyEVMBackend.generate_genesis_params(overrides=overrides))
        w3 = Web3(EthereumTesterProvider(EthereumTester(backend)))
        return cls(w3, "embedded", pinned_chain_id=int(w3.eth.chain_id), max_fee=_wei(max_fee_gwei),
                   max_tip=_wei(priority_fee_gwei), evm="py-evm")

    @classmethod
    def connect(cls, url: str, *, timeout: float = 120.0, chain_id: Optional[int] = None,
                max_fee_gwei: float = 100.0, priority_fee_gwei: float = 1.0) -> "Chain":
        """A node over JSON-RPC, on chain ``chain_id`` (refused on another; without it, only a
        development chain is taken); transactions pay at most ``max_fee_gwei`` per gas."""
        from web3 import Web3

        if url.startswith(("http://", "https://")):
            provider = Web3.HTTPProvider(url, request_kwargs={"timeout": timeout})
        else:
            raise ConfigError(f"--rpc-url must be an http(s) URL, got {url!r}")
        w3 = Web3(provider)
        try:
            node_id = int(w3.eth.chain_id)
        except Exception as exc:
            raise EthereumError(f"no Ethereum node answers at {url}: {exc}") from None
        if chain_id is not None and node_id != chain_id:
            raise ConfigError(f"the node at {url} is on chain {node_id}, not the pinned chain_id {chain_id}")
        if chain_id is None and node_id not in DEV_CHAIN_IDS:
            raise ConfigError(f"the node at {url} is on chain {node_id}, not a development chain: pin it with "
                              f"--chain-id {node_id} (transactions are signed for the pinned chain only)")
        replace_after = os.environ.get(REPLACE_AFTER_ENV)
        try:
            replace_after = None if not replace_after else float(replace_after)
        except ValueError:
            raise ConfigError(f"${REPLACE_AFTER_ENV} must be a number of seconds, got {replace_after!r}") from None
        if replace_after is not None and not replace_after > 0:
            raise ConfigError(f"${REPLACE_AFTER_ENV} must be > 0 seconds")
        return cls(w3, "rpc", url=url, pinned_chain_id=node_id, max_fee=_wei(max_fee_gwei),
                   max_tip=_wei(priority_fee_gwei), replace_after=replace_after)

    # -- facts --------------------------------------------------------------------------
    @property
    def chain_id(self) -> int:
        """The pinned chain id (a node that moves to another chain cannot replay our
        transactions there: they are signed for this one)."""
        return int(self.w3.eth.chain_id) if self.pinned_chain_id is None else self.pinned_chain_id

    def block_number(self) -> int:
        return int(self.w3.eth.block_number)

    def balance(self, address: str) -> int:
        return int(self.w3.eth.get_balance(address))

    def gas_limit(self) -> int:
        return int(self.w3.eth.get_block("latest")["gasLimit"])

    def faucet(self) -> Account:
        """The account that pays for the run: $LEARNINGCHAIN_FAUCET_KEY, else the chain's funded dev key."""
        secret = os.environ.get(FAUCET_KEY_ENV)
        if secret:
            return Account.from_secret(secret, "faucet")
        if self.kind == "embedded" or self.chain_id in DEV_CHAIN_IDS:
            for name, dev in DEV_KEYS.items():
                acct = Account.from_secret(dev, "faucet")
                if self.balance(acct.address) > 0:
                    return acct
        raise ConfigError(f"no funded faucet account on this chain (id {self.chain_id}): set {FAUCET_KEY_ENV} "
                          "to a funded private key (the public development keys are used only on development "
                          "chains)")

    def wait_until_block(self, number: int, *, timeout: float = 3600.0) -> None:
        """Return once the chain's head is at least block ``number``: a development chain
        (the in-process EVM, anvil, hardhat) mines the empty blocks at once; any other
        chain is polled while its producers make them."""
        missing = number - self.block_number()
        if missing <= 0:
            return
        if self.kind == "embedded":
            self._dev_chain().mine_blocks(missing)
            return
        try:
            self.w3.provider.make_request("anvil_mine", [hex(missing)])
        except Exception:
            pass
        deadline = time.monotonic() + timeout
        while self.block_number() < number:
            if time.monotonic() > deadline:
                raise EthereumError(f"the chain did not reach block {number} within {timeout:.0f} s")
            time.sleep(1.0)

    def _dev_chain(self):
        """The in-process chain's own controls (eth-tester's, or the pyrevm node)."""
        return getattr(self.w3.provider, "ethereum_tester", self.w3.provider)

    def travel_to(self, timestamp: int) -> None:
        """Development chains only (tests): mine a block at ``timestamp`` or later."""
        if self.kind == "embedded":
            self._dev_chain().time_travel(int(timestamp))
        else:
            self.w3.provider.make_request("evm_setNextBlockTimestamp", [int(timestamp)])
            self.w3.provider.make_request("evm_mine", [])

    # -- fees -----------------------------------------------------------------------------
    def fee_fields(self) -> dict:
        """EIP-1559 fees: twice the base fee plus the tip, within the user's caps; a base fee
        that leaves no room for the tip under the cap stops the run."""
        base = int(self.w3.eth.get_block("latest").get("baseFeePerGas") or GWEI)
        tip = min(GWEI, self.max_tip)
        if base + tip > self.max_fee:
            raise EthereumError(f"the base fee is {base / GWEI:.3f} gwei: with a {tip / GWEI:.3f} gwei tip it "
                                f"exceeds max_fee_gwei ({self.max_fee / GWEI:.3f}); raise it or wait")
        return {"maxFeePerGas": min(2 * base + tip, self.max_fee), "maxPriorityFeePerGas": tip}

    # -- transactions ---------------------------------------------------------------------
    def _next_nonce(self, sender: Account) -> int:
        if sender.nonce is None:
            sender.nonce = int(self.w3.eth.get_transaction_count(sender.address, "pending"))
        return sender.nonce

    def estimate(self, tx: dict, what: str = "transaction") -> int:
        tx = {k: v for k, v in tx.items() if k not in ("gas", "maxFeePerGas", "maxPriorityFeePerGas", "nonce")}
        if self.kind == "embedded":
            # eth-tester checks that the sender could pay the whole block's gas at
            # 1 gwei while it searches; a zero price lifts that (fees are not estimated)
            tx.update(maxFeePerGas=0, maxPriorityFeePerGas=0)
        try:
            return int(self.w3.eth.estimate_gas(tx, self._sim_block()))
        except Exception as exc:
            reason = _revert_reason(exc)
            if reason is not None:
                raise Reverted(reason, what) from None
            raise EthereumError(f"{what}: the node refused it: {exc}") from None

    def _sim_block(self) -> str:
        """Where calls and estimates run: the pending block (eth-tester serves no pending
        estimate; its calls already run on top of the latest block)."""
        return "latest" if self.evm == "py-evm" else "pending"

    def preflight(self, tx: dict, what: str = "transaction") -> None:
        """Run ``tx`` as a call in the pending block (where it will run: a later block than
        every transaction sent so far); raise Reverted with the contract's reason if it reverts."""
        call = {k: v for k, v in tx.items() if k in ("from", "to", "data", "value")}
        try:
            self.w3.eth.call(call, self._sim_block())
        except Exception as exc:
            reason = _revert_reason(exc)
            if reason is not None:
                raise Reverted(reason, what) from None
            raise EthereumError(f"{what}: the node refused it: {exc}") from None

    def gas_for(self, tx: dict, what: str, hint: Optional[str]) -> int:
        """A gas limit for ``tx``: twice the estimate for the first transaction of its kind
        (``hint``, same contract, same calldata size), then the same limit again."""
        if self.fixed_gas is not None:
            self.preflight(tx, what)
            return min(self.fixed_gas, self.gas_limit())
        key = None if hint is None else (hint, tx.get("to"), len(tx.get("data") or b""))
        if key is not None and key in self.gas_hints:
            return self.gas_hints[key]
        estimate = self.estimate({k: v for k, v in tx.items() if k != "chainId"}, what)
        gas = min(2 * estimate + 50_000, self.gas_limit())
        if key is not None:
            self.gas_hints[key] = gas
        return gas

    def send(self, sender: Account, tx: dict, *, what: str = "transaction", gas: Optional[int] = None,
             fees: Optional[dict] = None, hint: Optional[str] = None, _retry: bool = False) -> dict:
        """Sign, send and wait: returns the receipt; raises Reverted on a revert.

        Without ``gas`` the limit is estimated (which refuses a reverting call
        with its reason before anything is sent), or taken from the hint learnt
        for the same kind of transaction; a hinted transaction that reverts is
        replayed to recover the reason.
        """
        tx = dict(tx)
        tx["from"] = sender.address
        tx.setdefault("value", 0)
        tx.setdefault("chainId", self.chain_id)
        tx["gas"] = gas if gas is not None else self.gas_for(tx, what, hint)
        tx.update(fees or self.fee_fields())
        tx["nonce"] = self._next_nonce(sender)
        signed = sender.key.sign_transaction(tx)
        try:
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except Exception as exc:
            reason = _revert_reason(exc)
            if reason is not None:
                raise Reverted(reason, what) from None
            if "nonce too low" in str(exc).lower() and not _retry:
                # another client sent from this account meanwhile: ask the node again
                sender.nonce = None
                tx.pop("nonce")
                return self.send(sender, tx, what=what, gas=tx.pop("gas"), fees=fees, hint=hint, _retry=True)
            raise EthereumError(f"{what}: the node refused it: {exc}") from None
        sender.nonce += 1
        receipt = self._wait_receipt(tx_hash, what, resend=lambda: self._replace(sender, tx))
        self.fees_paid += int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])
        if self.keep_receipts:
            self.receipts.append(receipt)
        if int(receipt["status"]) != 1:
            reason = self._replay_reason(tx, receipt)
            if reason is None and gas is None and hint is not None and not _retry:
                # it ran out of the learnt gas limit: learn it again from this state
                self.gas_hints.pop((hint, tx.get("to"), len(tx.get("data") or b"")), None)
                tx.pop("gas")
                tx.pop("nonce")
                return self.send(sender, tx, what=what, fees=fees, hint=hint, _retry=True)
            raise Reverted(reason or f"ran out of gas ({receipt['gasUsed']} of {tx['gas']})", what)
        return receipt

    def _replace(self, sender: Account, tx: dict):
        """Re-sign ``tx`` (same nonce) with fees raised by 1/8 + 1 wei (nodes ask at least 10%
        for a replacement), within max_fee; its hash, or None when the cap leaves no room."""
        fee, tip = int(tx["maxFeePerGas"]), int(tx["maxPriorityFeePerGas"])
        new_fee = min(fee + fee // 8 + 1, self.max_fee)
        new_tip = min(tip + tip // 8 + 1, new_fee)
        if new_fee < fee + fee // 10 or new_tip < tip + tip // 10:
            return None  # at the user's cap: keep waiting for the one sent
        tx.update(maxFeePerGas=new_fee, maxPriorityFeePerGas=new_tip)
        signed = sender.key.sign_transaction(tx)
        try:
            return self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except Exception as exc:
            if "nonce too low" in str(exc).lower() or "already known" in str(exc).lower():
                return None  # the first one was mined meanwhile
            raise EthereumError(f"replacement refused: {exc}") from None

    def _wait_receipt(self, tx_hash, what: str, timeout: float = 600.0, resend=None):
        """The receipt, polled at 5 ms, then backing off to 1 s.

        A development node that mines on arrival has it within milliseconds
        (web3's fixed 0.1 s poll would dominate a round there); a public chain
        is asked about once a second while its block is being made.
        """
        from web3.exceptions import TransactionNotFound

        delay, deadline = 0.005, time.monotonic() + timeout
        hashes = [tx_hash]  # a replacement may be mined, or the one it replaced
        next_replace = None if self.replace_after is None else time.monotonic() + self.replace_after
        while True:
            receipt = None
            try:
                for h in hashes:
                    try:
                        receipt = self.w3.eth.get_transaction_receipt(h)
                    except TransactionNotFound:
                        continue
                    if receipt is not None:
                        break
            except TransactionNotFound:
                receipt = None
            except (OSError, TimeoutError) as exc:  # a dropped connection or a busy node: ask again
                if time.monotonic() > deadline:
                    raise EthereumError(f"{what}: the node stopped answering: {exc}") from None
                receipt = None
            if receipt is not None:
                return receipt
            if time.monotonic() > deadline:
                raise EthereumError(f"{what}: no receipt for {tx_hash.hex()} after {timeout:.0f} s")
            if next_replace is not None and resend is not None and time.monotonic() >= next_replace:
                new = resend()
                if new is not None:
                    log.info("%s: not mined after %.1f s, re-sent with higher fees as %s", what,
                             self.replace_after, new.hex())
                    hashes.append(new)
                next_replace = time.monotonic() + self.replace_after
            time.sleep(delay)
            delay = min(1.0, delay * 1.5)

    def _replay_reason(self, tx: dict, receipt) -> Optional[str]:
        """The revert reason of a failed transaction, replayed as a call; None when it
        does not revert as a call (it ran out of gas)."""
        call = {k: tx[k] for k in ("from", "to", "data", "value", "gas") if k in tx}
        if self.kind == "embedded":
            # eth-tester charges the call's gas at the block's price up front: a fresh
            # pseudo-identity funded for its one transaction could not pay it
            call.update(maxFeePerGas=0, maxPriorityFeePerGas=0)
        try:
            self.w3.eth.call(call, int(receipt["blockNumber"]) - 1)
        except Exception as exc:
            return _revert_reason(exc)
        return None

    def transfer(self, sender: Account, to: str, value: int, *, what: str = "transfer") -> dict:
        return self.send(sender, {"to": to, "value": int(value)}, what=what, gas=21_000)

    def call_tx(self, sender: Account, contract, name: str, *args, value: int = 0, what: Optional[str] = None,
                gas: Optional[int] = None, fees: Optional[dict] = None, hint: Optional[str] = None) -> dict:
        """Send a call of the contract's function ``name`` with ``args``."""
        tx = {"to": contract.address, "data": contract.encode_abi(name, args=list(args)), "value": int(value)}
        return self.send(sender, tx, what=what or name, gas=gas, fees=fees, hint=hint)

    def deploy(self, sender: Account, abi: list, bytecode: str, args: list, *, what: str = "deploy",
               with_gas: bool = False):
        """Deploy a contract; its address (and the gas used, ``with_gas``)."""
        contract = self.w3.eth.contract(abi=abi, bytecode=bytecode)
        data = contract.constructor(*args).data_in_transaction
        receipt = self.send(sender, {"data": data}, what=what)
        if with_gas:
            return receipt["contractAddress"], int(receipt["gasUsed"])
        return receipt["contractAddress"]
