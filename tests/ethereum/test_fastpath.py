"""The in-process pyrevm chain's short request path gives what web3's full one gives.

``Chain`` signs plain EIP-1559 transactions itself, encodes calls with a cached ABI entry,
and on the pyrevm chain sends its requests to the provider directly and decodes receipts,
reads and events itself: each must be byte for byte what eth-account and web3 make.
"""

from __future__ import annotations

import numpy as np
import pytest

from learningchain.ethereum import fixedpoint as fp
from learningchain.ethereum.chain import Account, Chain, Reverted, _sign_1559

from .helpers import deploy, fresh_account, random_unit_rows, submit_all

pytest.importorskip("pyrevm")

TO = "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"


def _key(n: int = 7) -> Account:
    return Account.from_secret(bytes([n]) * 32)


@pytest.mark.parametrize("tx", [
    dict(to=TO, value=5, chainId=131277322940537, gas=21_000, maxFeePerGas=2 * 10**9, maxPriorityFeePerGas=10**9,
         nonce=0),
    dict(data="0x6080aa00", value=0, chainId=1, gas=10**6, maxFeePerGas=0, maxPriorityFeePerGas=0, nonce=7),
    dict(to=TO, data="0x" + "00" * 1000 + "ff", value=10**24, chainId=31337, gas=30_000_000,
         maxFeePerGas=10**11, maxPriorityFeePerGas=10**9, nonce=2**40),
    dict(to=TO, data=b"\x01\x02", value=0, chainId=1337, gas=50_000, maxFeePerGas=1, maxPriorityFeePerGas=1,
         nonce=3),
])
def test_the_own_signer_makes_eth_accounts_bytes(tx):
    acct = _key()
    for t in (tx, dict(tx, **{"from": acct.address})):
        assert _sign_1559(acct.key, t) == bytes(acct.key.sign_transaction(t).raw_transaction)


def test_the_own_signer_leaves_other_transactions_to_eth_account():
    acct = _key()
    base = dict(to=TO, value=5, chainId=1, gas=21_000, maxFeePerGas=2, maxPriorityFeePerGas=1, nonce=0)
    assert _sign_1559(acct.key, base) is not None
    assert _sign_1559(acct.key, dict(base, to=TO.lower())) is None  # eth-account refuses it
    assert _sign_1559(acct.key, dict(base, accessList=[])) is None
    assert _sign_1559(acct.key, dict(base, nonce=np.int64(0))) is None
    assert _sign_1559(acct.key, dict(base, value=-1)) is None
    assert _sign_1559(acct.key, dict(base, **{"from": _key(8).address})) is None  # eth-account refuses it
    for refused in (dict(base, **{"from": _key(8).address}), dict(base, to=TO.lower())):
        with pytest.raises(TypeError):
            Chain._sign(acct, refused)
    # what falls back is signed by eth-account, the same bytes as before
    from hexbytes import HexBytes

    tx = dict(base, data=HexBytes("0x0102"))
    assert _sign_1559(acct.key, tx) is None
    assert Chain._sign(acct, tx) == bytes(acct.key.sign_transaction(tx).raw_transaction)


@pytest.fixture(scope="module")
def played():
    """A pyrevm chain with a deployed contract and one aggregated round."""
    chain = Chain.embedded(evm="pyrevm")
    chain.fixed_gas = 12_000_000
    chain.keep_receipts = True
    owner = chain.faucet()
    dep = deploy(chain, owner, d=5, l=2, messages=8)
    rng = np.random.default_rng(0)
    q = random_unit_rows(rng, 4, 5)
    msgs = submit_all(dep, owner, 0, q, [10**6] * 4)
    node = fresh_account(chain, owner, 10**18)
    accepted, _, receipts = dep.aggregate(node, msgs, tuple(dep.rule.select(q, [fp.tie_key(0, m[0]) for m in msgs])))
    assert accepted
    return chain, dep, receipts


def test_direct_receipts_are_web3s(played):
    chain, dep, receipts = played
    assert chain._direct
    kept = list(chain.receipts)  # the deployment, loading, fundings, submissions, aggregation
    assert kept[0]["contractAddress"] == dep.address and any(r["logs"] for r in kept)
    for r in kept + receipts:
        theirs = chain.w3.eth.get_transaction_receipt(r["transactionHash"])
        mine = chain._receipt(r["transactionHash"])
        assert mine == theirs == r
        assert list(mine.items()) == list(theirs.items())  # the same order too
        assert [list(e.items()) for e in mine["logs"]] == [list(e.items()) for e in theirs["logs"]]
    from web3.logs import DISCARD

    assert len(dep.contract.events.Aggregated().process_receipt(receipts[-1], errors=DISCARD)) == 1


def test_direct_reads_and_encodings_are_web3s(played):
    chain, dep, _ = played
    c = dep.contract
    for name in ("current_round", "round_opened", "get_model", "agg_next", "agg_owner", "dim", "owner"):
        assert chain.read(c, name) == getattr(c.functions, name)().call()
    assert chain.read(c, "aggregator_of", 0) == c.functions.aggregator_of(0).call()
    for name, args in [("submit", [3, 2**40, b"\x00\x01" * 33]), ("aggregate", [0, 5, b"\x07" * 64]),
                       ("aggregate", [0, 5, b"", b"\x01" * 32]), ("commit", [b"\x02" * 32]),
                       ("load_model", [0, [1, -2, 2**80]]), ("claim_reward", [0]), ("open_run", [])]:
        assert chain.encode_call(c, name, args) == c.encode_abi(name, args=args)
    # another ABI at the same address is looked up on its own
    other = chain.w3.eth.contract(address=c.address, abi=[{
        "type": "function", "name": "commit", "stateMutability": "nonpayable", "outputs": [],
        "inputs": [{"name": "x", "type": "uint256"}]}])
    assert chain.encode_call(other, "commit", [7]) == other.encode_abi("commit", args=[7])
    assert chain.encode_call(other, "commit", [7]) != chain.encode_call(c, "commit", [(7).to_bytes(32, "big")])
    # what eth_abi would pad or take where web3 refuses goes through web3, which refuses
    with pytest.raises(Exception):
        chain.encode_call(c, "commit", [b"\x02" * 31])
    with pytest.raises(Exception):
        c.encode_abi("commit", args=[b"\x02" * 31])


def test_direct_events_are_web3s(played):
    chain, dep, _ = played
    c = dep.contract
    for name, filters in [("Submitted", {"round": 0}), ("Submitted", None), ("Aggregated", {"round": 0}),
                          ("RoundOpened", {"round": 0}), ("Submitted", {"round": 1})]:
        mine = chain.events(c, name, from_block=dep.deploy_block, argument_filters=filters)
        theirs = getattr(c.events, name).get_logs(from_block=dep.deploy_block, argument_filters=filters)
        assert mine == theirs
    assert len(chain.events(c, "Submitted", from_block=0, argument_filters={"round": 0})) == 4


def test_a_direct_read_that_reverts_says_why(played):
    chain, dep, _ = played
    with pytest.raises(Reverted):
        chain.read(dep.contract, "model_at", 10**6)


def test_a_pyrevm_transaction_is_three_requests_to_the_node(played, monkeypatch):
    """sendRawTransaction, the receipt, and the latest block for the fees: web3's
    middleware adds none (its validation asked eth_chainId at every request)."""
    chain, dep, _ = played
    owner = chain.faucet()
    chain._next_nonce(owner)
    asked = []
    node = chain.w3.provider
    real = node.make_request
    monkeypatch.setattr(node, "make_request", lambda method, params: asked.append(method) or real(method, params))
    chain.transfer(owner, TO, 1)
    assert sorted(asked) == ["eth_getBlockByNumber", "eth_getTransactionReceipt", "eth_sendRawTransaction"]


def test_the_node_still_checks_what_a_node_checks(played):
    chain, _, _ = played
    owner = chain.faucet()
    nonce = chain._next_nonce(owner)
    fees = chain.fee_fields()
    tx = dict(to=TO, value=1, chainId=chain.chain_id, gas=21_000, nonce=nonce, **fees)
    for bad, why in [(dict(tx, chainId=1), "chain id"), (dict(tx, nonce=nonce + 1), "nonce too high"),
                     (dict(tx, gas=20_000), "intrinsic gas"), (dict(tx, maxFeePerGas=1, maxPriorityFeePerGas=1),
                                                              "base fee")]:
        with pytest.raises(Exception, match=why):
            chain._send_raw(Chain._sign(owner, bad))
    poor = _key(9)
    with pytest.raises(Exception, match="insufficient funds"):
        chain._send_raw(Chain._sign(poor, dict(tx, nonce=0)))
    raw = bytearray(Chain._sign(owner, tx))
    raw[-1] ^= 1  # another s: another (or no) sender, never this one's transaction
    try:
        chain._send_raw(bytes(raw))
    except Exception:
        pass
    assert chain.w3.eth.get_transaction_count(owner.address) == nonce


def test_every_transaction_starts_cold_on_the_shared_evm(played):
    """The same reading transaction twice pays the same gas: what the first warmed (the
    contract, its slots) is cold again for the second, as in a new block on a real node."""
    chain, dep, _ = played
    owner = chain.faucet()
    node = chain.w3.provider
    first = chain.call_tx(owner, dep.contract, "current_round", gas=100_000)
    assert node._world is not None  # the shared EVM ran it
    second = chain.call_tx(owner, dep.contract, "current_round", gas=100_000)
    assert first["status"] == second["status"] == 1
    assert first["gasUsed"] == second["gasUsed"]
    # 21,000 + calldata + a cold account's code is not charged again; a cold SLOAD is 2,100
    assert first["gasUsed"] > 21_000 + 2_100


def test_the_shared_evm_holds_the_python_state(played):
    chain, dep, _ = played
    node = chain.w3.provider
    chain.call_tx(chain.faucet(), dep.contract, "current_round", gas=100_000)
    evm = node._world
    assert evm is not None and evm.journal_depth == 0
    mark = evm.snapshot()  # reading loads (warms) accounts and slots: undone below
    for address, (balance, nonce, code) in node.accounts.items():
        info = evm.basic(address)
        assert (info.balance, info.nonce) == (balance, nonce)
    for address, slots in node.storage.items():
        for key, value in slots.items():
            assert evm.storage(address, key) == value
    evm.revert(mark)
    assert set(evm.journal_state) <= {"0x" + "00" * 20}  # only the coinbase stays loaded


def test_a_call_with_more_value_than_the_sender_has_leaves_no_trace(played):
    """eth_call from the zero address (the coinbase, which stays loaded in the shared EVM)
    with value: its balance is lent for the call only."""
    chain, dep, _ = played
    node = chain.w3.provider
    owner = chain.faucet()
    chain.call_tx(owner, dep.contract, "current_round", gas=100_000)  # the shared EVM exists
    before = chain.balance("0x" + "00" * 20)
    node.make_request("eth_call", [{"to": TO, "value": hex(10**30)}, "latest"])
    assert chain.balance("0x" + "00" * 20) == before
    assert node._world is None or node._world.basic("0x" + "00" * 20).balance == before
    r = chain.transfer(owner, TO, 1)
    assert r["status"] == 1
