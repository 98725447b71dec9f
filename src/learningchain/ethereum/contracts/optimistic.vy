# pragma version 0.4.3
# pragma evm-version prague
# @license MIT
"""
@title LearningChain, optimistic mode: aggregations posted with a bond, disputed by chunk
@notice Holders submit their fixed-point unit gradients in calldata; the contract keeps
        one commitment per message (a Merkle root over its chunks of CHUNK coordinates).
        A computing node posts a round's aggregation: the messages it covers, the
        selection and the Merkle leaves of the new model, with a bond. For
        ``challenge_blocks`` blocks anyone may dispute one chunk of coordinates: the
        contract recomputes that chunk of the update from the previous model's chunk
        and the selected messages' chunks (the fixed-point arithmetic of learningchain.vy
        and fixedpoint.py) and compares it with the posted leaf. A failed dispute's
        bond goes to the aggregator; an upheld one reverts the posting and reopens the
        round, and the challenger gets its bond back and half the aggregator's (the other
        half is burnt: no one can take it). A posting that stays undisputed through its
        window becomes final.

        What is not disputed on chain: the selection (the l-nearest ranking needs every
        coordinate of every message) and the messages' unit-norm check (a posting names
        the messages it excludes as invalid). Both are recomputed off chain by every
        honest node (ethereum/optimistic_net.py); see
        docs/ETHEREUM.md, "Optimistic mode".

        Message encoding: each value v is zigzag-mapped to z (v >= 0: 2v; v < 0: -2v - 1);
        chunk c (coordinates CHUNK*c ..., len_c of them) has widths (L_c, H_c), two bytes
        of ``widths`` (1 <= L_c, L_c + H_c <= 32), and is sent as two planes: the low L_c
        bits of every z, then its high H_c bits (z >> L_c), fields big-endian, each plane
        zero padded to whole 32-byte words (ceil(len_c * L_c / 256) and
        ceil(len_c * H_c / 256) words). Leaf of a message chunk: keccak256(its two width
        bytes ++ keccak256(its bytes)); leaf of a model chunk: keccak256(abi_encode(its values as
        DynArray[int256])). Trees: leaves padded with zero to 2**depth; parent =
        keccak256(left ++ right).
"""

MAX_MESSAGES: constant(uint256) = 256  # the selection is a 256-bit mask
CHUNK: constant(uint256) = 256  # coordinates per chunk
MAX_DIM: constant(uint256) = 16384
MAX_CHUNKS: constant(uint256) = 64  # MAX_DIM // CHUNK
MAX_DEPTH: constant(uint256) = 6  # log2(MAX_CHUNKS)
MAX_DATA: constant(uint256) = 65536  # one message: MAX_DIM values of 32 bits
MAX_WIDTHS: constant(uint256) = 128  # two width bytes a chunk
MAX_RECORDS: constant(uint256) = 122880  # a dispute's message records (120 KiB)

MODEL_BITS: public(constant(uint256)) = 40
NORM_BITS: public(constant(uint256)) = 32
RATE_BITS: public(constant(uint256)) = 32
MODEL_ONE: constant(int256) = 2**40
RATE_HALF: constant(int256) = 2**31
MAX_RATE: constant(uint256) = 2**48

event Submitted:
    round: indexed(uint256)
    sender: indexed(address)
    index: uint256
    norm: uint256
    root: bytes32
    widths: Bytes[MAX_WIDTHS]
    q: Bytes[MAX_DATA]

event Posted:
    round: indexed(uint256)
    aggregator: indexed(address)
    messages: uint256
    selection: uint256
    excluded: uint256
    root: bytes32
    leaves: DynArray[bytes32, MAX_CHUNKS]

event Disputed:
    round: indexed(uint256)
    challenger: indexed(address)
    chunk: uint256
    upheld: bool

event Finalized:
    round: indexed(uint256)
    aggregator: indexed(address)
    root: bytes32

owner: public(immutable(address))
dim: public(immutable(uint256))
chunks: public(immutable(uint256))
depth: public(immutable(uint256))
quant_bits: public(immutable(uint256))
l: public(immutable(uint256))
batch_size: public(immutable(uint256))
lr: public(immutable(uint256))
lam: public(immutable(uint256))
min_messages: public(immutable(uint256))
max_messages: public(immutable(uint256))
quorum: public(immutable(uint256))
window: public(immutable(uint256))
rounds: public(immutable(uint256))
challenge_blocks: public(immutable(uint256))
bond: public(immutable(uint256))

current_round: public(uint256)
round_opened: public(uint256)
model_root: public(bytes32)  # the final model's Merkle root
round_count: uint256  # round << 128 | messages of the open round
last_round_of: HashMap[address, uint256]  # round + 1 of a sender's last message
commitment: HashMap[uint256, bytes32]  # message index -> keccak(sender | norm << 160, root)

# the pending posting of the current round (posted_at == 0: none)
posted_at: public(uint256)
post_aggregator: public(address)
post_keep: public(uint256)  # the posting's selected messages: min(l, n - its excluded)
post_selection: public(uint256)
post_root: public(bytes32)

credit: public(HashMap[address, uint256])  # bonds owed, taken with withdraw()
disputes_upheld: public(uint256)
disputes_rejected: public(uint256)


@deploy
def __init__(dim_: uint256, quant_bits_: uint256, l_: uint256, batch_size_: uint256, lr_: uint256,
             lam_: uint256, min_messages_: uint256, max_messages_: uint256, quorum_: uint256, window_: uint256,
             rounds_: uint256, challenge_blocks_: uint256, bond_: uint256, model_root_: bytes32):
    assert dim_ >= 1 and dim_ <= MAX_DIM, "dim out of range"
    assert quant_bits_ >= 8 and quant_bits_ <= 26, "quant_bits out of range"
    assert l_ >= 1, "l must be at least 1"
    assert batch_size_ >= 1 and batch_size_ < 2**32, "batch_size out of range"
    assert lr_ > 0 and lr_ < MAX_RATE, "lr out of range"
    assert lam_ < MAX_RATE, "lam out of range"
    assert max_messages_ >= 1 and max_messages_ <= MAX_MESSAGES, "max_messages out of range"
    assert min_messages_ >= 1 and min_messages_ <= max_messages_, "min_messages out of range"
    assert quorum_ >= min_messages_ and quorum_ <= max_messages_, "quorum out of range"
    assert window_ < 2**32, "window out of range"
    assert rounds_ >= 1, "rounds must be at least 1"
    assert challenge_blocks_ >= 1 and challenge_blocks_ < 2**32, "challenge_blocks out of range"
    assert bond_ > 0, "the bond must be positive"
    owner = msg.sender
    dim = dim_
    c: uint256 = (dim_ + CHUNK - 1) // CHUNK
    chunks = c
    dp: uint256 = 0
    for i: uint256 in range(MAX_DEPTH):
        if (1 << dp) >= c:
            break
        dp += 1
    depth = dp
    quant_bits = quant_bits_
    l = l_
    batch_size = batch_size_
    lr = lr_
    lam = lam_
    min_messages = min_messages_
    max_messages = max_messages_
    quorum = quorum_
    window = window_
    rounds = rounds_
    challenge_blocks = challenge_blocks_
    bond = bond_
    self.model_root = model_root_
    self.round_opened = block.number


# -- Merkle trees and chunk geometry -----------------------------------------------------

@internal
@pure
def _chunk_len(c: uint256, d: uint256) -> uint256:
    return min(CHUNK, d - c * CHUNK)


@internal
@pure
def _words(n: uint256, b: uint256) -> uint256:
    """32-byte words of a plane of ``n`` fields of ``b`` bits."""
    return (n * b + 255) // 256


@internal
@view
def _root(leaves: DynArray[bytes32, MAX_CHUNKS]) -> bytes32:
    level: DynArray[bytes32, MAX_CHUNKS] = leaves
    for i: uint256 in range(MAX_CHUNKS):
        if len(level) >= (1 << depth):
            break
        level.append(empty(bytes32))
    width: uint256 = 1 << depth
    for lv: uint256 in range(MAX_DEPTH):
        if width == 1:
            break
        width = width >> 1
        for i: uint256 in range(MAX_CHUNKS // 2):
            if i >= width:
                break
            level[i] = keccak256(concat(level[2 * i], level[2 * i + 1]))
    return level[0]


@internal
@view
def _verify(leaf: bytes32, index: uint256, proof: DynArray[bytes32, MAX_DEPTH], root: bytes32) -> bool:
    """``proof``: the ``depth`` sibling hashes, leaf level first."""
    h: bytes32 = leaf
    for lv: uint256 in range(MAX_DEPTH):
        if lv >= depth:
            break
        sib: bytes32 = proof[lv]
        if (index >> lv) & 1 == 0:
            h = keccak256(concat(h, sib))
        else:
            h = keccak256(concat(sib, h))
    return h == root


# -- holders' messages --------------------------------------------------------------------

@external
def submit(round: uint256, norm: uint256, widths: Bytes[MAX_WIDTHS], q: Bytes[MAX_DATA]):
    """
    @notice Submit this round's message (the encoding is in the contract's notice).
    @param norm The gradient's norm at scale 2**NORM_BITS, 0 < norm < 2**64.
    @param widths Two bytes a chunk: the bits of its low plane (1 ..) and of its high plane,
                  at most 32 together.
    """
    assert round == self.current_round, "wrong round"
    assert round < rounds, "the run is over"
    assert norm > 0, "zero norm"
    assert norm < 2**64, "norm too large"
    assert len(widths) == 2 * chunks, "wrong widths length: two bytes a chunk"
    assert self.last_round_of[msg.sender] != round + 1, "duplicate sender"
    word: uint256 = self.round_count
    k: uint256 = 0
    if word >> 128 == round:
        k = word & (2**128 - 1)
    assert k < max_messages, "the round is full"
    d: uint256 = dim
    leaves: DynArray[bytes32, MAX_CHUNKS] = []
    off: uint256 = 0
    for c: uint256 in range(chunks, bound=MAX_CHUNKS):
        pair: Bytes[2] = slice(widths, 2 * c, 2)
        wv: uint256 = convert(pair, uint256)
        lo: uint256 = wv >> 8
        hi: uint256 = wv & 255
        assert lo >= 1 and lo + hi <= 32, "chunk widths out of range: 1 <= low, low + high <= 32"
        n: uint256 = self._chunk_len(c, d)
        size: uint256 = 32 * (self._words(n, lo) + self._words(n, hi))
        assert off + size <= len(q), "wrong length: the data is shorter than its widths"
        leaves.append(keccak256(concat(pair, keccak256(slice(q, off, size)))))
        off += size
    assert off == len(q), "wrong length: the data is longer than its widths"
    root: bytes32 = self._root(leaves)
    header: uint256 = convert(msg.sender, uint256) | (norm << 160)
    self.commitment[k] = keccak256(abi_encode(header, root))
    self.last_round_of[msg.sender] = round + 1
    self.round_count = (round << 128) | (k + 1)
    log Submitted(round=round, sender=msg.sender, index=k, norm=norm, root=root, widths=widths, q=q)


@external
@view
def count() -> uint256:
    word: uint256 = self.round_count
    if word >> 128 != self.current_round:
        return 0
    return word & (2**128 - 1)


# -- posting, disputes, finality -----------------------------------------------------------

@internal
@pure
def _popcount(x: uint256) -> uint256:
    n: uint256 = 0
    y: uint256 = x
    for i: uint256 in range(256):
        if y == 0:
            break
        y = y & (y - 1)
        n += 1
    return n


@external
@payable
def post(round: uint256, n: uint256, selection: uint256, excluded: uint256,
         leaves: DynArray[bytes32, MAX_CHUNKS]):
    """
    @notice Post the aggregation of the round's first ``n`` messages: ``selection`` (bit k =
            message k) and the leaves of the new model's chunks, with the bond.
    @param excluded The messages left out as invalid (bit k = message k): those that do not
           decode or fail the unit-norm check. The selection names min(l, n - excluded) of
           the others. Like the selection, it is checked off chain by every honest node.
    """
    assert round == self.current_round, "wrong round"
    assert round < rounds, "the run is over"
    assert self.posted_at == 0, "an aggregation is posted: dispute it or wait"
    assert msg.value == bond, "the posting must carry the bond"
    count: uint256 = 0
    word: uint256 = self.round_count
    if word >> 128 == round:
        count = word & (2**128 - 1)
    assert n <= count, "more messages than the round holds"
    assert n >= min_messages, "too few messages"
    assert n >= quorum or block.number >= self.round_opened + window, "the round is still taking messages"
    assert n == MAX_MESSAGES or (selection | excluded) >> n == 0, \
        "selection names a message that does not exist"
    assert selection & excluded == 0, "a message is both selected and excluded"
    left: uint256 = n - self._popcount(excluded)
    assert left > 0, "every message is excluded"
    keep: uint256 = min(l, left)
    assert self._popcount(selection) == keep, "selection must name min(l, n - excluded) messages"
    assert len(leaves) == chunks, "one leaf per chunk"
    root: bytes32 = self._root(leaves)
    self.posted_at = block.number
    self.post_aggregator = msg.sender
    self.post_keep = keep
    self.post_selection = selection
    self.post_root = root
    log Posted(round=round, aggregator=msg.sender, messages=n, selection=selection, excluded=excluded, root=root,
               leaves=leaves)


@internal
@view
def _update_chunk(c: uint256, old: DynArray[int256, CHUNK], records: Bytes[MAX_RECORDS], selection: uint256,
                  keep: uint256) -> bytes32:
    """The leaf of chunk ``c`` of the correct update (fixedpoint.fixed_update)."""
    d: uint256 = dim
    size: uint256 = self._chunk_len(c, d)
    sums: int256[CHUNK] = empty(int256[CHUNK])
    at: uint256 = 0
    for k: uint256 in range(MAX_MESSAGES):
        if selection >> k == 0:
            break
        if (selection >> k) & 1 == 0:
            continue
        header: uint256 = extract32(records, at, output_type=uint256)
        root: bytes32 = extract32(records, at + 32)
        assert keccak256(abi_encode(header, root)) == self.commitment[k], "record does not match the message"
        wv: uint256 = extract32(records, at + 64, output_type=uint256)
        assert wv < 2**16, "bad widths word"
        lo: uint256 = wv >> 8
        hi: uint256 = wv & 255
        s: int256 = convert((header >> 160) & (2**64 - 1), int256)
        lobytes: uint256 = 32 * self._words(size, lo)
        nbytes: uint256 = lobytes + 32 * self._words(size, hi)
        base: uint256 = at + 96
        proof: DynArray[bytes32, MAX_DEPTH] = []
        for lv: uint256 in range(MAX_DEPTH):
            if lv >= depth:
                break
            proof.append(extract32(records, base + nbytes + 32 * lv))
        leaf: bytes32 = keccak256(concat(slice(convert(wv, bytes32), 30, 2), keccak256(slice(records, base, nbytes))))
        # the leaf binds the widths, checked at submission (1 <= lo, lo + hi <= 32)
        assert self._verify(leaf, c, proof, root), "bad message proof"
        # unchecked arithmetic below: j * width <= 256 * 32, a shift stays in 0..255 (lo, hi
        # <= 32), z < 2**32, and |sums| < 256 * 2**64 * 2**31, far inside int256
        lomask: uint256 = (1 << lo) - 1
        himask: uint256 = (1 << hi) - 1
        lotop: uint256 = 256 - lo
        hitop: uint256 = 256 - hi
        hibase: uint256 = base + lobytes
        for j: uint256 in range(CHUNK):
            if j >= size:
                break
            bit: uint256 = unsafe_mul(j, lo)
            x: uint256 = extract32(records, unsafe_add(base, bit >> 3), output_type=uint256)
            z: uint256 = (x >> unsafe_sub(lotop, bit & 7)) & lomask
            if hi != 0:
                bit = unsafe_mul(j, hi)
                x = extract32(records, unsafe_add(hibase, bit >> 3), output_type=uint256)
                z |= ((x >> unsafe_sub(hitop, bit & 7)) & himask) << lo
            q: int256 = convert(z >> 1, int256)
            if z & 1 == 1:
                q = unsafe_sub(-1, q)  # -q - 1
            sums[j] = unsafe_add(sums[j], unsafe_mul(s, q))
        at = base + nbytes + 32 * depth
    assert at + 32 == len(records), "wrong records length"
    den: int256 = convert((1 << (NORM_BITS + quant_bits)) * keep * batch_size, int256)
    half: int256 = den // 2
    rate: int256 = convert(lr, int256)
    decay: int256 = convert(lam, int256)
    out: DynArray[int256, CHUNK] = []
    for j: uint256 in range(CHUNK):
        if j >= size:
            break
        wv: int256 = old[j]
        t: int256 = sums[j] * MODEL_ONE
        step: int256 = 0
        if t >= 0:
            step = (t + half) // den
        else:
            step = -((half - t) // den)
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
        out.append(wv)
    return keccak256(abi_encode(out))


@external
@payable
def dispute(round: uint256, chunk: uint256, old: DynArray[int256, CHUNK], old_proof: DynArray[bytes32, MAX_DEPTH],
            posted_leaf: bytes32, posted_proof: DynArray[bytes32, MAX_DEPTH], records: Bytes[MAX_RECORDS]) -> bool:
    """
    @notice Dispute chunk ``chunk`` of the posted aggregation, with the bond.
    @param old The final model's values of that chunk, ``old_proof`` its proof.
    @param posted_leaf The posted leaf of that chunk, ``posted_proof`` its proof in the posted root.
    @param records For each selected message, ascending: sender | norm << 160, its root, the
                   chunk's widths word (low << 8 | high), its bytes of the chunk, then its
                   proof (depth words); then one zero word.
    @return True when the dispute is upheld (the posting is reverted).
    """
    assert round == self.current_round and self.posted_at != 0, "nothing posted for this round"
    assert block.number <= self.posted_at + challenge_blocks, "the challenge window has closed"
    assert msg.value == bond, "a dispute must carry the bond"
    assert chunk < chunks, "no such chunk"
    assert len(old) == self._chunk_len(chunk, dim), "wrong model chunk length"
    assert len(old_proof) == depth and len(posted_proof) == depth, "wrong proof length"
    assert self._verify(keccak256(abi_encode(old)), chunk, old_proof, self.model_root), "bad model proof"
    assert self._verify(posted_leaf, chunk, posted_proof, self.post_root), "bad posted proof"
    right: bytes32 = self._update_chunk(chunk, old, records, self.post_selection, self.post_keep)
    aggregator: address = self.post_aggregator
    if right != posted_leaf:
        # the posting is wrong: it is reverted and the round reopens. The challenger gets its
        # bond back and half the aggregator's; the other half stays in the contract for good
        # (burnt), so that an aggregator that disputes its own wrong posting, or copies an
        # honest dispute ahead of it, still loses half its bond for every round it stalls.
        self.posted_at = 0
        self.credit[msg.sender] += bond + bond // 2
        self.disputes_upheld += 1
        log Disputed(round=round, challenger=msg.sender, chunk=chunk, upheld=True)
        return True
    self.credit[aggregator] += bond  # a wrong dispute pays its bond to the aggregator
    self.disputes_rejected += 1
    log Disputed(round=round, challenger=msg.sender, chunk=chunk, upheld=False)
    return False


@external
def finalize(round: uint256):
    """@notice Anyone makes a posting final once its challenge window has passed undisputed."""
    assert round == self.current_round and self.posted_at != 0, "nothing posted for this round"
    assert block.number > self.posted_at + challenge_blocks, "the challenge window is open"
    self.model_root = self.post_root
    self.credit[self.post_aggregator] += bond
    self.posted_at = 0
    self.current_round = round + 1
    self.round_opened = block.number
    log Finalized(round=round, aggregator=self.post_aggregator, root=self.post_root)


@external
@nonreentrant
def withdraw():
    """@notice Take the bonds owed to the caller."""
    amount: uint256 = self.credit[msg.sender]
    assert amount > 0, "nothing owed"
    self.credit[msg.sender] = 0
    raw_call(msg.sender, b"", value=amount)
