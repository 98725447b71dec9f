"""The sans-I/O node: acceptance, fork choice, orphans, and an untouched store on bad input."""

import numpy as np
import pytest

from learningchain.errors import DecodeError, InvalidBlock, StoreError
from learningchain.node import MemoryStore, Node, SQLiteStore
from learningchain.protocol import Block, build_block
from learningchain.protocol.consensus import solve_pow

from ..helpers import genesis_for, honest_vectors, make_keys, message_for, mine_block, small_params


def grow(node, parent, seed, *, ts_offset=1000, n=6):
    """A valid block on ``parent`` with fresh holders, sealed."""
    params = node.params
    keys = make_keys(n, seed=seed)
    rng = np.random.default_rng(seed)
    msgs = [message_for(k, params, parent, v) for k, v in zip(keys, honest_vectors(params, n, rng))]
    blk = build_block(parent, msgs, params, genesis_hash=node.genesis_hash, miner=b"\x00" * 20,
                      timestamp=parent.header.timestamp + ts_offset, difficulty=node.next_difficulty(parent.header))
    return Block(solve_pow(blk.header), blk.messages, blk.selection, blk.model)


@pytest.fixture
def world():
    params = small_params()
    genesis = genesis_for(params)
    return params, genesis


def test_a_valid_block_becomes_the_head(world):
    params, genesis = world
    node = Node(genesis)
    b1 = grow(node, genesis, 1)
    out = node.on_block(b1)
    assert out.status == "accepted" and out.new_head and node.head_hash == b1.hash
    assert node.on_block(b1).status == "known"


def test_invalid_block_leaves_the_store_and_head_untouched(world):
    params, genesis = world
    node = Node(genesis)
    b1 = grow(node, genesis, 1)
    model = b1.model.copy()
    model[0] += 1.0
    bad = Block(b1.header, b1.messages, b1.selection, model)
    with pytest.raises(InvalidBlock):
        node.on_block(bad)
    assert node.head_hash == genesis.hash and node.store.get(bad.hash) is None
    assert node.rejected_by_reason["bad-model-hash"] == 1
    with pytest.raises(DecodeError):
        node.on_block(b"\x00\x01")
    assert node.rejected_by_reason["malformed"] == 1


def test_heavier_fork_wins_and_the_node_reorganises(world):
    params, genesis = world
    node = Node(genesis)
    a1 = grow(node, genesis, 1)
    node.on_block(a1)
    b1 = grow(node, genesis, 2, ts_offset=1500)
    b2 = grow(node, b1, 3)
    node.on_block(b1)
    out = node.on_block(b2)
    assert out.new_head and out.reorg and node.head_hash == b2.hash
    assert node.canonical_hashes() == [genesis.hash, b1.hash, b2.hash]


def test_equal_work_breaks_ties_by_the_lower_hash_whatever_the_arrival_order(world):
    params, genesis = world
    x = grow(Node(genesis), genesis, 1)
    y = grow(Node(genesis), genesis, 2)
    first = Node(genesis)
    first.on_block(x)
    first.on_block(y)
    second = Node(genesis)
    second.on_block(y)
    second.on_block(x)
    assert first.head_hash == second.head_hash == min(x.hash, y.hash)


def test_shorter_chain_but_heavier_weight_wins(world):
    params, genesis = world
    hard_params = small_params(difficulty=4)
    node = Node(genesis)
    # two blocks at difficulty 4 (work 32) lose against nothing heavier; check work bookkeeping
    a1 = grow(node, genesis, 1)
    a2 = grow(node, a1, 2)
    node.on_block(a1)
    node.on_block(a2)
    assert node.work[a2.hash] == 2 * 2**hard_params.difficulty


def test_an_invalid_fork_never_wins_whatever_its_length(world):
    params, genesis = world
    node = Node(genesis)
    good = grow(node, genesis, 1)
    node.on_block(good)
    bad1 = grow(node, genesis, 5, ts_offset=1200)
    model = bad1.model.copy()
    model[2] -= 0.5
    import dataclasses

    from learningchain.protocol import model_hash

    header = dataclasses.replace(bad1.header, model_hash=model_hash(model), seal=b"")
    bad1 = Block(solve_pow(header), bad1.messages, bad1.selection, model)
    helper = Node(genesis)  # a node that would build on it anyway
    bad2 = grow(helper, bad1, 6)
    bad3 = grow(helper, bad2, 7)
    with pytest.raises(InvalidBlock, match="bad-model"):
        node.on_block(bad1)
    for blk in (bad2, bad3):
        with pytest.raises(InvalidBlock, match="invalid-ancestor"):
            node.on_block(blk)
    assert node.head_hash == good.hash


def test_orphans_connect_when_their_parent_arrives(world):
    params, genesis = world
    node = Node(genesis)
    b1 = grow(node, genesis, 1)
    b2 = grow(node, b1, 2)
    out = node.on_block(b2)
    assert out.status == "orphan" and out.missing == b1.hash
    out = node.on_block(b1)
    assert out.connected == (b2.hash,)
    assert node.head_hash == b2.hash


def test_block_with_a_message_the_node_never_saw_is_refused_when_it_checks(world):
    params, genesis = world
    strict = Node(genesis, check_unseen=True)
    lax = Node(genesis)
    b1 = grow(lax, genesis, 1)
    with pytest.raises(InvalidBlock, match="never broadcast"):
        strict.on_block(b1)
    for m in b1.messages:
        strict.on_message(m)
    assert strict.on_block(b1).status == "accepted"


def test_sqlite_store_survives_a_restart_with_the_same_head(world, tmp_path):
    params, genesis = world
    path = tmp_path / "chain.sqlite"
    node = Node(genesis, store=SQLiteStore(path))
    b1 = grow(node, genesis, 1)
    b2 = grow(node, b1, 2)
    node.on_block(b1)
    node.on_block(b2)
    node.store.close()
    again = Node(genesis, store=SQLiteStore(path))
    assert again.head_hash == b2.hash and again.height == 2
    assert again.head == b2
    other = genesis_for(params, seed=5)
    again.store.close()
    with pytest.raises(StoreError, match="genesis"):
        Node(other, store=SQLiteStore(path))


def test_sqlite_canonical_index_follows_a_reorg(world, tmp_path):
    params, genesis = world
    store = SQLiteStore(tmp_path / "c.sqlite")
    node = Node(genesis, store=store)
    a1 = grow(node, genesis, 1)
    node.on_block(a1)
    b1 = grow(node, genesis, 2, ts_offset=1500)
    b2 = grow(node, b1, 3)
    node.on_block(b1)
    node.on_block(b2)
    assert [store.canonical_hash(h) for h in range(3)] == [genesis.hash, b1.hash, b2.hash]
    assert store.canonical_hash(3) is None


def test_a_block_from_another_genesis_is_refused_with_a_clear_error(world):
    params, genesis = world
    other_genesis = genesis_for(params, seed=9)
    foreign = grow(Node(other_genesis), other_genesis, 1)
    with pytest.raises(InvalidBlock, match="belongs to the chain with genesis") as info:
        Node(genesis).on_block(foreign)
    assert info.value.reason == "wrong-chain"


def test_mining_needs_enough_messages(world):
    params, genesis = world
    node = Node(genesis)
    with pytest.raises(InvalidBlock, match="too-few-messages"):
        node.template(timestamp=2000)


def _chain(node, genesis, length, seed):
    blocks, parent = [], genesis
    for i in range(length):
        b = grow(node, parent, seed + i)
        node.on_block(b)
        blocks.append(b)
        parent = b
    return blocks


def test_block_at_walks_the_canonical_chain_and_follows_a_reorg(world):
    params, genesis = world
    node = Node(genesis)
    a = _chain(node, genesis, 2, 10)
    assert [node.block_at(h).hash for h in range(3)] == [genesis.hash, a[0].hash, a[1].hash]
    assert node.block_at(3) is None and node.block_at(-1) is None
    side = Node(genesis)
    b = _chain(side, genesis, 3, 40)
    for blk in b:
        node.on_block(blk)
    assert [node.block_at(h).hash for h in range(4)] == [genesis.hash] + [x.hash for x in b]


def test_locator_is_dense_then_sparse_and_ends_at_genesis(world):
    params, genesis = world
    node = Node(genesis)
    blocks = _chain(node, genesis, 30, 100)
    loc = node.locator(dense=5)
    by_hash = {b.hash: b.height for b in blocks}
    by_hash[genesis.hash] = 0
    heights = [by_hash[h] for h in loc]
    # slow obvious reference: 5 consecutive heights from the head, then gaps 2, 4, 8, ...
    want, h, step = [], 30, 1
    while h > 0:
        want.append(h)
        if len(want) >= 5:
            step *= 2
        h -= step
    assert heights == want + [0]


def test_fork_point_finds_the_newest_shared_block(world):
    params, genesis = world
    node = Node(genesis)
    common = _chain(node, genesis, 3, 200)
    other = Node(genesis)
    for b in common:
        other.on_block(b)
    mine = _chain(node, common[-1], 2, 300)
    theirs = []
    parent = common[-1]
    for i in range(4):
        blk = grow(other, parent, 400 + i, ts_offset=1300)
        other.on_block(blk)
        theirs.append(blk)
        parent = blk
    assert node.head_hash == mine[-1].hash and other.head_hash == theirs[-1].hash
    # other's locator names its own branch; the newest block node shares with it is common[-1]
    assert node.fork_point(other.locator()) == common[-1].height
    assert other.fork_point(other.locator()) == other.height
    assert node.fork_point([b"\x11" * 32]) is None


def test_check_unseen_can_be_turned_off_for_one_call(world):
    params, genesis = world
    strict = Node(genesis, check_unseen=True)
    b1 = grow(Node(genesis), genesis, 1)
    with pytest.raises(InvalidBlock, match="never broadcast"):
        strict.on_block(b1)
    assert b1.hash not in strict.rejected  # non-final: the same block may come again
    assert strict.on_block(b1, check_unseen=False).status == "accepted"
    lax = Node(genesis)
    b2 = grow(lax, b1, 2)
    lax.on_block(b1)
    with pytest.raises(InvalidBlock, match="never broadcast"):
        lax.on_block(b2, check_unseen=True)
    assert lax.on_block(b2).status == "accepted"


def test_connecting_orphans_reports_the_head_move_exactly(world):
    params, genesis = world
    node = Node(genesis)
    a1 = grow(node, genesis, 1)
    node.on_block(a1)
    b1 = grow(node, genesis, 2, ts_offset=1500)  # a side block at the same height
    b2 = grow(node, b1, 3)
    assert node.on_block(b2).status == "orphan"
    out = node.on_block(b1)  # connects b2, which is heavier: the head moves, by a reorg
    assert out.connected == (b2.hash,) and out.new_head and out.reorg and node.head_hash == b2.hash
    c = grow(node, genesis, 4, ts_offset=1700)
    c2 = grow(node, c, 5)
    node2 = Node(genesis)
    for blk in (a1, b1):
        node2.on_block(blk)
    head = node2.head_hash
    node2.on_block(c2)
    out = node2.on_block(c)  # connects c2 at height 2 vs b1/a1 at height 1: head moves
    assert out.new_head and node2.head_hash == c2.hash
    node3 = Node(genesis)
    for blk in (a1, b1, b2):
        node3.on_block(blk)
    node3.on_block(c2)
    out = node3.on_block(c)  # c2 (height 2) ties b2 on work: only the lower hash moves the head
    assert out.new_head == (node3.head_hash != b2.hash)


def _forged_copies(block):
    """Copies of a real block with another body: the header (and so the hash) is the real one."""
    model = block.model.copy()
    model[0] += 1.0
    yield "wrong model", Block(block.header, block.messages, block.selection, model)
    yield "dropped message", Block(block.header, block.messages[1:], tuple(i - 1 for i in block.selection if i),
                                   block.model)
    yield "no messages", Block(block.header, (), (), block.model)
    yield "other selection", Block(block.header, block.messages, tuple(range(len(block.messages))), block.model)
    yield "parameters appended", Block(block.header, block.messages, block.selection, block.model, b"{}")
    yield "truncated body", block.encode()[:-9]


@pytest.mark.parametrize("verdicts", [False, True])
def test_a_forged_body_does_not_get_the_real_block_refused(world, verdicts):
    from learningchain.node import VerdictCache

    params, genesis = world
    cache = VerdictCache() if verdicts else None
    node = Node(genesis, verdicts=cache)
    b1 = grow(node, genesis, 1)
    b2 = grow(node, b1, 2)
    for what, forged in _forged_copies(b1):
        with pytest.raises((InvalidBlock, DecodeError)):
            node.on_block(forged)
        assert b1.hash not in node.rejected, what
        assert node.store.get(b1.hash) is None and node.head_hash == genesis.hash
    if cache is not None:
        assert b1.hash not in cache.blocks  # no verdict on the hash from a copy that is not the block
    # its child before it, then a forged copy of it: the child waits, the copy is dropped
    assert node.on_block(b2).status == "orphan"
    for what, forged in _forged_copies(b1):
        with pytest.raises((InvalidBlock, DecodeError)):
            node.on_block(forged)
    assert b2.hash in node.orphans and b2.hash not in node.rejected
    out = node.on_block(b1)
    assert out.status == "accepted" and out.connected == (b2.hash,)
    assert node.head_hash == b2.hash
    b3 = grow(node, b2, 3)
    assert node.on_block(b3).new_head and node.height == 3  # the chain goes on


def test_a_block_whose_body_matches_its_header_but_breaks_a_rule_is_refused_for_good(world):
    params, genesis = world
    node = Node(genesis)
    b1 = grow(node, genesis, 1)
    model = b1.model.copy()
    model[0] += 1.0  # a header that commits to the wrong model: the block itself is invalid
    import dataclasses

    from learningchain.protocol.block import model_hash

    header = solve_pow(dataclasses.replace(b1.header, model_hash=model_hash(model), seal=b""))
    bad = Block(header, b1.messages, b1.selection, model)
    with pytest.raises(InvalidBlock, match="bad-model"):
        node.on_block(bad)
    assert bad.hash in node.rejected
    child = grow(node, bad, 5)
    with pytest.raises(InvalidBlock, match="invalid-ancestor"):
        node.on_block(child)


def _unsealed_child(node, parent, seed, **over):
    """A block on ``parent`` whose seal is whatever ``over`` says (not a solved proof of work)."""
    import dataclasses

    blk = grow(node, parent, seed)
    header = dataclasses.replace(blk.header, **over)
    return Block(header, blk.messages, blk.selection, blk.model)


def test_an_orphan_enters_the_pool_only_with_its_proof_of_work_and_its_committed_body(world):
    from learningchain.node.node import block_size
    from learningchain.protocol.consensus import pow_target, pow_value

    params, genesis = world
    node = Node(genesis)
    b1 = grow(node, genesis, 1)
    b2 = grow(node, b1, 2)
    # junk: a seal that misses the target, a difficulty outside the chain's, a forged body
    for nonce in range(1000):
        junk = _unsealed_child(node, b1, 2, seal=nonce.to_bytes(8, "little"))
        if pow_value(junk.header.seal_hash, nonce) >= pow_target(junk.header.difficulty):
            break
    easy = solve_pow(dataclasses_replace(b2.header, difficulty=0))
    model = b2.model.copy()
    model[0] += 1.0
    for bad in (junk, Block(easy, b2.messages, b2.selection, b2.model), Block(b2.header, b2.messages, b2.selection,
                                                                              model)):
        with pytest.raises(InvalidBlock):
            node.on_block(bad)
        assert not node.orphans and node.orphan_bytes == 0 and bad.hash not in node.rejected
    assert node.on_block(b2).status == "orphan" and node.orphan_bytes == block_size(b2) == len(b2.encode())
    assert node.on_block(b1).connected == (b2.hash,) and node.orphan_bytes == 0 and node.height == 2


def dataclasses_replace(header, **over):
    import dataclasses

    return dataclasses.replace(header, seal=b"", **over)


def test_the_orphan_pool_is_bounded_in_bytes(world):
    params, genesis = world
    probe = Node(genesis)
    b1 = grow(probe, genesis, 1)
    children = [grow(probe, b1, 10 + i, ts_offset=1000 + i) for i in range(12)]
    size = len(children[0].encode())
    node = Node(genesis, max_orphan_bytes=3 * size + size // 2)
    for c in children:
        assert node.on_block(c).status == "orphan"
        assert node.orphan_bytes <= node.max_orphan_bytes
        assert node.orphan_bytes == sum(len(o.encode()) for o in node.orphans.values())
    assert len(node.orphans) == 3 and list(node.orphans) == [c.hash for c in children[-3:]]  # the newest kept
    node.on_block(b1)
    assert node.orphan_bytes == 0 and not node.orphans


def test_a_reopened_store_recomputes_total_work_instead_of_trusting_it(world, tmp_path):
    import sqlite3

    params, genesis = world
    path = tmp_path / "chain.sqlite"
    node = Node(genesis, store=SQLiteStore(path))
    a1 = grow(node, genesis, 1)
    a2 = grow(node, a1, 2)
    b1 = grow(node, genesis, 3, ts_offset=1500)  # a losing branch
    for b in (a1, a2, b1):
        node.on_block(b)
    assert node.head_hash == a2.hash
    node.store.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE blocks SET work='999999999999' WHERE hash=?", (b1.hash,))
    db.commit()
    db.close()
    again = Node(genesis, store=SQLiteStore(path))
    assert again.head_hash == a2.hash and again.work[b1.hash] == again.work[a1.hash]
    again.store.close()


@pytest.mark.parametrize("column", ["parent", "height"])
def test_a_reopened_store_refuses_columns_that_disagree_with_their_header(world, tmp_path, column):
    import sqlite3

    params, genesis = world
    path = tmp_path / "chain.sqlite"
    node = Node(genesis, store=SQLiteStore(path))
    b1 = grow(node, genesis, 1)
    node.on_block(b1)
    node.on_block(grow(node, b1, 2))
    node.store.close()
    db = sqlite3.connect(path)
    db.execute(f"UPDATE blocks SET {column}=? WHERE hash=?", (b"\x01" * 32 if column == "parent" else 5, b1.hash))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="do not match its header"):
        Node(genesis, store=SQLiteStore(path))


@pytest.mark.parametrize("content", [b"", b"garbage " * 100, "other-program"])
def test_an_existing_file_that_is_not_a_chain_store_is_never_turned_into_one(world, tmp_path, content):
    import sqlite3

    params, genesis = world
    path = tmp_path / "chain.sqlite"
    if content == "other-program":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE notes (text TEXT)")
        db.commit()
        db.close()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="is not a LearningChain chain store"):
        SQLiteStore(path)
    assert path.read_bytes() == before


def test_a_block_held_back_for_unseen_messages_has_its_proof_of_work_checked_first(world):
    from learningchain.protocol.consensus import pow_target, pow_value

    params, genesis = world
    node = Node(genesis, check_unseen=True)
    for nonce in range(1000):
        junk = _unsealed_child(node, genesis, 4, seal=nonce.to_bytes(8, "little"))
        if pow_value(junk.header.seal_hash, nonce) >= pow_target(junk.header.difficulty):
            break
    with pytest.raises(InvalidBlock, match="bad-pow"):  # not "unseen-message", which a driver may hold
        node.on_block(junk)
    real = grow(node, genesis, 4)
    with pytest.raises(InvalidBlock, match="unseen-message"):
        node.on_block(real)
    assert real.hash not in node.rejected


def test_the_verdict_cache_does_not_keep_a_block_alive(world):
    """The shared body verdict is per block object, held by a weak reference: once no
    node holds a block (and its K messages), the cache does not either."""
    import gc
    import weakref

    from learningchain.node import VerdictCache

    params, genesis = world
    cache = VerdictCache()
    node = Node(genesis, verdicts=cache)
    b1 = grow(node, genesis, 1)
    assert node.on_block(b1).new_head
    twin = Block(b1.header, b1.messages, b1.selection, b1.model)  # an equal block, another object
    assert cache.body_mismatch(b1, params.dim) is None and cache.body_mismatch(twin, params.dim) is None
    assert len(cache.bodies) == 2
    dead = weakref.ref(twin)
    del twin
    gc.collect()
    assert dead() is None  # not held by the cache
    # a block whose body does not match its header gets its own verdict, whatever id it reuses
    bad = Block(b1.header, b1.messages[1:], b1.selection, b1.model)
    assert cache.body_mismatch(bad, params.dim) is not None
    assert cache.body_mismatch(b1, params.dim) is None
