"""Front-running the aggregator's reward: a bot that copies the aggregation transaction gets nothing."""

import numpy as np
import pytest
from eth_account.typed_transactions import TypedTransaction

from learningchain.ethereum import fixedpoint as fp
from learningchain.ethereum.chain import Reverted

from .helpers import deploy, fresh_account, random_unit_rows, submit_all

REWARD = 10**15


def _round(chain, faucet, *, chunk_words=None, d=30, k=5, seed=21):
    rng = np.random.default_rng(seed)
    rows = random_unit_rows(rng, k, d)
    dep = deploy(chain, faucet, d=d, l=2, messages=k, reward=REWARD, chunk_words=chunk_words,
                 bond=REWARD if chunk_words else 0)
    dep.deposit(faucet, 10 * REWARD)
    msgs = submit_all(dep, faucet, 0, rows, [2**32] * k)
    selection = dep.rule.select(rows, [fp.tie_key(0, m[0]) for m in msgs])
    return dep, msgs, fp.selection_mask(selection)


def _signed_reveal(chain, node, dep, msgs, mask, salt, chunk, value=0):
    """The node's revealing chunk (the first), signed as it would sit in the mempool."""
    data = fp.aggregation_data(msgs, chunk, dep.cparams.chunk_words)
    tx = {"to": dep.address, "data": dep.contract.encode_abi("aggregate", args=[chunk, mask, data, salt]),
          "value": value, "chainId": chain.chain_id, "gas": 12_000_000, "nonce": chain.w3.eth.get_transaction_count(
              node.address), **chain.fee_fields()}
    return node.key.sign_transaction(tx).raw_transaction


def _copy(chain, bot, raw):
    """What a mempool bot does: the same call, from its own account, at a higher fee."""
    seen = TypedTransaction.from_bytes(raw).as_dict()
    fees = {"maxFeePerGas": 2 * int(seen["maxFeePerGas"]),
            "maxPriorityFeePerGas": 2 * int(seen["maxPriorityFeePerGas"])}
    return chain.send(bot, {"to": seen["to"], "data": bytes(seen["data"]), "value": int(seen["value"])},
                      gas=12_000_000, fees=fees)


@pytest.mark.parametrize("chunk_words", [None, 2])
def test_a_copied_aggregation_from_another_account_gets_nothing(embedded, chunk_words):
    chain = embedded
    faucet = chain.faucet()
    dep, msgs, mask = _round(chain, faucet, chunk_words=chunk_words)
    node, bot = fresh_account(chain, faucet, 10**18), fresh_account(chain, faucet, 10**18)
    bond = dep.cparams.bond if dep.cparams.chunks > 1 else 0
    _, salt = dep.commit(node, mask)
    raw = _signed_reveal(chain, node, dep, msgs, mask, salt, 0, bond)
    # 1. the bot copies the pending reveal and outbids it: no commitment from its account
    with pytest.raises(Reverted, match="no commitment to this claim from this account"):
        _copy(chain, bot, raw)
    # 2. it copies the node's commitment too: the commitment names the node, not the bot
    chain.call_tx(bot, dep.contract, "commit", dep.commitment(node.address, 0, mask, salt))
    with pytest.raises(Reverted, match="no commitment to this claim from this account"):
        _copy(chain, bot, raw)
    # 3. it commits with the revealed salt in its own name: the commitment must precede the
    #    reveal by a block, and the node's reveal (already sent) lands first
    chain.call_tx(bot, dep.contract, "commit", dep.commitment(bot.address, 0, mask, salt))
    receipt = chain.w3.eth.wait_for_transaction_receipt(chain.w3.eth.send_raw_transaction(raw))
    node.nonce = None
    assert receipt["status"] == 1
    with pytest.raises(Reverted):
        _copy(chain, bot, raw)  # the round is aggregated, or its attempt is the node's
    for chunk in range(1, dep.cparams.chunks):  # a multi-chunk round: the node sends the rest
        chain.call_tx(node, dep.contract, "aggregate", chunk, mask,
                      fp.aggregation_data(msgs, chunk, dep.cparams.chunk_words))
    f = dep.contract.functions
    assert f.aggregator_of(0).call() == node.address and f.current_round().call() == 1
    with pytest.raises(Reverted, match="not the aggregator of this round"):
        dep.claim_reward(bot, 0)
    before = chain.balance(node.address)
    r = dep.claim_reward(node, 0)
    assert chain.balance(node.address) == before + REWARD - int(r["gasUsed"]) * int(r["effectiveGasPrice"])


def test_a_bot_that_commits_to_a_published_claim_and_sends_the_last_chunk_is_not_paid(embedded):
    """The multi-chunk gap: chunk 0 publishes the claim; a bot that computed nothing commits to
    it in its own name in the next block, lets the node send the middle chunk, and sends the
    last chunk itself. It used to be the round's aggregator and take the reward; now the
    reward goes to the committed starter only if the starter sent every chunk: here to
    nobody (the holders get it back by the sweep), and the bot's claim is refused."""
    chain = embedded
    faucet = chain.faucet()
    dep, msgs, mask = _round(chain, faucet, chunk_words=2)
    assert dep.cparams.chunks == 2
    node, bot = fresh_account(chain, faucet, 10**18), fresh_account(chain, faucet, 10**18)
    _, salt = dep.commit(node, mask)
    chain.call_tx(node, dep.contract, "aggregate", 0, mask, fp.aggregation_data(msgs, 0, 2), salt,
                  value=dep.cparams.bond)
    bot_salt = b"\7" * 32
    chain.call_tx(bot, dep.contract, "commit", dep.commitment(bot.address, 0, mask, bot_salt))
    chain.call_tx(bot, dep.contract, "aggregate", 1, mask, fp.aggregation_data(msgs, 1, 2), bot_salt)
    f = dep.contract.functions
    assert f.current_round().call() == 1  # the round is aggregated all the same
    assert f.aggregator_of(0).call() == "0x" + "00" * 20
    with pytest.raises(Reverted, match="not the aggregator of this round"):
        dep.claim_reward(bot, 0)
    with pytest.raises(Reverted, match="not the aggregator of this round"):
        dep.claim_reward(node, 0)


def test_a_starter_that_leaves_the_other_chunks_to_others_is_not_paid(embedded):
    chain = embedded
    faucet = chain.faucet()
    dep, msgs, mask = _round(chain, faucet, chunk_words=1, seed=22)
    assert dep.cparams.chunks == 4
    starter, helper = fresh_account(chain, faucet, 10**18), fresh_account(chain, faucet, 10**18)
    _, salt = dep.commit(starter, mask)
    chain.call_tx(starter, dep.contract, "aggregate", 0, mask, fp.aggregation_data(msgs, 0, 1), salt,
                  value=dep.cparams.bond)
    for chunk in (1, 2):
        chain.call_tx(helper, dep.contract, "aggregate", chunk, mask, fp.aggregation_data(msgs, chunk, 1))
    chain.call_tx(starter, dep.contract, "aggregate", 3, mask, fp.aggregation_data(msgs, 3, 1))  # only the last
    f = dep.contract.functions
    assert f.current_round().call() == 1 and f.aggregator_of(0).call() == "0x" + "00" * 20
    with pytest.raises(Reverted, match="not the aggregator of this round"):
        dep.claim_reward(starter, 0)


def test_without_a_commitment_in_an_earlier_block_the_first_chunk_is_refused(embedded):
    chain = embedded
    faucet = chain.faucet()
    dep, msgs, mask = _round(chain, faucet)
    node = fresh_account(chain, faucet, 10**18)
    data = fp.aggregation_data(msgs, 0, dep.cparams.chunk_words)
    with pytest.raises(Reverted, match="no commitment to this claim"):
        chain.call_tx(node, dep.contract, "aggregate", 0, mask, data)  # the three-argument form
    _, salt = dep.commit(node, mask)
    with pytest.raises(Reverted, match="no commitment to this claim"):  # a wrong salt
        chain.call_tx(node, dep.contract, "aggregate", 0, mask, data, b"\1" * 32)
    with pytest.raises(Reverted, match="no commitment to this claim"):  # another claim
        chain.call_tx(node, dep.contract, "aggregate", 0, mask ^ 1, data, salt)
    with pytest.raises(Reverted, match="empty commitment"):
        chain.call_tx(node, dep.contract, "commit", b"\0" * 32)
    chain.call_tx(node, dep.contract, "aggregate", 0, mask, data, salt)
    assert dep.contract.functions.aggregator_of(0).call() == node.address
    # a commitment is used once
    assert dep.contract.functions.commitment(node.address).call() == b"\0" * 32


def test_a_transaction_held_back_is_replaced_with_a_higher_fee(anvil):
    """anvil with automine off holds the transaction; the client re-sends it (same nonce,
    fees up by 1/8) and the replacement is what gets mined."""
    import threading
    import time

    chain = anvil
    faucet = chain.faucet()
    to = "0x" + "44" * 20
    chain.replace_after = 0.3
    w3 = chain.w3
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        fees = chain.fee_fields()
        out = {}
        t = threading.Thread(target=lambda: out.update(r=chain.send(faucet, {"to": to, "value": 3}, gas=21_000,
                                                                    fees=dict(fees))))
        t.start()
        time.sleep(1.5)  # several replacement periods pass unmined
        w3.provider.make_request("evm_mine", [])
        t.join(timeout=30)
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
        chain.replace_after = None
    r = out["r"]
    assert r["status"] == 1 and chain.balance(to) == 3
    mined = w3.eth.get_transaction(r["transactionHash"])
    assert int(mined["maxFeePerGas"]) > fees["maxFeePerGas"]
    assert int(mined["maxFeePerGas"]) <= chain.max_fee
    # the user's cap bounds the replacements
    chain.max_fee = int(mined["maxFeePerGas"])
    assert chain._replace(faucet, {"to": to, "value": 3, "gas": 21_000, "nonce": 0, "chainId": chain.chain_id,
                                   "maxFeePerGas": chain.max_fee, "maxPriorityFeePerGas": 10**9}) is None
