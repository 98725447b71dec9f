"""Pruning by the genesis's finality depth: a pruned store drops the message bodies
of blocks deeper than the depth and keeps headers, selections and models; ``chain
verify`` replays what is whole and checks the rest by header; an archival store
keeps everything."""

import sqlite3

import numpy as np
import pytest

from learningchain.errors import StoreError
from learningchain.node import Node, SQLiteStore
from learningchain.node.store import compress_body, decompress_body, is_pruned_body
from learningchain.node.verify import verify_chain
from learningchain.protocol import Block, build_block
from learningchain.protocol.consensus import solve_pow

from ..helpers import genesis_for, honest_vectors, make_keys, message_for, small_params

DEPTH = 3
N = 10


def grow(node, parent, seed, n=6):
    params = node.params
    keys = make_keys(n, seed=seed)
    rng = np.random.default_rng(seed)
    msgs = [message_for(k, params, parent, v) for k, v in zip(keys, honest_vectors(params, n, rng))]
    blk = build_block(parent, msgs, params, genesis_hash=node.genesis_hash, miner=b"\x00" * 20,
                      timestamp=parent.header.timestamp + 1000, difficulty=node.next_difficulty(parent.header))
    return Block(solve_pow(blk.header), blk.messages, blk.selection, blk.model)


def build_pair(tmp_path, n=N, dim=5, **over):
    """An archival and a pruned node that accepted the same ``n`` blocks."""
    inputs = dim - 1
    params = small_params(finality_depth=DEPTH, dim=dim, model={"kind": "logistic", "inputs": inputs, "classes": 2},
                          **over)
    genesis = genesis_for(params)
    archive = Node(genesis, store=SQLiteStore(tmp_path / "archive.sqlite"))
    pruned = Node(genesis, store=SQLiteStore(tmp_path / "pruned.sqlite"), prune=True)
    parent = genesis
    for i in range(n):
        block = grow(archive, parent, seed=100 + i)
        assert archive.on_block(block).new_head and pruned.on_block(block).new_head
        parent = block
    return archive, pruned


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    archive, pruned = build_pair(tmp_path_factory.mktemp("pair"))
    yield archive, pruned
    archive.store.close()
    pruned.store.close()


def test_a_pruned_store_keeps_the_bodies_of_the_blocks_within_the_finality_depth(pair):
    archive, pruned = pair
    for height in range(N + 1):
        h = archive.store.canonical_hash(height)
        # deeper than the depth: more than DEPTH blocks on top of it
        assert pruned.store.has_body(h) == (height == 0 or N - height <= DEPTH), height
        assert archive.store.has_body(h)
        a, p = archive.store.get(h), pruned.store.get(h)
        assert p.header.encode() == a.header.encode()
        assert np.array_equal(p.model, a.model) and p.selection == a.selection
        assert len(p.messages) == (len(a.messages) if pruned.store.has_body(h) else 0)
    assert pruned.store.pruned_below == N - DEPTH


def test_verify_says_which_range_it_replayed_and_which_it_checked_by_header(pair):
    archive, pruned = pair
    full = verify_chain(archive.store.path)
    assert full.ok and full.checked == N and full.pruned_to == 0 and full.from_height == 1
    report = verify_chain(pruned.store.path)
    assert report.ok, report.error
    assert report.pruned_to == N - DEPTH - 1 and report.from_height == N - DEPTH and report.checked == DEPTH + 1
    text = report.describe()
    assert f"{DEPTH + 1} blocks verified by full replay from height {N - DEPTH}" in text
    assert f"blocks 1 to {N - DEPTH - 1} were checked by header only" in text


def _copy(path, tmp_path):
    dst = tmp_path / "copy.sqlite"
    src, out = sqlite3.connect(path), sqlite3.connect(dst)
    src.backup(out)
    src.close()
    return out, dst


def _body(db, height):
    h = db.execute("SELECT hash FROM canonical WHERE height=?", (height,)).fetchone()[0]
    return h, db.execute("SELECT body FROM blocks WHERE hash=?", (h,)).fetchone()[0]


def test_a_pruned_body_with_another_model_is_found_at_its_height(pair, tmp_path):
    _, pruned = pair
    db, path = _copy(pruned.store.path, tmp_path)
    h3, _ = _body(db, 3)
    _, body4 = _body(db, 4)  # pruned too: the selection may match, the model does not
    db.execute("UPDATE blocks SET body=? WHERE hash=?", (body4, h3))
    db.commit()
    db.close()
    report = verify_chain(path)
    assert not report.ok and report.first_bad_height == 3 and "model" in report.error


def test_a_body_pruned_within_the_finality_depth_is_refused(pair, tmp_path):
    _, pruned = pair
    db, path = _copy(pruned.store.path, tmp_path)
    height = N - DEPTH  # kept whole by the rule
    h, body = _body(db, height)
    raw = decompress_body(body)
    n = int.from_bytes(raw[:4], "little")
    pos = 4
    for _ in range(n):
        pos += 4 + int.from_bytes(raw[pos:pos + 4], "little")
    db.execute("UPDATE blocks SET body=? WHERE hash=?", (compress_body(bytes(4) + raw[pos:], fmt=3), h))
    db.commit()
    db.close()
    report = verify_chain(path)
    assert not report.ok and report.first_bad_height == height and "finality depth" in report.error


def test_a_pruned_store_reopens_and_refuses_to_hand_out_pruned_messages(pair, tmp_path):
    _, pruned = pair
    db, path = _copy(pruned.store.path, tmp_path)
    db.close()
    node = Node(pruned.genesis, store=SQLiteStore(path), prune=True)
    assert node.height == N and node.store.pruned_below == N - DEPTH
    with pytest.raises(StoreError, match="pruned"):
        list(node.store.canonical_blocks(0))
    assert len(list(node.store.canonical_blocks(N - DEPTH))) == DEPTH + 1
    node.store.close()


def test_pruning_needs_a_finality_depth_and_no_budget(tmp_path):
    plain = genesis_for(small_params())
    with pytest.raises(StoreError, match="finality_depth"):
        Node(plain, store=SQLiteStore(tmp_path / "a.sqlite"), prune=True)
    assert "finality_depth" not in small_params().encode().decode()  # the default leaves genesis as it was
    with pytest.raises(Exception, match="finality_depth"):
        small_params(finality_depth=0)


def test_a_pruned_stores_disk_size_stays_bounded(tmp_path):
    """Per block a pruned store adds a header and a model; an archival one the messages too."""
    dim, n = 4000, 14
    archive, pruned = build_pair(tmp_path, n=n, dim=dim)
    rows = archive.store._db.execute("SELECT height, length(body) FROM blocks").fetchall()
    full = {h: size for h, size in rows}
    prow = dict(pruned.store._db.execute("SELECT height, length(body) FROM blocks").fetchall())
    for height in range(1, n + 1):
        if height < n - DEPTH:
            # the pruned body is the stored model (and selection) alone: well under the messages' bytes
            assert prow[height] < full[height] / 2
            assert prow[height] <= 8 * dim + 1024
        else:
            assert prow[height] == full[height]
    archive.store.close()
    pruned.store.close()
    a_size = (tmp_path / "archive.sqlite").stat().st_size
    p_size = (tmp_path / "pruned.sqlite").stat().st_size
    whole = sum(full[h] for h in range(n - DEPTH, n + 1))
    assert p_size <= (n + 1) * (8 * dim + 4096) + whole + 64 * 1024
    assert p_size < a_size


def test_is_pruned_body_reads_only_the_format_byte():
    assert is_pruned_body(compress_body(b"\x00" * 8, fmt=3))
    assert not is_pruned_body(compress_body(b"\x00" * 8))
