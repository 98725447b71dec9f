"""The gas of a dispute in the optimistic mode: the deployment's bound against the dearest
disputes run on the in-process EVM, and the refusal of a deployment whose worst-case
dispute would not fit the 2^24 gas a transaction may use from Osaka on (EIP-7825)."""


import numpy as np
import pytest

from learningchain.errors import ConfigError
from learningchain.ethereum import fixedpoint as fp
from learningchain.ethereum import optimistic as opt
from learningchain.ethereum.chain import Chain, EthereumError, Reverted
from learningchain.ethereum.fixedpoint import FixedRule
from learningchain.ethereum.optimistic import OptDeployment, OptParams

from ..helpers import small_params
from .helpers import fresh_account

BOND = 10**15
MNIST_D = 7850  # 31 chunks: depth 5


def _value(width):
    """The dearest value at ``width`` bits: zigzag 2^width - 1, every bit set (odd: negative)."""
    return -(1 << (width - 1))


def _dispute(keep, d, forced=(16, 16), *, data="dearest", w0=-0.25, upheld=True, c=0, chain=None, send=True):
    """Deploy with l = K = ``keep``, submit ``keep`` messages at widths ``forced``, post an
    aggregation of them all (wrong in chunk ``c`` unless ``upheld`` is False) and dispute
    chunk ``c``: (the gas the dispute needs before refunds, the part of it that is not the
    transaction's intrinsic gas, its receipt, whether upheld)."""
    chain = chain or Chain.embedded()
    owner = chain.faucet()
    rule = FixedRule(d, 20, 10, keep, 3, fp.encode_rate(0.5), fp.encode_rate(0.01))
    op = OptParams(rule, 1, keep, keep, 0, 50, 100, BOND)
    W0 = fp.encode_model(np.full(d, w0))
    dep = OptDeployment.deploy(chain, owner, op, W0)
    rng = np.random.default_rng(keep * 7 + d)
    width = sum(forced) if isinstance(forced, tuple) else forced
    if data == "dearest":
        q = np.full((keep, d), _value(width), dtype=np.int64)
    else:  # uniform values of ``width`` bits
        q = rng.integers(-(1 << (width - 1)), 1 << (width - 1), size=(keep, d))
    norms = [2**64 - 1 - k for k in range(keep)]
    for k in range(keep):
        widths, packed = opt.encode_message(q[k], forced)
        dep.submit(fresh_account(chain, owner), 0, norms[k], widths, packed)
    msgs = dep.round_messages(0)
    sel = list(range(keep))
    W_new = fp.fixed_update(W0, q, norms, sel, batch_size=3, lr=rule.lr, lam=rule.lam, quant_bits=20)
    if upheld:
        W_new[c * opt.CHUNK] += 1
    dep.post(fresh_account(chain, owner, 10**18), 0, keep, sel, W_new)
    posting = dep.posting()
    challenger = fresh_account(chain, owner, 10**18)
    depth = op.depth
    args = [0, c, opt.model_chunk(W0, c), opt.merkle_proof(opt.model_leaves(W0), c, depth), posting.leaves[c],
            opt.merkle_proof(list(posting.leaves), c, depth), opt.dispute_records(msgs, sel, c, d)]
    data = dep.contract.encode_abi("dispute", args=args)
    needed = chain.estimate({"from": challenger.address, "to": dep.address, "value": BOND, "data": data})
    raw = bytes.fromhex(data[2:])
    execution = needed - 21_000 - 4 * raw.count(0) - 16 * (len(raw) - raw.count(0))
    if not send:
        return needed, (dep, challenger, args)
    got, receipt = dep.dispute(challenger, 0, c, W0, posting, msgs)  # sent with the bound as its gas limit
    return needed, execution, receipt, got


def _bound(keep, d, c=0):
    return opt.dispute_gas_bound(keep, opt.depth_for(opt.chunks_for(d)), opt.chunk_len(c, d))


@pytest.mark.parametrize("keep, d", [(1, 256), (1, MNIST_D), (40, 100), (109, 100), (30, 600), (60, 2048),
                                     (82, MNIST_D), (83, MNIST_D), (88, MNIST_D)])
def test_the_bound_covers_the_dearest_dispute_and_stays_within_ten_percent(keep, d):
    needed, _, receipt, upheld = _dispute(keep, d)
    bound = _bound(keep, d)
    assert upheld and int(receipt["status"]) == 1  # the bound as the gas limit was enough
    assert needed <= bound <= 1.10 * needed, (needed, bound)
    assert bound == opt.max_dispute_gas(keep, d)  # chunk 0 is the dearest chunk
    if d == MNIST_D and keep >= 82:
        # the boundary at depth 5: the bound of 82 selected messages fits 2^24 gas, of 83 not
        # (their dearest dispute needs less: the bound's margin costs one message); 88, which
        # the records' bytes alone admitted, needs more than 2^24
        assert (bound <= opt.TX_GAS_CAP) == (keep == 82)
        assert (needed > opt.TX_GAS_CAP) == (keep == 88)


def test_the_bound_covers_the_dearest_dispute_at_depth_6():
    # d = 16,384 (the contract's MAX_DIM, 64 chunks), the most messages the bound admits
    keep = opt.max_disputable(16384)
    needed, _, receipt, upheld = _dispute(keep, 16384)
    bound = _bound(keep, 16384)
    assert upheld and needed <= bound <= opt.TX_GAS_CAP and bound <= 1.10 * needed


def test_two_planes_are_the_dearest_encoding_and_the_bound_covers_every_one():
    # the same chunk of 32-bit values in one plane and in two (every split costs the same
    # with a high plane: the decoder reads a second word a coordinate), and narrower widths
    keep, d = 4, MNIST_D
    bound = _bound(keep, d)
    gas, execution = {}, {}
    for forced in ((32, 0), (16, 16), (1, 31), (31, 1), (24, 8), (8, 8), (20, 0)):
        gas[forced], execution[forced], _, _ = _dispute(keep, d, forced)
        assert gas[forced] <= bound, forced
    two = [(16, 16), (1, 31), (31, 1), (24, 8)]
    assert max(gas, key=gas.get) in two
    # every split with a high plane costs the same execution (the calldata differs by its
    # zero bytes: random addresses and hashes), more than narrower widths
    assert len({execution[f] for f in two}) == 1
    assert execution[(8, 8)] < execution[(16, 16)] and execution[(20, 0)] < execution[(32, 0)]
    # two planes cost about 180 gas more a coordinate and message than one plane of 32 bits
    assert execution[(16, 16)] - execution[(32, 0)] > keep * opt.CHUNK * 150
    # the dearest values cost more than uniform ones, a negative model more than a positive
    # one, an upheld dispute more than a rejected one, chunk 0 more than another full chunk
    dearest = execution[(16, 16)]
    assert _dispute(keep, d, (16, 16), data="uniform")[1] < dearest
    assert _dispute(keep, d, (16, 16), w0=0.25)[1] < dearest
    _, rejected, receipt, upheld = _dispute(keep, d, (16, 16), upheld=False)
    assert not upheld and int(receipt["status"]) == 1 and rejected < dearest
    assert _dispute(keep, d, (16, 16), c=29)[1] < dearest


def test_a_short_chunk_in_two_planes_may_take_a_word_more_and_the_bound_covers_it():
    # 100 coordinates: 13 words in one 32-bit plane, 14 in two planes of 16
    assert opt.max_chunk_words(100) == 14 and opt.max_chunk_words(opt.CHUNK) == 32
    assert max(opt.plane_words(100, lo) + opt.plane_words(100, 32 - lo) for lo in range(1, 33)) == 14
    keep, d = 6, 600  # the last chunk has 88 coordinates
    c = 2
    needed, _, receipt, upheld = _dispute(keep, d, (16, 16), c=c)
    assert upheld and needed <= _bound(keep, d, c) <= 1.10 * needed
    assert _bound(keep, d, c) < _bound(keep, d)


def test_on_an_osaka_chain_the_dearest_dispute_of_an_accepted_deployment_goes_through_and_l_88_cannot(osaka):
    # l = 82 at MNIST's depth 5, the most the deployment check accepts: its dearest dispute
    # is sent with the bound as its gas limit (twice its estimate would be over the cap and
    # refused by the node) and upheld
    needed, _, receipt, upheld = _dispute(82, MNIST_D, chain=osaka)
    assert upheld and int(receipt["status"]) == 1
    assert needed <= opt.max_dispute_gas(82, MNIST_D) <= opt.TX_GAS_CAP < 2 * needed
    # l = 88, accepted before: its dearest dispute cannot be sent with more than 2^24 gas and
    # runs out of gas with 2^24, so a wrong posting would become final
    needed, (dep, challenger, args) = _dispute(88, MNIST_D, chain=osaka, send=False)
    assert needed > opt.TX_GAS_CAP
    with pytest.raises(EthereumError, match="gas_limit_cap") as err:
        osaka.call_tx(challenger, dep.contract, "dispute", *args, value=BOND, gas=opt.TX_GAS_CAP + 1)
    assert not isinstance(err.value, Reverted)  # refused by the node, not run
    with pytest.raises(Reverted, match="ran out of gas"):
        osaka.call_tx(challenger, dep.contract, "dispute", *args, value=BOND, gas=opt.TX_GAS_CAP)


def _mnist_like(l, holders=100):
    return small_params(model={"kind": "logistic", "inputs": 784, "classes": 10}, dim=MNIST_D, holders=holders,
                        aggregator_options={"l": l}, max_messages=256)


def _deploy_params(params, messages):
    return OptParams.from_params(params, messages=messages, rounds=1, quorum=messages, window=0,
                                 challenge_blocks=3, bond=BOND)


def test_a_deployment_whose_worst_dispute_exceeds_2_24_gas_is_refused():
    # MNIST's d (depth 5): 82 selected messages fit, 83 do not, and l = 88 (accepted before,
    # by the records' bytes alone: its dearest dispute measured 17.6M gas) is refused
    for l, k in ((83, 100), (88, 100), (95, 100), (100, 83)):
        with pytest.raises(ConfigError) as err:
            _deploy_params(_mnist_like(l), k)
        text = str(err.value)
        keep = min(l, k)
        assert f"l = {l} of {k} messages" in text and f"{keep} selected messages" in text
        assert f"{opt.max_dispute_gas(keep, MNIST_D):,} gas" in text and "16,777,216" in text
        assert "EIP-7825" in text and "could not be disputed" in text and "at most 82" in text
    assert opt.max_disputable(MNIST_D) == 82
    assert opt.max_dispute_gas(82, MNIST_D) <= opt.TX_GAS_CAP < opt.max_dispute_gas(83, MNIST_D)
    assert opt.max_dispute_bytes(88, 5) <= opt.MAX_RECORDS  # the bytes alone would admit it
    _deploy_params(_mnist_like(82), 100)
    _deploy_params(_mnist_like(100), 82)  # min(l, K) counts: K = 82 messages a round
    # the largest l that passes at each depth, with full chunks (d a multiple of 256)
    assert [opt.max_disputable(256 << dp) for dp in range(7)] == \
        [85, 84, 84, 83, 82, 82, 81]
    # small models are bounded by the records' bytes, not by gas
    assert opt.max_disputable(31) == opt.max_disputable(100) == 109
