"""An in-process chain on pyrevm (revm, the Rust EVM), served to web3 as a JSON-RPC node.

:class:`RevmProvider` is a web3 provider: ``Chain`` talks to it exactly as to
eth-tester or anvil (raw signed transactions, receipts, logs, calls), so the
contract, the driver and their results are the same on either EVM.

pyrevm 0.3.7 exposes revm as a test harness, not a node: ``message_call``
neither charges gas nor bumps the sender's nonce, and its state is one open
journal in which every account and slot touched once stays *warm* for ever
(EIP-2929 would then charge 100 gas where a real chain charges 2,100 or 2,600).
So this module is the node around it:

* the world state (balances, nonces, code, storage) lives here, in Python, and
  as cold database entries of one ``pyrevm.EVM``;
* each transaction runs on that EVM inside a checkpoint: the accounts and slots
  it changed (its journal) are read back, then the checkpoint is reverted, which
  undoes its writes and the accounts and slots it warmed, and its changes are
  written to the database, cold. So every transaction starts cold on the
  current state, and access costs and the original values of EIP-2200's storage
  pricing are those of a real block: what a fresh EVM loaded with the whole
  state would charge, without loading the whole state for every transaction
  (a cost that grew with the accounts and slots of the run);
* the node checks the signature (the sender is recovered from it by
  eth-account), the chain id, the nonce, the fee caps and the balance, charges
  ``gas used x effective price`` (EIP-1559: the base fee is burnt, the tip goes
  to the coinbase) and bumps the nonce, a reverted transaction included;
* Prague's calldata floor (EIP-7623), which revm 8 predates, is applied to the
  gas used: ``max(execution, 21,000 + 10 x tokens)``;
* one block per transaction (automatic mining, like eth-tester and anvil), the
  base fee following EIP-1559 from 1 gwei.

Only what ``Chain`` and web3's contract objects use is served.
"""

from __future__ import annotations

import itertools
import re
import time
from typing import Any, Optional

from eth_utils import keccak, to_checksum_address

from ..errors import ConfigError

__all__ = ["RevmProvider", "REVM_CHAIN_ID", "available"]

#: eth-tester's chain id (a development chain: the public dev keys fund the run)
REVM_CHAIN_ID = 131277322940537
GENESIS_BASE_FEE = 10**9
DEV_BALANCE = 10**24  # 1,000,000 ether for each of the keys 1..10, like eth-tester
SPEC = "PRAGUE"
DEFAULT_GAS_LIMIT = 30_029_122  # eth-tester's genesis block gas limit
ZERO = "0x" + "00" * 20

_STORAGE_CHANGE = re.compile(r"StorageChange \{ address: (0x[0-9a-fA-F]{40}), key: (\d+),")
_REVERT = re.compile(r"Revert \{ gas_used: (\d+), output: 0x([0-9a-fA-F]*) \}")
_HALT = re.compile(r"Halt \{ reason: (\w+).*?gas_used: (\d+)", re.S)
_ERROR_SELECTOR = bytes.fromhex("08c379a0")


def available() -> bool:
    try:
        import pyrevm  # noqa: F401
    except ImportError:
        return False
    return True


def _hex(n: int) -> str:
    return hex(int(n))


def _calldata_floor(data: bytes) -> int:
    """EIP-7623: the least gas a transaction with this calldata pays (Prague)."""
    zeros = data.count(0)
    return 21_000 + 10 * (zeros + 4 * (len(data) - zeros))


class _Failed(Exception):
    def __init__(self, message: str, data: bytes = b"", gas_used: int = 0):
        super().__init__(message)
        self.data, self.gas_used = data, gas_used


def _reason(output: bytes) -> str:
    if output[:4] == _ERROR_SELECTOR:
        from eth_abi import decode

        try:
            return decode(["string"], output[4:])[0]
        except Exception:
            pass
    return ""


def RevmProvider(*, gas_limit: Optional[int] = None, chain_id: int = REVM_CHAIN_ID):
    """A web3 provider that is itself an automine development chain on pyrevm."""
    from web3.providers.base import BaseProvider

    class _Provider(_RevmNode, BaseProvider):
        def __init__(self):
            BaseProvider.__init__(self)
            _RevmNode.__init__(self, gas_limit=gas_limit, chain_id=chain_id)

    return _Provider()


class _RevmNode:
    """The chain behind :func:`RevmProvider`."""

    def __init__(self, *, gas_limit: Optional[int] = None, chain_id: int = REVM_CHAIN_ID):
        try:
            import pyrevm
        except ImportError as exc:  # pragma: no cover
            raise ConfigError("the pyrevm EVM needs pyrevm (pip install 'learningchain[ethereum]')") from exc
        self._pyrevm = pyrevm
        self.chain_id = chain_id
        self.block_gas_limit = int(gas_limit or DEFAULT_GAS_LIMIT)
        self.accounts: dict[str, list] = {}  # address -> [balance, nonce, code or None]
        self.storage: dict[str, dict[int, int]] = {}
        self.receipts: dict[bytes, dict] = {}
        self.logs: list[dict] = []
        self.blocks: list[dict] = []
        self._next_timestamp: Optional[int] = None
        self._ids = itertools.count()
        self._code_hashes: dict[bytes, bytes] = {}
        self._world = None  # the EVM shared by every transaction (see _evm)
        self._checksums: dict[str, str] = {}
        from eth_account import Account

        for k in range(1, 11):
            address = Account.from_key(k.to_bytes(32, "big")).address
            self.accounts[address] = [DEV_BALANCE, 0, None]
        self._new_block([], 0, base_fee=GENESIS_BASE_FEE)

    # -- the chain ---------------------------------------------------------------------
    def _new_block(self, txs: list, gas_used: int, base_fee: Optional[int] = None) -> dict:
        number = len(self.blocks)
        if base_fee is None:
            base_fee = self._next_base_fee()
        if self._next_timestamp is not None:
            stamp, self._next_timestamp = self._next_timestamp, None
        else:
            stamp = int(time.time())
        if self.blocks:
            stamp = max(stamp, self.blocks[-1]["timestamp"] + 1)
        parent = self.blocks[-1]["hash"] if self.blocks else b"\0" * 32
        block = {"number": number, "hash": keccak(parent + number.to_bytes(8, "big") + b"".join(txs)),
                 "parentHash": parent, "timestamp": stamp, "gasUsed": gas_used, "baseFeePerGas": base_fee,
                 "gasLimit": self.block_gas_limit, "transactions": list(txs)}
        self.blocks.append(block)
        return block

    def _next_base_fee(self) -> int:
        """EIP-1559: the base fee moves by up to 1/8 towards keeping blocks half full."""
        parent = self.blocks[-1]
        base, used, target = parent["baseFeePerGas"], parent["gasUsed"], parent["gasLimit"] // 2
        if used == target:
            return base
        if used > target:
            return base + max(base * (used - target) // target // 8, 1)
        return base - base * (target - used) // target // 8

    def mine_blocks(self, count: int = 1) -> None:
        for _ in range(int(count)):
            self._new_block([], 0)

    def time_travel(self, timestamp: int) -> None:
        """Mine one empty block at ``timestamp`` (development chains only)."""
        if timestamp <= self.blocks[-1]["timestamp"]:
            raise ValueError("time travel goes forward only")
        self._next_timestamp = int(timestamp)
        self.mine_blocks(1)

    # -- the EVM -----------------------------------------------------------------------
    def _code_hash(self, code: Optional[bytes]) -> Optional[bytes]:
        """keccak256 of ``code``, computed once per code (pyrevm would hash it again for every
        AccountInfo, that is for every contract at every transaction)."""
        if code is None:
            return None
        digest = self._code_hashes.get(code)
        if digest is None:
            digest = self._code_hashes[code] = keccak(code)
        return digest

    def _checksum(self, address: str) -> str:
        """``to_checksum_address``, remembered (a handful of addresses recur in every block)."""
        out = self._checksums.get(address)
        if out is None:
            out = self._checksums[address] = to_checksum_address(address)
        return out

    def _fresh_evm(self, block: dict):
        """A new EVM holding the whole world state as cold database entries."""
        pyrevm = self._pyrevm
        evm = pyrevm.EVM(spec_id=SPEC, gas_limit=self.block_gas_limit,
                         env=pyrevm.Env(cfg=pyrevm.CfgEnv(chain_id=self.chain_id)))
        self._set_block(evm, block)
        for address, (balance, nonce, code) in self.accounts.items():
            evm.insert_account_info(address, pyrevm.AccountInfo(balance=balance, nonce=nonce, code=code,
                                                                code_hash=self._code_hash(code)))
        for address, slots in self.storage.items():
            for key, value in slots.items():
                self._insert_slot(evm, address, key, value)
        return evm

    def _set_block(self, evm, block: dict) -> None:
        evm.set_block_env(self._pyrevm.BlockEnv(number=block["number"], timestamp=block["timestamp"],
                                                basefee=block["baseFeePerGas"], gas_limit=self.block_gas_limit))

    @staticmethod
    def _insert_slot(evm, address: str, key: int, value: int) -> None:
        # inserting into a cold account writes the database and loads the account
        # (warming it); undoing the load leaves the slot cold in the database
        mark = evm.snapshot()
        evm.insert_account_storage(address, key, value)
        evm.revert(mark)

    def _evm(self, block: dict):
        """The EVM whose database holds the world state, every account and slot cold.

        One EVM serves every transaction and call: each runs inside a checkpoint that is
        reverted once its effects are read (:meth:`_send_raw`, :meth:`_run_call`), which
        undoes its writes and the accounts and slots it warmed (a reverted frame's warming
        is undone, EIP-2929), and what it changed is then written to the database
        (:meth:`_sync`). So the next transaction starts cold on the current state, as in a
        fresh EVM loaded with the whole state, without loading it (a cost that grew with
        every account and slot of the run). Where that cannot be kept (an unexpected
        error), the EVM is made afresh."""
        if self._world is None:
            self._world = self._fresh_evm(block)
        else:
            self._set_block(self._world, block)
        return self._world

    def _sync(self, evm, addresses, slots) -> None:
        """Write ``addresses`` (accounts) and ``slots`` ((address, key)) of the Python state to the
        shared EVM's database, cold."""
        pyrevm = self._pyrevm
        loaded = None
        for address in addresses:
            account = self.accounts.get(address)
            if account is None:
                continue
            balance, nonce, code = account
            evm.insert_account_info(address, pyrevm.AccountInfo(balance=balance, nonce=nonce, code=code,
                                                                code_hash=self._code_hash(code)))
        for address, key in slots:
            if loaded is None:
                loaded = evm.journal_state
            if address in loaded:  # pragma: no cover - only the coinbase stays loaded; it has no storage
                self._world = None  # a write to a loaded account would be journaled: start afresh
                return
            self._insert_slot(evm, address, key, self.storage.get(address, {}).get(key, 0))

    def _undo(self, evm, mark) -> None:
        """Revert the shared EVM to ``mark`` (before a transaction or call); if that fails, the
        EVM is dropped and the next one is made afresh from the Python state."""
        try:
            evm.revert(mark)
            if evm.journal_depth != 0:
                raise RuntimeError(f"journal depth {evm.journal_depth} after a revert")
        except Exception:
            self._world = None

    def _execute(self, evm, sender: str, to: Optional[str], data: bytes, value: int, gas: int):
        """Run a call or a creation; (output or new address, gas used, refund, logs)."""
        try:
            if to is None:
                out = evm.deploy(sender, data, value=value, gas=gas, gas_price=0)
            else:
                out = evm.message_call(sender, to, calldata=data, value=value, gas=gas, gas_price=0)
        except RuntimeError as exc:
            text = str(exc)
            m = _REVERT.search(text)
            if m:
                output = bytes.fromhex(m.group(2))
                raise _Failed("execution reverted: " + (_reason(output) or "reverted without a reason"),
                              output, int(m.group(1))) from None
            m = _HALT.search(text)
            if m:
                raise _Failed(f"execution halted: {m.group(1)}", b"", int(m.group(2))) from None
            raise _Failed(f"invalid transaction: {text}") from None
        result = evm.result
        return out, int(result.gas_used), int(result.gas_refunded), list(result.logs)

    def _commit(self, evm) -> tuple[set, set]:
        """Copy back the accounts and slots the transaction touched: the accounts its journal
        holds (loaded ones, with their values after the transaction), the slots it wrote;
        returns them (addresses, (address, key) pairs)."""
        journal = evm.journal_str
        touched = set()
        for address, info in evm.journal_state.items():
            address = self._checksum(address)
            old = self.accounts.get(address)
            code = old[2] if old is not None else None
            if code is None:
                code = evm.get_code(address) or None
            if old is None and not info.balance and not info.nonce and code is None:
                continue
            self.accounts[address] = [int(info.balance), int(info.nonce), code]
            touched.add(address)
        slots = set()
        for address, key in set(_STORAGE_CHANGE.findall(journal)):
            address, key = self._checksum(address), int(key)
            value = int(evm.storage(address, key))
            slots.add((address, key))
            mine = self.storage.setdefault(address, {})
            if value:
                mine[key] = value
            else:
                mine.pop(key, None)
        return touched, slots

    # -- transactions --------------------------------------------------------------------
    def _send_raw(self, raw: bytes) -> bytes:
        from eth_account import Account
        from eth_account.typed_transactions import TypedTransaction

        tx_hash = keccak(raw)
        if raw[:1] not in (b"\x01", b"\x02"):
            raise _Failed("only EIP-2930/1559 typed transactions are accepted")
        from hexbytes import HexBytes

        typed = TypedTransaction.from_bytes(HexBytes(raw))
        # the signature is checked here: the sender is recovered from it (what
        # Account.recover_transaction does, on the transaction parsed once)
        sender = self._checksum(Account._recover_hash(typed.hash(), vrs=typed.vrs()))
        fields = typed.as_dict()
        if int(fields.get("chainId", -1)) != self.chain_id:
            raise _Failed(f"invalid chain id {fields.get('chainId')}")
        max_fee = int(fields.get("maxFeePerGas", fields.get("gasPrice", 0)))
        tip = min(int(fields.get("maxPriorityFeePerGas", max_fee)), max_fee)
        gas, value = int(fields["gas"]), int(fields.get("value", 0))
        data = bytes(fields.get("data") or b"")
        to = fields.get("to") or None
        to = self._checksum(to) if to else None
        account = self.accounts.setdefault(sender, [0, 0, None])
        if int(fields["nonce"]) < account[1]:
            raise _Failed("nonce too low")
        if int(fields["nonce"]) > account[1]:
            raise _Failed("nonce too high (this chain has no queue)")
        base = self._next_base_fee()
        if max_fee < base:
            raise _Failed(f"max fee per gas {max_fee} below the base fee {base}")
        if gas > self.block_gas_limit:
            raise _Failed("gas limit exceeds the block gas limit")
        if account[0] < gas * max_fee + value:
            raise _Failed("insufficient funds for gas * price + value")
        if gas < _calldata_floor(data):
            raise _Failed("intrinsic gas too low (EIP-7623 calldata floor)")
        block = {"number": len(self.blocks), "timestamp": max(int(time.time()), self.blocks[-1]["timestamp"] + 1),
                 "baseFeePerGas": base}
        if self._next_timestamp is not None:
            block["timestamp"] = max(self._next_timestamp, block["timestamp"])
        evm = self._evm(block)
        status, address, logs = 1, None, []
        touched, slots = set(), set()
        mark = evm.snapshot()
        try:
            out, used, _refund, logs = self._execute(evm, sender, to, data, value, gas)
            if to is None:
                address = self._checksum(out)
            touched, slots = self._commit(evm)
        except _Failed as failed:
            if not failed.gas_used:
                raise
            status, used = 0, failed.gas_used
        except BaseException:
            self._world = None  # whatever was copied back, the next EVM is made from the Python state
            raise
        finally:
            self._undo(evm, mark)
        used = max(used, _calldata_floor(data))
        price = min(max_fee, base + tip)
        account = self.accounts.setdefault(sender, [0, 0, None])
        account[0] -= used * price
        account[1] = int(fields["nonce"]) + 1
        if price > base:
            self.accounts.setdefault(ZERO, [0, 0, None])[0] += used * (price - base)
        if self._world is evm:
            self._sync(evm, touched | {sender, ZERO}, slots)
        mined = self._new_block([tx_hash], used, base_fee=base)
        assert mined["number"] == block["number"]
        entries = []
        for i, log in enumerate(logs):
            topics, payload = log.data
            entry = {"address": self._checksum(log.address), "topics": [bytes(t) for t in topics],
                     "data": bytes(payload), "blockNumber": mined["number"], "blockHash": mined["hash"],
                     "transactionHash": tx_hash, "transactionIndex": 0, "logIndex": i}
            entries.append(entry)
        self.logs.extend(entries)
        self.receipts[tx_hash] = {
            "transactionHash": tx_hash, "transactionIndex": 0, "blockHash": mined["hash"],
            "blockNumber": mined["number"], "from": sender, "to": to, "gasUsed": used,
            "cumulativeGasUsed": used, "effectiveGasPrice": price, "status": status,
            "contractAddress": address, "logs": entries, "type": raw[0]}
        return tx_hash

    def _run_call(self, call: dict, tag=None) -> tuple[bytes, int]:
        """A call on the latest state, nothing kept: (output, gas spent before refunds); in the
        block that is being made for "pending" (its number and time), else in the latest."""
        sender = self._checksum(call.get("from") or ZERO)
        to = call.get("to")
        data = bytes.fromhex((call.get("data") or call.get("input") or "0x")[2:])
        value = int(call.get("value", "0x0"), 16)
        gas = int(call.get("gas", _hex(self.block_gas_limit)), 16)
        block = dict(self.blocks[-1])
        if tag == "pending":
            block.update(number=block["number"] + 1, timestamp=max(int(time.time()), block["timestamp"] + 1),
                         baseFeePerGas=self._next_base_fee())
        balance = self.accounts.get(sender, [0])[0]
        if value > balance and (self._world is None or sender in self._world.journal_state):
            # set_balance changes a loaded account outside the journal: not on the shared EVM
            evm, mark = self._fresh_evm(block), None
        else:
            evm = self._evm(block)
            mark = evm.snapshot()
        try:
            if value > balance:
                evm.set_balance(sender, value)
            out, used, refund, _ = self._execute(evm, sender, self._checksum(to) if to else None, data,
                                                 value, gas)
        finally:
            if mark is not None:
                self._undo(evm, mark)
        return (out if isinstance(out, bytes) else b""), max(used + refund, _calldata_floor(data))

    # -- JSON-RPC -----------------------------------------------------------------------
    def is_connected(self, show_traceback: bool = False) -> bool:
        return True

    def make_request(self, method: str, params: Any) -> dict:
        rid = next(self._ids)
        try:
            result = self._dispatch(method, list(params or []))
        except _Failed as failed:
            error = {"code": 3 if failed.data or "reverted" in str(failed) else -32000, "message": str(failed)}
            if failed.data:
                error["data"] = "0x" + failed.data.hex()
            return {"jsonrpc": "2.0", "id": rid, "error": error}
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    def _block_at(self, tag) -> dict:
        if tag in (None, "latest", "pending", "safe", "finalized"):
            return self.blocks[-1]
        if tag == "earliest":
            return self.blocks[0]
        number = int(tag, 16) if isinstance(tag, str) else int(tag)
        if not 0 <= number < len(self.blocks):
            raise _Failed(f"no block {number}")
        return self.blocks[number]

    def _dispatch(self, method: str, params: list):
        if method == "eth_chainId":
            return _hex(self.chain_id)
        if method == "net_version":
            return str(self.chain_id)
        if method == "eth_blockNumber":
            return _hex(len(self.blocks) - 1)
        if method in ("eth_getBlockByNumber", "eth_getBlockByHash"):
            if method == "eth_getBlockByHash":
                found = [b for b in self.blocks if "0x" + b["hash"].hex() == params[0]]
                return _block_json(found[0]) if found else None
            return _block_json(self._block_at(params[0]))
        if method == "eth_getBalance":
            return _hex(self.accounts.get(self._checksum(params[0]), [0])[0])
        if method == "eth_getTransactionCount":
            return _hex(self.accounts.get(self._checksum(params[0]), [0, 0])[1])
        if method == "eth_getCode":
            code = self.accounts.get(self._checksum(params[0]), [0, 0, None])[2]
            return "0x" + (code or b"").hex()
        if method == "eth_gasPrice":
            return _hex(self._next_base_fee() + 10**9)
        if method == "eth_maxPriorityFeePerGas":
            return _hex(10**9)
        if method == "eth_accounts":
            return []
        if method == "eth_call":
            return "0x" + self._run_call(params[0], params[1] if len(params) > 1 else None)[0].hex()
        if method == "eth_estimateGas":
            return _hex(self._run_call(params[0], params[1] if len(params) > 1 else None)[1])
        if method == "eth_sendRawTransaction":
            return "0x" + self._send_raw(bytes.fromhex(params[0][2:])).hex()
        if method == "eth_getTransactionReceipt":
            receipt = self.receipts.get(bytes.fromhex(params[0][2:]))
            return None if receipt is None else _receipt_json(receipt)
        if method == "eth_getLogs":
            return [_log_json(e) for e in self._filter_logs(params[0])]
        raise _Failed(f"method {method} is not served by the in-process pyrevm chain")

    def _filter_logs(self, flt: dict) -> list:
        lo = self._block_at(flt.get("fromBlock", "latest"))["number"]
        hi = self._block_at(flt.get("toBlock", "latest"))["number"]
        addresses = flt.get("address")
        if isinstance(addresses, str):
            addresses = [addresses]
        wanted = None if addresses is None else {self._checksum(a) for a in addresses}
        topics = flt.get("topics") or []
        out = []
        for e in self.logs:
            if not lo <= e["blockNumber"] <= hi or (wanted is not None and e["address"] not in wanted):
                continue
            ok = True
            for i, t in enumerate(topics):
                if t is None:
                    continue
                options = {t} if isinstance(t, str) else set(t)
                if i >= len(e["topics"]) or "0x" + e["topics"][i].hex() not in {o.lower() for o in options}:
                    ok = False
                    break
            if ok:
                out.append(e)
        return out


def _h(b: bytes) -> str:
    return "0x" + bytes(b).hex()


def _block_json(b: dict) -> dict:
    return {"number": _hex(b["number"]), "hash": _h(b["hash"]), "parentHash": _h(b["parentHash"]),
            "timestamp": _hex(b["timestamp"]), "gasUsed": _hex(b["gasUsed"]), "gasLimit": _hex(b["gasLimit"]),
            "baseFeePerGas": _hex(b["baseFeePerGas"]), "transactions": [_h(t) for t in b["transactions"]],
            "miner": ZERO, "difficulty": "0x0", "extraData": "0x", "nonce": "0x0000000000000000",
            "uncles": []}


def _log_json(e: dict) -> dict:
    return {"address": e["address"], "topics": [_h(t) for t in e["topics"]], "data": _h(e["data"]),
            "blockNumber": _hex(e["blockNumber"]), "blockHash": _h(e["blockHash"]),
            "transactionHash": _h(e["transactionHash"]), "transactionIndex": _hex(e["transactionIndex"]),
            "logIndex": _hex(e["logIndex"]), "removed": False}


def _receipt_json(r: dict) -> dict:
    return {"transactionHash": _h(r["transactionHash"]), "transactionIndex": "0x0", "blockHash": _h(r["blockHash"]),
            "blockNumber": _hex(r["blockNumber"]), "from": r["from"], "to": r["to"], "gasUsed": _hex(r["gasUsed"]),
            "cumulativeGasUsed": _hex(r["cumulativeGasUsed"]), "effectiveGasPrice": _hex(r["effectiveGasPrice"]),
            "status": _hex(r["status"]), "contractAddress": r["contractAddress"],
            "logs": [_log_json(e) for e in r["logs"]], "type": _hex(r["type"]), "logsBloom": "0x" + "00" * 256}
