"""The gas tool: two EVM implementations (py-evm in process, anvil's revm) must agree."""

from learningchain.ethereum.gas import measure


def test_gas_figures_are_the_same_on_the_embedded_evm_and_on_anvil(embedded, anvil):
    a = measure(embedded, 20, 4)
    b = measure(anvil, 20, 4)
    assert a == b
    assert a.chunks == 1 and a.aggregate == a.aggregate_max_tx
    # the first round writes fresh storage; later rounds reuse it
    assert a.submit < a.submit_first and a.aggregate < a.aggregate_first
    assert a.commit > 21_000 and a.round_total == 4 * a.submit + a.commit + a.aggregate + a.claim


def test_a_chunked_aggregation_is_measured_over_all_its_transactions(anvil):
    g = measure(anvil, 2100, 8)  # 263 words, at most 96 per transaction: three chunks
    assert g.chunks == 3 and g.aggregate > g.aggregate_max_tx
    # every transaction, the first round's included, stays under EIP-7825's 2^24 gas
    assert g.aggregate_max_tx_first < 2**24


def test_on_an_osaka_chain_every_transaction_of_a_chunked_round_is_sent_within_the_cap(osaka):
    # loading w_0 (1,024 values a transaction) and each aggregation chunk cost more than
    # half the 2^24 cap, so twice their estimate is above it: an Osaka node refuses such a limit
    g = measure(osaka, 2100, 8)
    assert g.chunks == 3 and g.aggregate_max_tx_first < 2**24
