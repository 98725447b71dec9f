"""A connection to an Ethereum chain: the in-process EVM or any JSON-RPC node.

``Chain.embedded()`` starts an in-process chain (eth-tester on py-evm, Prague
rules, automatic mining: one block per transaction); ``Chain.connect(url)``
talks to a node over JSON-RPC (the tests use anvil). Either way transactions are
signed here by the account that sends them and submitted raw, so a
pseudo-identity key never leaves its holder.

Every transaction is first estimated (``eth_estimateGas``): a call that would
revert is refused before it is sent, with the contract's reason, as
:class:`Reverted`.

On the in-process pyrevm chain the requests of the transaction path (block,
balance, nonce, sending, receipts, contract reads, event logs) go to the
provider directly, past web3's middleware and formatters (which cost more than
the EVM's execution there); receipts, reads and logs are shaped as web3 shapes
them, the same objects either way (tests/ethereum/test_fastpath.py compares
them). Calls are encoded from the contract's ABI entry, looked up once per
function (:meth:`Chain.encode_call`), and plain EIP-1559 transactions signed
without eth-account's formatters, to eth-account's bytes (:func:`_sign_1559`).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Optional

from ..errors import ConfigError, LearningChainError

#: The most gas one transaction may use from Osaka on (EIP-7825). Whatever fits it is
#: sent with a limit within it: such a node refuses a transaction whose limit is above.
TX_GAS_CAP = 1 << 24

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


class _NodeError(EthereumError):
    """An error answer of the node to a request sent past web3 (its message is the node's)."""


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
    #: the key as a coincurve.PrivateKey, made at the first transaction signed here
    _signer: object = field(default=None, repr=False, compare=False)

    @property
    def address(self) -> str:
        return self.key.address

    @classmethod
    def from_secret(cls, secret: bytes | str, label: str = "") -> "Account":
        from eth_account import Account as _EA

        return cls(_EA.from_key(secret), label=label)


_FIXED_BYTES = re.compile(r"bytes([0-9]+)$")
_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}$")
#: the fields of an EIP-1559 transaction that _sign_1559 signs; with any other, eth-account signs
_SIGNED_FIELDS = frozenset({"from", "to", "data", "value", "chainId", "gas", "maxFeePerGas", "maxPriorityFeePerGas",
                            "nonce"})
_UINT256 = 2**256


#: ABI types decoded here as web3 decodes them (no tuples: web3 names their fields)
_SIMPLE_TYPE = re.compile(r"(u?int[0-9]*|address|bool|bytes[0-9]*|string)(\[[0-9]*\])*$")
#: the indexed event arguments whose topic is their ABI encoding (not a hash of it)
_STATIC_TOPIC = re.compile(r"(u?int[0-9]*|address|bool|bytes([1-9]|[12][0-9]|3[0-2]))$")


@functools.lru_cache(maxsize=4096)
def _checksum(address: str) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address(address)


def _int(x):
    return int(x, 16)


def _bytes32(x):
    from hexbytes import HexBytes

    out = HexBytes(x)
    if len(out) != 32:
        raise ValueError(f"{x!r} is not 32 bytes")
    return out


def _address_or_none(x):
    return None if x is None else _checksum(x)


def _hexbytes(x):
    from hexbytes import HexBytes

    return HexBytes(x)


#: web3's receipt and log formatters (web3/_utils/method_formatters.py) for the fields the
#: pyrevm node serves: hex quantities to int, hashes and data to HexBytes, addresses checksummed
_LOG_FIELDS = {"address": _checksum, "topics": lambda ts: [_bytes32(t) for t in ts], "data": _hexbytes,
               "blockNumber": _int, "blockHash": _bytes32, "transactionHash": _bytes32,
               "transactionIndex": _int, "logIndex": _int, "removed": lambda x: x}
_RECEIPT_FIELDS = {"transactionHash": _bytes32, "transactionIndex": _int, "blockHash": _bytes32,
                   "blockNumber": _int, "from": _checksum, "to": _address_or_none, "gasUsed": _int,
                   "cumulativeGasUsed": _int, "effectiveGasPrice": _int, "status": _int,
                   "contractAddress": _address_or_none, "logs": None, "type": _int,
                   "logsBloom": _hexbytes}


def _receipt_from_json(raw: dict):
    """The pyrevm node's JSON receipt as web3's formatter and AttributeDict make it (the same
    values, types and key order), or None for any field this does not know (web3 does it)."""
    from web3.datastructures import AttributeDict

    if not isinstance(raw, dict) or not set(raw) <= set(_RECEIPT_FIELDS) or not isinstance(raw.get("logs"), list):
        return None
    if not all(isinstance(e, dict) and set(e) <= set(_LOG_FIELDS) and "removed" in e for e in raw["logs"]):
        return None
    try:
        out = {}
        for key, value in raw.items():
            if key == "logs":
                out[key] = [AttributeDict({k: _LOG_FIELDS[k](v) for k, v in e.items()}) for e in value]
            else:
                out[key] = _RECEIPT_FIELDS[key](value)
    except (TypeError, ValueError):
        return None
    return AttributeDict(out)


def _web3_value(typ: str, value):
    """A decoded ABI value as web3 returns it: addresses checksummed, arrays as lists."""
    if typ.endswith("]"):
        inner = typ[:typ.rindex("[")]
        return [_web3_value(inner, v) for v in value]
    return _checksum(value) if typ == "address" else value


@functools.lru_cache(maxsize=4096)
def _is_checksummed(address: str) -> bool:
    return address == _checksum(address)


def _sign_1559(key, tx: dict, signer=None) -> Optional[bytes]:
    """The raw signed EIP-1559 transaction that ``key.sign_transaction(tx)`` makes (eth-account
    with the coincurve backend: the same RLP, keccak and RFC 6979 signature, byte for byte), for
    the transactions the driver sends; None where eth-account must do it (other fields, values
    it would normalise or refuse). ``signer``: the key as a coincurve.PrivateKey, if made before."""
    try:
        import coincurve
        import rlp
        from eth_utils import keccak
    except ImportError:  # pragma: no cover
        return None
    if not _SIGNED_FIELDS.issuperset(tx) or tx.get("from", key.address) != key.address:
        return None
    ints = [tx.get("chainId"), tx.get("nonce"), tx.get("maxPriorityFeePerGas"), tx.get("maxFeePerGas"),
            tx.get("gas"), tx.get("value", 0)]
    if not all(type(v) is int and 0 <= v < _UINT256 for v in ints):
        return None
    to = tx.get("to")
    if to is None or to == b"" or to == "":
        if "to" in tx:
            return None  # eth-account decides what an explicit empty destination means
        to_bytes = b""
    elif isinstance(to, str) and _HEX_ADDRESS.match(to) and _is_checksummed(to):
        to_bytes = bytes.fromhex(to[2:])
    else:
        return None
    data = tx.get("data", b"")
    if isinstance(data, str):
        if not re.fullmatch(r"0x(?:[0-9a-fA-F]{2})*", data):
            return None
        data = bytes.fromhex(data[2:])
    elif type(data) is not bytes:
        return None
    chain_id, nonce, tip, fee, gas, value = ints
    fields = [chain_id, nonce, tip, fee, gas, to_bytes, value, data, []]
    digest = keccak(b"\x02" + rlp.encode(fields))
    if signer is None:
        signer = coincurve.PrivateKey(bytes(key.key))
    signature = signer.sign_recoverable(digest, hasher=None)
    r, s, v = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big"), signature[64]
    return b"\x02" + rlp.encode(fields + [v, r, s])


def _plain(typ: str, value) -> bool:
    """Whether ``value`` is already the Python value of ABI type ``typ`` that eth_abi encodes
    as web3 does (web3 first normalises hex strings and addresses, and refuses a bytesN value
    of another length, which eth_abi would pad): ints for (u)intN and their arrays, bytes of
    the exact size for bytesN, bytes for bytes."""
    if typ.endswith("[]"):
        return isinstance(value, (list, tuple)) and all(_plain(typ[:-2], v) for v in value)
    if typ.startswith(("uint", "int")):
        return type(value) is int
    if typ == "bytes":
        return type(value) is bytes
    m = _FIXED_BYTES.match(typ)
    if m:
        return type(value) is bytes and len(value) == int(m.group(1))
    return False


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
    #: what encode_call, read and events look up once per contract ABI and function or event
    _abi_cache: dict = field(default_factory=dict, repr=False)

    @property
    def _direct(self) -> bool:
        """Whether requests go to the provider past web3's middleware (the in-process pyrevm
        chain, whose provider is this package's own node)."""
        return self.evm == "pyrevm"

    def _request(self, method: str, params: list):
        """One request straight to the provider; its result, or _NodeError with the node's
        message (the same text web3 would raise)."""
        response = self.w3.provider.make_request(method, params)
        if "error" in response:
            error = response["error"]
            message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            raise _NodeError(message)
        return response["result"]

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
        if self._direct:
            return int(self._request("eth_blockNumber", []), 16)
        return int(self.w3.eth.block_number)

    def balance(self, address: str) -> int:
        if self._direct:
            return int(self._request("eth_getBalance", [address, "latest"]), 16)
        return int(self.w3.eth.get_balance(address))

    def _latest_block(self) -> dict:
        """gasLimit and baseFeePerGas of the latest block."""
        if self._direct:
            block = self._request("eth_getBlockByNumber", ["latest", False])
            return {"gasLimit": int(block["gasLimit"], 16), "baseFeePerGas": int(block["baseFeePerGas"], 16)}
        return self.w3.eth.get_block("latest")

    def gas_limit(self) -> int:
        return int(self._latest_block()["gasLimit"])

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
        base = int(self._latest_block().get("baseFeePerGas") or GWEI)
        tip = min(GWEI, self.max_tip)
        if base + tip > self.max_fee:
            raise EthereumError(f"the base fee is {base / GWEI:.3f} gwei: with a {tip / GWEI:.3f} gwei tip it "
                                f"exceeds max_fee_gwei ({self.max_fee / GWEI:.3f}); raise it or wait")
        return {"maxFeePerGas": min(2 * base + tip, self.max_fee), "maxPriorityFeePerGas": tip}

    # -- transactions ---------------------------------------------------------------------
    def _next_nonce(self, sender: Account) -> int:
        if sender.nonce is None:
            if self._direct:
                sender.nonce = int(self._request("eth_getTransactionCount", [sender.address, "pending"]), 16)
            else:
                sender.nonce = int(self.w3.eth.get_transaction_count(sender.address, "pending"))
        return sender.nonce

    @staticmethod
    def _sign(sender: Account, tx: dict) -> bytes:
        """``tx`` signed by ``sender``: eth-account's bytes, made without its formatters where
        the transaction is a plain EIP-1559 one (_sign_1559)."""
        if sender._signer is None:
            try:
                import coincurve

                sender._signer = coincurve.PrivateKey(bytes(sender.key.key))
            except ImportError:  # pragma: no cover
                pass
        raw = _sign_1559(sender.key, tx, sender._signer)
        return raw if raw is not None else bytes(sender.key.sign_transaction(tx).raw_transaction)

    def _send_raw(self, raw: bytes):
        if self._direct:
            from hexbytes import HexBytes

            return HexBytes(self._request("eth_sendRawTransaction", ["0x" + bytes(raw).hex()]))
        return self.w3.eth.send_raw_transaction(raw)

    def _receipt(self, tx_hash):
        """The receipt, shaped as web3 shapes it; raises web3's TransactionNotFound while there is none."""
        if self._direct:
            from web3._utils.method_formatters import receipt_formatter
            from web3.datastructures import AttributeDict
            from web3.exceptions import TransactionNotFound

            raw = self._request("eth_getTransactionReceipt", ["0x" + bytes(tx_hash).hex()])
            if raw is None:
                raise TransactionNotFound(f"Transaction with hash: '{tx_hash!r}' not found.")
            mine = _receipt_from_json(raw)
            return mine if mine is not None else AttributeDict.recursive(receipt_formatter(raw))
        return self.w3.eth.get_transaction_receipt(tx_hash)

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
        if estimate <= TX_GAS_CAP:  # a node from Osaka on refuses a limit above the cap (EIP-7825)
            gas = min(gas, TX_GAS_CAP)
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
        try:
            tx_hash = self._send_raw(self._sign(sender, tx))
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
        try:
            return self._send_raw(self._sign(sender, tx))
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
                        receipt = self._receipt(h)
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
        tx = {"to": contract.address, "data": self.encode_call(contract, name, args), "value": int(value)}
        return self.send(sender, tx, what=what or name, gas=gas, fees=fees, hint=hint)

    def _cached(self, contract, key: tuple, make):
        """``make()`` once per ABI object and ``key`` (the ABI itself is kept with the entry, so
        another contract object at the same address with another ABI gets its own)."""
        key = (contract.address, id(contract.abi)) + key
        hit = self._abi_cache.get(key)
        if hit is None or hit[0] is not contract.abi:
            hit = self._abi_cache[key] = (contract.abi, make())
        return hit[1]

    def _abi_entry(self, contract, name: str, nargs: int):
        def make():
            from eth_utils import function_abi_to_4byte_selector
            from eth_utils.abi import collapse_if_tuple

            found = [e for e in contract.abi if e.get("type") == "function" and e.get("name") == name
                     and len(e.get("inputs", [])) == nargs]
            if len(found) != 1:
                return None
            fn = found[0]
            return (function_abi_to_4byte_selector(fn), [collapse_if_tuple(i) for i in fn["inputs"]],
                    [collapse_if_tuple(o) for o in fn.get("outputs", [])])

        return self._cached(contract, ("function", name, nargs), make)

    def encode_call(self, contract, name: str, args) -> str:
        """The calldata of ``name(*args)`` on ``contract`` as a 0x hex string, the bytes web3's
        ``encode_abi`` makes: the selector and argument types are looked up once per function,
        then each call is one ``eth_abi.encode``. Arguments that are not already the Python
        values of their ABI types (hex strings, ENS names, numpy scalars) go through web3."""
        args = list(args)
        entry = self._abi_entry(contract, name, len(args))
        if entry is not None and all(_plain(t, a) for t, a in zip(entry[1], args)):
            from eth_abi import encode

            selector, types, _ = entry
            try:
                return "0x" + (selector + encode(types, args)).hex()
            except Exception:
                pass  # web3 gives the error its usual form
        return contract.encode_abi(name, args=args)

    def read(self, contract, name: str, *args, block="latest"):
        """The value of the view function ``name(*args)`` (one value, or a tuple of several):
        what ``contract.functions.name(*args).call()`` returns, addresses checksummed."""
        entry = self._abi_entry(contract, name, len(args))
        if not self._direct or entry is None or not entry[2] or not all(_SIMPLE_TYPE.match(t) for t in entry[2]):
            return getattr(contract.functions, name)(*args).call(block_identifier=block)
        from eth_abi import decode

        call = {"to": contract.address, "data": self.encode_call(contract, name, args)}
        try:
            out = self._request("eth_call", [call, block])
        except _NodeError as exc:
            reason = _revert_reason(exc)
            if reason is not None:
                raise Reverted(reason, f"call {name}") from None
            raise
        types = entry[2]
        values = decode(types, bytes.fromhex(out[2:]))
        values = tuple(_web3_value(t, v) for t, v in zip(types, values))
        return values[0] if len(values) == 1 else values

    def _event_entry(self, contract, name: str):
        def make():
            from eth_utils import event_abi_to_log_topic
            from eth_utils.abi import collapse_if_tuple

            found = [e for e in contract.abi if e.get("type") == "event" and e.get("name") == name]
            if len(found) != 1 or found[0].get("anonymous"):
                return None
            ev = found[0]
            inputs = [(i["name"], collapse_if_tuple(i), bool(i.get("indexed"))) for i in ev["inputs"]]
            if not all(_SIMPLE_TYPE.match(t) for _, t, _ in inputs) or \
                    not all(_STATIC_TOPIC.match(t) for _, t, indexed in inputs if indexed):
                return None
            return event_abi_to_log_topic(ev), inputs

        return self._cached(contract, ("event", name), make)

    def events(self, contract, name: str, *, from_block, argument_filters: Optional[dict] = None) -> list:
        """The logs of event ``name`` of ``contract`` from block ``from_block`` to the latest, as
        ``contract.events.<name>.get_logs(from_block=..., argument_filters=...)`` returns them
        (the same AttributeDicts). On the in-process pyrevm chain, with filters on indexed
        integers only, the request is made and the logs decoded here, without web3's per-log
        formatters."""
        filters = dict(argument_filters or {})
        entry = self._event_entry(contract, name) if self._direct else None
        if entry is not None:
            indexed = {n: t for n, t, ix in entry[1] if ix}
            if not all(n in indexed and indexed[n].startswith(("uint", "int")) and type(v) is int
                       for n, v in filters.items()):
                entry = None
        if entry is None:
            return getattr(contract.events, name).get_logs(from_block=from_block, argument_filters=filters or None)
        from eth_abi import decode, encode
        from hexbytes import HexBytes
        from web3.datastructures import AttributeDict

        topic0, inputs = entry
        topics = ["0x" + topic0.hex()]
        for n, t, ix in inputs:
            if ix:
                topics.append("0x" + encode([t], [filters[n]]).hex() if n in filters else None)
        while topics[-1] is None:
            topics.pop()
        start = hex(from_block) if isinstance(from_block, int) else from_block
        logs = self._request("eth_getLogs", [{"fromBlock": start, "toBlock": "latest", "address": contract.address,
                                              "topics": topics}])
        plain_types = [t for _, t, ix in inputs if not ix]
        out = []
        for log in logs:
            given = [bytes.fromhex(x[2:]) for x in log["topics"][1:]]
            values = iter(decode(plain_types, bytes.fromhex(log["data"][2:])))
            args = {}
            for k, (n, t, ix) in enumerate(inputs):
                v = decode([t], given.pop(0))[0] if ix else next(values)
                args[n] = _checksum(v) if t == "address" else v
            out.append(AttributeDict({
                "args": AttributeDict(args), "event": name, "logIndex": int(log["logIndex"], 16),
                "transactionIndex": int(log["transactionIndex"], 16),
                "transactionHash": HexBytes(log["transactionHash"]), "address": _checksum(log["address"]),
                "blockHash": HexBytes(log["blockHash"]), "blockNumber": int(log["blockNumber"], 16)}))
        out = sorted(out, key=lambda e: e["logIndex"])  # web3's order
        return sorted(out, key=lambda e: e["blockNumber"])

    def deploy(self, sender: Account, abi: list, bytecode: str, args: list, *, what: str = "deploy",
               with_gas: bool = False):
        """Deploy a contract; its address (and the gas used, ``with_gas``)."""
        contract = self.w3.eth.contract(abi=abi, bytecode=bytecode)
        data = contract.constructor(*args).data_in_transaction
        receipt = self.send(sender, {"data": data}, what=what)
        if with_gas:
            return receipt["contractAddress"], int(receipt["gasUsed"])
        return receipt["contractAddress"]
