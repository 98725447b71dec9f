# pragma version 0.4.3
# pragma evm-version prague
# @license MIT
"""
@title LearningChain: the l-nearest aggregation as a contract
@notice Data holders submit fixed-point unit gradients for the open round from
        pseudo-identity accounts; a computing node aggregates the round with the
        l-nearest rule (paper Eq. 14-17); every Ethereum node re-executes the
        aggregation, so the chain's consensus verifies it. Holders fund the run
        with deposits, the account that aggregates a round claims a
        reward from them, and what is left returns to the holders at the end.

        The arithmetic is defined in learningchain/ethereum/fixedpoint.py (the
        Python twin) and documented in docs/ETHEREUM.md:
        q int32 at scale 2**quant_bits packed 8 lanes (offset 2**31) per word,
        norm at scale 2**32, lr and lambda at scale 2**32, model at scale 2**40.

        Messages are kept as calldata and logs; storage holds, per message and
        per chunk of its packed words, keccak256(header ++ words), where the
        header is two words: sender | norm << 160, and the squared norm
        ||q||^2 the contract computed at submission. An aggregation supplies the
        round's messages again, one chunk of words at a time (one transaction
        when the model is small, several when it is not), each message's chunk
        behind its header, and the contract checks them against those hashes.
        The caller names the selection it expects at the first chunk, so the
        update of each chunk can be computed as the chunk goes by; at the last
        chunk the contract checks, from the exact integer scores, that this
        selection is the l nearest, and accepts the update only then.

        The reward goes to the account that sends the first chunk of a valid
        aggregation, only if that account committed to it in an earlier block
        (commit, then reveal the salt with the first chunk): a copy of the
        transaction sent from another account, however high its fee, reverts.
        In a multi-chunk aggregation that account must also send every other
        chunk: anyone may continue an attempt (a round is never stuck), but an
        attempt that others finished pays its reward to nobody (the holders get
        it back by the sweep), so a starter that leaves the work to others is
        not paid, and neither is an account that only sent the last chunk.
"""

# -- compile-time bounds ------------------------------------------------------------
MAX_MESSAGES: constant(uint256) = 256  # the selection is a 256-bit mask
MAX_DIM: constant(uint256) = 8192
LANES: constant(uint256) = 8
MAX_WORDS: constant(uint256) = 1024  # MAX_DIM // LANES
MAX_MESSAGE_BYTES: constant(uint256) = 32768  # MAX_WORDS * 32
MAX_CALL_BYTES: constant(uint256) = 65536  # one aggregation call: 64 KiB of message words
MAX_LOAD: constant(uint256) = 1024  # model values per load_model call

# -- fixed-point scales (fixedpoint.py) ----------------------------------------------
MODEL_BITS: public(constant(uint256)) = 40
NORM_BITS: public(constant(uint256)) = 32
RATE_BITS: public(constant(uint256)) = 32
MODEL_ONE: constant(int256) = 2**40  # 2**MODEL_BITS
RATE_HALF: constant(int256) = 2**31  # 2**RATE_BITS / 2
LANE_BIAS: constant(int256) = 2**31
LANE_MASK: constant(uint256) = 2**32 - 1
LANE64_MASK: constant(uint256) = 2**64 - 1
# lanes 0, 2, 4, 6 of a packed word, each widened to 64 bits / lanes 0 and 4 widened to 128
LANES_64: constant(uint256) = (2**32 - 1) * (1 + 2**64 + 2**128 + 2**192)
LANES_128: constant(uint256) = (2**32 - 1) + (2**32 - 1) * 2**128
MODEL_BIAS: constant(int256) = 2**127
HALF_MASK: constant(uint256) = 2**128 - 1
MAX_RATE: constant(uint256) = 2**48  # lr, lambda < 2**16 at scale 2**32

#: An unfinished multi-chunk aggregation becomes stale (anyone may start over, and its
#: bond goes to the refund pool) once chunks + STALE_BLOCKS blocks have passed since its
#: first chunk. Until then anyone may continue it, under its claim.
STALE_BLOCKS: public(constant(uint256)) = 64
#: The most words of each message one aggregation transaction takes: with MAX_CALL_BYTES
#: this keeps every aggregation transaction under 2**24 gas (EIP-7825), whatever the
#: parameters (the largest measured, a first round writing fresh storage, is 13.1M).
MAX_CHUNK_WORDS: public(constant(uint256)) = 96
#: After finish(), rewards may be claimed for this many seconds (a week); then anyone
#: may sweep what is unclaimed into the refund pool.
CLAIM_SECONDS: public(constant(uint256)) = 604800
#: gas forwarded with the return of a bond (a wallet that refuses it forfeits it)
BOND_GAS: constant(uint256) = 50000

# run status
LOADING: constant(uint256) = 0
OPEN: constant(uint256) = 1
FINISHED: constant(uint256) = 2

# -- events ---------------------------------------------------------------------------
event RoundOpened:
    round: indexed(uint256)

event Submitted:
    round: indexed(uint256)
    sender: indexed(address)
    index: uint256
    norm: uint256
    q: Bytes[MAX_MESSAGE_BYTES]

event ChunkAggregated:
    round: indexed(uint256)
    aggregator: indexed(address)
    chunk: uint256

event Aggregated:
    round: indexed(uint256)
    aggregator: indexed(address)
    messages: uint256
    selection: uint256

event AggregationRejected:
    round: indexed(uint256)
    aggregator: indexed(address)
    claimed: uint256

event Deposited:
    holder: indexed(address)
    amount: uint256

event RewardPaid:
    round: indexed(uint256)
    aggregator: indexed(address)
    amount: uint256

event Finished:
    round: uint256
    refund: uint256

event Swept:
    amount: uint256

event Withdrawn:
    holder: indexed(address)
    amount: uint256

# -- parameters (fixed at deployment, like the native genesis; immutables live in the code) --
owner: public(immutable(address))
dim: public(immutable(uint256))
words: public(immutable(uint256))
chunk_words: public(immutable(uint256))
chunks: public(immutable(uint256))
quant_bits: public(immutable(uint256))
unit_lo: public(immutable(uint256))
unit_hi: public(immutable(uint256))
l: public(immutable(uint256))
batch_size: public(immutable(uint256))
lr: public(immutable(uint256))
lam: public(immutable(uint256))
min_messages: public(immutable(uint256))
max_messages: public(immutable(uint256))
# a round may be aggregated as soon as it holds ``quorum`` messages, or once ``window``
# blocks have passed since it opened and it holds ``min_messages``: nobody can close a
# round early on a handful of messages of its own choosing
quorum: public(immutable(uint256))
window: public(immutable(uint256))
rounds: public(immutable(uint256))
reward: public(immutable(uint256))
# wei the first chunk of a multi-chunk aggregation carries; returned when the attempt
# is accepted, added to the refund pool when it is rejected or goes stale
bond: public(immutable(uint256))

# -- state ------------------------------------------------------------------------------
status: public(uint256)
current_round: public(uint256)
round_opened: public(uint256)  # the block in which the current round opened
loaded: public(uint256)
model_buf: HashMap[uint256, HashMap[uint256, uint256]]  # buffer -> slot -> two offset int128
active: uint256  # which buffer holds the current model (multi-chunk runs switch buffers)
# messages in the open round, as round << 128 | count: the slot never returns to
# zero, so the round's first message does not pay for a fresh slot
round_count: uint256
last_round_of: HashMap[address, uint256]  # round + 1 of a sender's last message
chunk_hash: HashMap[uint256, HashMap[uint256, bytes32]]  # message -> chunk -> keccak(header ++ words)

# an aggregation in progress (agg_next > 0 only between the chunks of a multi-chunk one)
agg_owner: public(address)  # who sent its first chunk and its bond
agg_solo: public(bool)  # every chunk so far came from agg_owner (only then is it paid)
agg_claim: public(uint256)
agg_next: public(uint256)
agg_n: public(uint256)  # the messages it aggregates: the round's first agg_n, fixed at its first chunk
agg_start: uint256  # the block of the attempt's first chunk
partial: HashMap[uint256, uint256]  # message -> a_k + 2**127 over the chunks so far

# incentives
aggregations: HashMap[uint256, uint256]  # round -> aggregator | paid << 160
deposits: public(HashMap[address, uint256])
# the aggregators' commitments: keccak256(abi_encode(round, claim, sender, salt)), and the
# block each was made in (the first chunk must come in a later one)
commitment: public(HashMap[address, bytes32])
commit_block: public(HashMap[address, uint256])
refunded_to: public(HashMap[address, uint256])  # what each depositor has withdrawn so far
withdrawn_in: HashMap[address, uint256]  # pool_epoch + 1 of a depositor's last withdrawal
pool_epoch: public(uint256)  # sweeps so far: each lets every depositor withdraw again
depositors: public(uint256)
withdrawals: public(uint256)
total_deposits: public(uint256)
total_paid: public(uint256)
refund_pool: public(uint256)
refunded: public(uint256)
forfeited: public(uint256)  # bonds of rejected and stale attempts, for the refund pool
finished_at: public(uint256)  # the timestamp of finish()
swept: public(uint256)


@deploy
def __init__(dim_: uint256, quant_bits_: uint256, norm_tol_bits_: uint256, l_: uint256, batch_size_: uint256,
             lr_: uint256, lam_: uint256, min_messages_: uint256, max_messages_: uint256, chunk_words_: uint256,
             rounds_: uint256, reward_: uint256, quorum_: uint256, window_: uint256, bond_: uint256):
    assert dim_ >= 1 and dim_ <= MAX_DIM, "dim out of range"
    assert quant_bits_ >= 8 and quant_bits_ <= 26, "quant_bits out of range"
    assert norm_tol_bits_ >= 4 and norm_tol_bits_ <= quant_bits_, "norm_tol_bits out of range"
    assert l_ >= 1, "l must be at least 1"
    assert batch_size_ >= 1 and batch_size_ < 2**32, "batch_size out of range"
    assert lr_ > 0 and lr_ < MAX_RATE, "lr out of range"
    assert lam_ < MAX_RATE, "lam out of range"
    assert max_messages_ >= 1 and max_messages_ <= MAX_MESSAGES, "max_messages out of range"
    assert min_messages_ >= 1 and min_messages_ <= max_messages_, "min_messages out of range"
    assert quorum_ >= min_messages_ and quorum_ <= max_messages_, "quorum out of range"
    assert window_ < 2**32, "window out of range"
    assert rounds_ >= 1, "rounds must be at least 1"
    w: uint256 = (dim_ + LANES - 1) // LANES
    assert chunk_words_ >= 1 and chunk_words_ <= w, "chunk_words out of range"
    assert chunk_words_ <= MAX_CHUNK_WORDS, "an aggregation transaction could exceed 2**24 gas (EIP-7825)"
    assert max_messages_ * (chunk_words_ + 2) * 32 <= MAX_CALL_BYTES, "a chunk of every message exceeds one call"
    owner = msg.sender
    dim = dim_
    words = w
    chunk_words = chunk_words_
    chunks = (w + chunk_words_ - 1) // chunk_words_
    quant_bits = quant_bits_
    exp: uint256 = 2 * quant_bits_ - 2 * norm_tol_bits_
    unit_lo = (2**norm_tol_bits_ - 1) ** 2 << exp
    unit_hi = (2**norm_tol_bits_ + 1) ** 2 << exp
    l = l_
    batch_size = batch_size_
    lr = lr_
    lam = lam_
    min_messages = min_messages_
    max_messages = max_messages_
    quorum = quorum_
    window = window_
    rounds = rounds_
    reward = reward_
    bond = bond_


# -- model storage: two int128 per slot, offset by 2**127 ---------------------------------

@internal
@view
def _model_at(buf: uint256, i: uint256) -> int256:
    word: uint256 = self.model_buf[buf][i >> 1]
    return convert((word >> (128 * (i & 1))) & HALF_MASK, int256) - MODEL_BIAS


@external
@view
def get_model() -> DynArray[int256, MAX_DIM]:
    """@notice The current model, W_i = w_i * 2**MODEL_BITS."""
    out: DynArray[int256, MAX_DIM] = []
    buf: uint256 = self.active
    for i: uint256 in range(dim, bound=MAX_DIM):
        out.append(self._model_at(buf, i))
    return out


@external
@view
def count() -> uint256:
    """@notice Messages submitted to the open round so far."""
    word: uint256 = self.round_count
    if word >> 128 != self.current_round:
        return 0
    return word & HALF_MASK


@external
@view
def aggregator_of(round: uint256) -> address:
    """@notice The account paid for aggregating ``round``: zero while it is not aggregated, and
    for a multi-chunk aggregation whose chunks did not all come from its committed starter."""
    return convert(self.aggregations[round] & (2**160 - 1), address)


@external
@view
def reward_paid(round: uint256) -> bool:
    return self.aggregations[round] >> 160 != 0


@external
@view
def model_at(i: uint256) -> int256:
    assert i < dim, "index out of range"
    return self._model_at(self.active, i)


@external
def load_model(offset: uint256, values: DynArray[int256, MAX_LOAD]):
    """@notice The owner writes the initial model w_0 in order, before the run opens."""
    assert msg.sender == owner, "only the owner loads the model"
    assert self.status == LOADING, "the run is already open"
    assert offset == self.loaded, "load the model in order"
    n: uint256 = len(values)
    assert offset + n <= dim, "more values than the model has"
    for j: uint256 in range(n, bound=MAX_LOAD):
        i: uint256 = offset + j
        old: uint256 = self.model_buf[0][i >> 1]
        v: int256 = values[j]
        assert v >= -MODEL_BIAS and v < MODEL_BIAS, "model overflow"
        lane: uint256 = convert(v + MODEL_BIAS, uint256)
        if i & 1 == 0:
            self.model_buf[0][i >> 1] = (old & (HALF_MASK << 128)) | lane
        else:
            self.model_buf[0][i >> 1] = (old & HALF_MASK) | (lane << 128)
    self.loaded = offset + n


@external
def open_run():
    """@notice Open round 0 once the whole initial model is loaded."""
    assert msg.sender == owner, "only the owner opens the run"
    assert self.status == LOADING, "the run is already open"
    assert self.loaded == dim, "the initial model is not fully loaded"
    self.status = OPEN
    self.round_opened = block.number
    log RoundOpened(round=0)


# -- holders' messages --------------------------------------------------------------------

@internal
@view
def _attempt_running() -> bool:
    """A multi-chunk aggregation is under way and not yet stale."""
    return self.agg_next != 0 and block.number <= self.agg_start + chunks + STALE_BLOCKS


@external
def submit(round: uint256, norm: uint256, q: Bytes[MAX_MESSAGE_BYTES]):
    """
    @notice Submit this round's message from a pseudo-identity account.
    @param round The round the gradient was computed for (the current round).
    @param norm The gradient's norm s_k at scale 2**NORM_BITS (0 < norm < 2**64).
    @param q The fixed-point unit vector, packed 8 int32 lanes (offset 2**31) per word.
    """
    assert self.status == OPEN, "the run is not open"
    assert round == self.current_round, "wrong round"
    assert round < rounds, "the run is over"
    # an aggregation in progress does not stop submissions: it covers the messages it
    # covers (a later message of the round is not aggregated)
    assert len(q) == words * 32, "wrong length"
    assert norm > 0, "zero norm"
    assert norm < 2**64, "norm too large"
    assert self.last_round_of[msg.sender] != round + 1, "duplicate sender"
    word: uint256 = self.round_count
    k: uint256 = 0
    if word >> 128 == round:
        k = word & HALF_MASK
    assert k < max_messages, "the round is full"
    n2: uint256 = 0
    for wi: uint256 in range(words, bound=MAX_WORDS):
        x: uint256 = extract32(q, wi * 32, output_type=uint256)
        for j: uint256 in range(LANES):
            lane: uint256 = (x >> (32 * j)) & LANE_MASK
            if wi * LANES + j < dim:
                v: int256 = unsafe_sub(convert(lane, int256), LANE_BIAS)
                # |v| <= 2**31, so v*v <= 2**62 and n2 < 2**75: no overflow
                n2 = unsafe_add(n2, convert(unsafe_mul(v, v), uint256))
            else:
                assert lane == convert(LANE_BIAS, uint256), "padding lanes must encode zero"
    assert n2 >= unit_lo and n2 <= unit_hi, "not a unit vector"
    header: bytes32 = convert(convert(msg.sender, uint256) | (norm << 160), bytes32)
    for c: uint256 in range(chunks, bound=MAX_WORDS):
        start: uint256 = c * chunk_words
        size: uint256 = min(chunk_words, words - start)
        self.chunk_hash[k][c] = keccak256(concat(header, convert(n2, bytes32), slice(q, start * 32, size * 32)))
    self.last_round_of[msg.sender] = round + 1
    self.round_count = (round << 128) | (k + 1)
    log Submitted(round=round, sender=msg.sender, index=k, norm=norm, q=q)


# -- aggregation --------------------------------------------------------------------------

@internal
def _start(rnd: uint256, n: uint256, claim: uint256, paid: uint256):
    """The checks of an aggregation's first chunk; a multi-chunk one records its attempt."""
    assert rnd < rounds, "the run is over"
    # anyone may continue a running attempt (under its claim), nobody may replace it
    assert not self._attempt_running(), "aggregation in progress: continue it"
    count: uint256 = 0
    word: uint256 = self.round_count
    if word >> 128 == rnd:
        count = word & HALF_MASK
    assert n <= count, "more messages than the round holds"
    assert n >= min_messages, "too few messages"
    assert n >= quorum or block.number >= self.round_opened + window, "the round is still taking messages"
    assert self.total_deposits >= reward * (rnd + 1), "deposits do not cover the reward"
    if chunks == 1:
        assert paid == 0, "a one-transaction aggregation takes no bond"
        return
    assert paid == bond, "the first chunk must carry the bond"
    if self.agg_next != 0:
        self.forfeited += bond  # the stale attempt's
    self.agg_owner = msg.sender
    self.agg_solo = True
    self.agg_claim = claim
    self.agg_n = n
    self.agg_start = block.number


@external
@payable
def aggregate(chunk: uint256, claim: uint256, data: Bytes[MAX_CALL_BYTES], salt: bytes32 = empty(bytes32)) -> bool:
    """
    @notice Aggregate the open round, one chunk of message words per call.
    @param chunk The chunk index, 0 .. chunks-1, in order.
    @param claim The selection the caller expects (bit k = message k); every chunk repeats it.
    @param data For the round's first n messages (n >= quorum, or >= min_messages once the
                window has passed; the first chunk fixes n), in submission order: its two
                header words (sender | norm << 160, ||q||^2) then its words chunk*chunk_words ...
                The first chunk of a multi-chunk aggregation carries the bond; anyone may
                send the next chunks of a running attempt.
    @param salt The first chunk reveals the salt of its sender's commitment (commit()), made in
                an earlier block to this round and claim; the other chunks ignore it.
    @return True when the round was aggregated (the last chunk), False otherwise.
    """
    assert self.status == OPEN, "the run is not open"
    rnd: uint256 = self.current_round
    assert chunk < chunks, "no such chunk"
    w0: uint256 = chunk * chunk_words
    wc: uint256 = min(chunk_words, words - w0)
    stride: uint256 = 64 + wc * 32
    assert len(data) % stride == 0, "wrong data length"
    n: uint256 = len(data) // stride
    if chunk == 0:
        self._start(rnd, n, claim, msg.value)
    else:
        assert msg.value == 0, "only the first chunk carries the bond"
        assert self.agg_next == chunk, "chunk out of order"
        assert claim == self.agg_claim, "claim differs from the first chunk's"
        assert n == self.agg_n, "wrong data length"
        if msg.sender != self.agg_owner and self.agg_solo:
            self.agg_solo = False  # someone else's work: the attempt pays no reward
    assert n == MAX_MESSAGES or claim >> n == 0, "claim names a message that does not exist"
    if chunk == 0:
        # front-running: a copy of this transaction from another account has no commitment
        assert self.commitment[msg.sender] == keccak256(abi_encode(rnd, claim, msg.sender, salt)), \
            "no commitment to this claim from this account"
        assert self.commit_block[msg.sender] < block.number, "the commitment must be in an earlier block"
        self.commitment[msg.sender] = empty(bytes32)
    keep: uint256 = min(l, n)

    norms: DynArray[uint256, MAX_MESSAGES] = []
    a: DynArray[int256, MAX_MESSAGES] = []
    n2: DynArray[int256, MAX_MESSAGES] = []
    norm_sum: uint256 = 0
    for k: uint256 in range(n, bound=MAX_MESSAGES):
        assert keccak256(slice(data, k * stride, stride)) == self.chunk_hash[k][chunk], \
            "data does not match the submitted messages"
        # the hash covers the headers, which the contract itself wrote at submission
        n2.append(convert(extract32(data, k * stride + 32, output_type=uint256), int256))
        if claim & (1 << k) != 0:
            s: uint256 = (extract32(data, k * stride, output_type=uint256) >> 160) & (2**64 - 1)
            norms.append(s)
            norm_sum += s
        else:
            norms.append(0)
        if chunk == 0:
            a.append(0)
        else:
            a.append(convert(self.partial[k], int256) - MODEL_BIAS)

    d: uint256 = dim
    cur: uint256 = self.active
    # one chunk is one transaction: update in place; several: into the other buffer
    dst: uint256 = cur
    if chunks > 1:
        dst = 1 - cur
    den: int256 = convert((1 << (NORM_BITS + quant_bits)) * keep * batch_size, int256)
    half: int256 = unsafe_div(den, 2)
    rate: int256 = convert(lr, int256)
    decay: int256 = convert(lam, int256)
    v_bias: int256 = convert(n, int256) * LANE_BIAS
    a_bias: int256 = convert(norm_sum, int256) * LANE_BIAS
    for wi: uint256 in range(wc, bound=MAX_WORDS):
        # Pass 1 over this word of every message, lane-parallel on the offset lanes
        # e = q + 2^31 < 2^32: the sum vector v (Eq. 14) in two accumulators of four
        # 64-bit lanes (sums < 256 * 2^32 = 2^40), and the claimed selection's weighted
        # sums A = sum s e in four accumulators of two 128-bit lanes (sums < 256 * 2^64
        # * 2^32 = 2^104): no lane overflows into the next. The offsets are removed after.
        even: uint256 = 0
        odd: uint256 = 0
        w_0: uint256 = 0
        w_1: uint256 = 0
        w_2: uint256 = 0
        w_3: uint256 = 0
        for k: uint256 in range(n, bound=MAX_MESSAGES):
            x: uint256 = extract32(data, k * stride + 64 + wi * 32, output_type=uint256)
            even = unsafe_add(even, x & LANES_64)
            odd = unsafe_add(odd, (x >> 32) & LANES_64)
            s: uint256 = norms[k]
            if s != 0:
                w_0 = unsafe_add(w_0, unsafe_mul(s, x & LANES_128))
                w_1 = unsafe_add(w_1, unsafe_mul(s, (x >> 32) & LANES_128))
                w_2 = unsafe_add(w_2, unsafe_mul(s, (x >> 64) & LANES_128))
                w_3 = unsafe_add(w_3, unsafe_mul(s, (x >> 96) & LANES_128))
        v0: int256 = convert(even & LANE64_MASK, int256) - v_bias
        v1: int256 = convert(odd & LANE64_MASK, int256) - v_bias
        v2: int256 = convert((even >> 64) & LANE64_MASK, int256) - v_bias
        v3: int256 = convert((odd >> 64) & LANE64_MASK, int256) - v_bias
        v4: int256 = convert((even >> 128) & LANE64_MASK, int256) - v_bias
        v5: int256 = convert((odd >> 128) & LANE64_MASK, int256) - v_bias
        v6: int256 = convert(even >> 192, int256) - v_bias
        v7: int256 = convert(odd >> 192, int256) - v_bias
        # Pass 2: a_k += v . q_k over this word. |a_k| and its partial sums are at most
        # ||v|| ||q_k|| <= n (1 + 2^-tol)^2 2^(2 quant_bits) < 2^62 (Cauchy-Schwarz).
        for k: uint256 in range(n, bound=MAX_MESSAGES):
            y: uint256 = extract32(data, k * stride + 64 + wi * 32, output_type=uint256)
            r0: int256 = unsafe_sub(convert(y & LANE_MASK, int256), LANE_BIAS)
            r1: int256 = unsafe_sub(convert((y >> 32) & LANE_MASK, int256), LANE_BIAS)
            r2: int256 = unsafe_sub(convert((y >> 64) & LANE_MASK, int256), LANE_BIAS)
            r3: int256 = unsafe_sub(convert((y >> 96) & LANE_MASK, int256), LANE_BIAS)
            r4: int256 = unsafe_sub(convert((y >> 128) & LANE_MASK, int256), LANE_BIAS)
            r5: int256 = unsafe_sub(convert((y >> 160) & LANE_MASK, int256), LANE_BIAS)
            r6: int256 = unsafe_sub(convert((y >> 192) & LANE_MASK, int256), LANE_BIAS)
            r7: int256 = unsafe_sub(convert(y >> 224, int256), LANE_BIAS)
            dot: int256 = unsafe_mul(v0, r0)
            dot = unsafe_add(dot, unsafe_mul(v1, r1))
            dot = unsafe_add(dot, unsafe_mul(v2, r2))
            dot = unsafe_add(dot, unsafe_mul(v3, r3))
            dot = unsafe_add(dot, unsafe_mul(v4, r4))
            dot = unsafe_add(dot, unsafe_mul(v5, r5))
            dot = unsafe_add(dot, unsafe_mul(v6, r6))
            dot = unsafe_add(dot, unsafe_mul(v7, r7))
            a[k] = unsafe_add(a[k], dot)
        sums: int256[8] = [
            convert(w_0 & HALF_MASK, int256) - a_bias,
            convert(w_1 & HALF_MASK, int256) - a_bias,
            convert(w_2 & HALF_MASK, int256) - a_bias,
            convert(w_3 & HALF_MASK, int256) - a_bias,
            convert(w_0 >> 128, int256) - a_bias,
            convert(w_1 >> 128, int256) - a_bias,
            convert(w_2 >> 128, int256) - a_bias,
            convert(w_3 >> 128, int256) - a_bias,
        ]
        # The update of this word's coordinates (fixedpoint.fixed_update), two
        # coordinates a slot. Each division rounds to nearest, ties away from zero
        # (a shift where the divisor is 2**RATE_BITS).
        slot_word: uint256 = 0
        pending: uint256 = 0
        for j: uint256 in range(8):
            i: uint256 = (w0 + wi) * 8 + j
            if i >= d:
                break
            if j & 1 == 0:
                slot_word = self.model_buf[cur][i >> 1]
            wv: int256 = convert((slot_word >> (128 * (j & 1))) & HALF_MASK, int256) - MODEL_BIAS
            t: int256 = sums[j] * MODEL_ONE
            step: int256 = 0
            if t >= 0:
                step = unsafe_div(t + half, den)
            else:
                step = -unsafe_div(half - t, den)
            t = decay * wv
            if t >= 0:
                step += (t + RATE_HALF) >> RATE_BITS
            else:
                step -= (RATE_HALF - t) >> RATE_BITS
            t = rate * step
            if t >= 0:
                wv -= (t + RATE_HALF) >> RATE_BITS
            else:
                wv += (RATE_HALF - t) >> RATE_BITS
            assert wv >= -MODEL_BIAS and wv < MODEL_BIAS, "model overflow"
            lane: uint256 = convert(wv + MODEL_BIAS, uint256)
            if j & 1 == 0:
                pending = lane
                if i + 1 == d:
                    self.model_buf[dst][i >> 1] = pending
            else:
                self.model_buf[dst][i >> 1] = pending | (lane << 128)

    if chunk + 1 < chunks:
        for k: uint256 in range(n, bound=MAX_MESSAGES):
            self.partial[k] = convert(a[k] + MODEL_BIAS, uint256)
        self.agg_next = chunk + 1
        log ChunkAggregated(round=rnd, aggregator=msg.sender, chunk=chunk)
        return False

    # Eq. 15 exactly: rank by sign(a_k) a_k^2 / n_k (cross-multiplied: |a_k |a_k|| < 2^124,
    # n_k < 2^55, products < 2^179), ties to the lower key keccak256(abi.encode(round, sender)).
    # That order is strict and total, so the claim is the l nearest exactly when it names
    # min(l, n) messages and its lowest-ranked one outranks the highest-ranked of the rest:
    # one pass, O(n), instead of ranking every message.
    score: DynArray[int256, MAX_MESSAGES] = []
    keys: DynArray[uint256, MAX_MESSAGES] = []
    for k: uint256 in range(n, bound=MAX_MESSAGES):
        ak: int256 = a[k]
        score.append(unsafe_mul(ak, abs(ak)))
        sender: address = convert(extract32(data, k * stride, output_type=uint256) & (2**160 - 1), address)
        keys.append(convert(keccak256(abi_encode(rnd, sender)), uint256))
    chosen: uint256 = 0
    worst_in: uint256 = MAX_MESSAGES  # the lowest-ranked claimed message so far
    best_out: uint256 = MAX_MESSAGES  # the highest-ranked message left out so far
    for k: uint256 in range(n, bound=MAX_MESSAGES):
        if claim & (1 << k) != 0:
            chosen += 1
            if worst_in == MAX_MESSAGES:
                worst_in = k
            else:
                # does k rank below worst_in?
                lhs: int256 = unsafe_mul(score[worst_in], n2[k])
                rhs: int256 = unsafe_mul(score[k], n2[worst_in])
                if lhs > rhs or (lhs == rhs and keys[worst_in] < keys[k]):
                    worst_in = k
        elif best_out == MAX_MESSAGES:
            best_out = k
        else:
            # does k rank above best_out?
            lhs: int256 = unsafe_mul(score[k], n2[best_out])
            rhs: int256 = unsafe_mul(score[best_out], n2[k])
            if lhs > rhs or (lhs == rhs and keys[k] < keys[best_out]):
                best_out = k
    valid: bool = chosen == keep
    if valid and best_out != MAX_MESSAGES:
        lhs: int256 = unsafe_mul(score[worst_in], n2[best_out])
        rhs: int256 = unsafe_mul(score[best_out], n2[worst_in])
        valid = lhs > rhs or (lhs == rhs and keys[worst_in] < keys[best_out])

    if chunks > 1:
        self.agg_next = 0
    if not valid:
        if chunks == 1:
            raise "selection is not the l-nearest"
        self.forfeited += bond  # a wrong claim loses its bond to the holders
        # the attempt's transactions are already on chain: reopen the aggregation for anyone.
        # No ranking here: whoever sends the last chunk pays for it, and that need not be the
        # claimant (an O(n^2) ranking made the honest finisher's chunk need more than a
        # block's gas at n = 256); every computing node ranks the messages itself.
        log AggregationRejected(round=rnd, aggregator=msg.sender, claimed=claim)
        return False
    paid_to: address = msg.sender
    if chunks > 1:
        self.active = dst
        # the committed starter, if it sent every chunk; else nobody (swept to the holders)
        paid_to = empty(address)
        if self.agg_solo:
            paid_to = self.agg_owner
    self.aggregations[rnd] = convert(paid_to, uint256)
    self.current_round = rnd + 1
    self.round_opened = block.number
    log Aggregated(round=rnd, aggregator=msg.sender, messages=n, selection=claim)
    log RoundOpened(round=rnd + 1)
    if chunks > 1 and bond > 0:
        # the last step: the round is closed before the bond goes back; a wallet that
        # refuses it cannot block the round, it forfeits the bond
        if not raw_call(self.agg_owner, b"", value=bond, gas=BOND_GAS, revert_on_failure=False):
            self.forfeited += bond
    return True


# -- incentives ---------------------------------------------------------------------------

@external
@payable
def deposit():
    """@notice A holder funds the run; the deposit pays aggregators, the rest comes back."""
    assert self.status != FINISHED, "the run is finished"
    assert msg.value > 0, "nothing to deposit"
    if self.deposits[msg.sender] == 0:
        self.depositors += 1
    self.deposits[msg.sender] += msg.value
    self.total_deposits += msg.value
    log Deposited(holder=msg.sender, amount=msg.value)


@external
def commit(h: bytes32):
    """
    @notice Commit to the aggregation you will start: h = keccak256(abi_encode(round,
            claim, your address, salt)) with a secret salt, revealed by
            the first chunk in a later block. A new commitment replaces the sender's last.
    """
    assert h != empty(bytes32), "empty commitment"
    self.commitment[msg.sender] = h
    self.commit_block[msg.sender] = block.number


@external
@nonreentrant
def claim_reward(round: uint256):
    """@notice The aggregator of a round (``aggregator_of``) collects its reward."""
    assert round < self.current_round, "round not aggregated"
    record: uint256 = self.aggregations[round]
    assert record & (2**160 - 1) == convert(msg.sender, uint256), "not the aggregator of this round"
    assert record >> 160 == 0, "reward already paid"
    assert reward > 0, "the run pays no reward"
    assert self.status != FINISHED or block.timestamp <= self.finished_at + CLAIM_SECONDS, \
        "the claim deadline has passed"
    self.aggregations[round] = record | (1 << 160)
    self.total_paid += reward
    raw_call(msg.sender, b"", value=reward)  # full gas: smart-contract wallets can receive
    log RewardPaid(round=round, aggregator=msg.sender, amount=reward)


@external
def finish():
    """@notice End the run: the owner at any time, anyone once the rounds are done."""
    assert self.status == OPEN, "the run is not open"
    assert msg.sender == owner or self.current_round >= rounds, "the run is not over"
    self.status = FINISHED
    self.finished_at = block.timestamp
    if self.agg_next != 0:
        self.forfeited += bond  # an attempt left unfinished
        self.agg_next = 0
    # every aggregated round's reward stays reserved for its aggregator until the deadline
    self.refund_pool = self.total_deposits + self.forfeited - reward * self.current_round
    log Finished(round=self.current_round, refund=self.refund_pool)


@external
def sweep():
    """@notice CLAIM_SECONDS after finish(), anyone moves the unclaimed rewards into the
    refund pool; every depositor may then withdraw its share of them."""
    assert self.status == FINISHED, "the run is not finished"
    assert block.timestamp > self.finished_at + CLAIM_SECONDS, "rewards may still be claimed"
    unclaimed: uint256 = reward * self.current_round - self.total_paid - self.swept
    assert unclaimed > 0, "nothing to sweep"
    self.swept += unclaimed
    self.refund_pool += unclaimed
    self.pool_epoch += 1
    self.withdrawals = 0
    log Swept(amount=unclaimed)


@external
@view
def withdrawn(holder: address) -> bool:
    """@notice Whether ``holder`` has withdrawn its share of the refund pool as it stands."""
    return self.withdrawn_in[holder] == self.pool_epoch + 1


@external
@nonreentrant
def withdraw():
    """@notice After the run, a holder takes back its share of what the rewards left."""
    assert self.status == FINISHED, "the run is not finished"
    amount: uint256 = self.deposits[msg.sender]
    assert amount > 0, "nothing deposited"
    epoch: uint256 = self.pool_epoch + 1
    assert self.withdrawn_in[msg.sender] != epoch, "already withdrawn"
    self.withdrawn_in[msg.sender] = epoch
    # its pro-rata share of the pool, less what it took before a sweep grew the pool
    owed: uint256 = self.refund_pool * amount // self.total_deposits
    share: uint256 = 0
    if owed > self.refunded_to[msg.sender]:
        share = owed - self.refunded_to[msg.sender]
    self.withdrawals += 1
    if self.withdrawals == self.depositors:
        share = self.refund_pool - self.refunded  # the last one takes the rounding dust
    self.refunded += share
    self.refunded_to[msg.sender] += share
    if share > 0:
        raw_call(msg.sender, b"", value=share)
    log Withdrawn(holder=msg.sender, amount=share)
