"""Chains recorded on one machine replay to the same head on this one.

tests/vectors/chains holds the canonical blocks of the seeded runs of
tests/test_head_pins.py as computed on the machine that recorded them
(tests/vectors/make_recorded_chains.py). The holders' float work is in the
messages; what a node recomputes (signatures, unit checks, the rule's
selection, the model update, proof of work, the links) is exact integer and
IEEE arithmetic that must agree on every machine. So every block must be
accepted and the head must be the recorded one, here and on any machine, even
where this machine's own holders would compute other gradients (and so other
heads) for the same seed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import zstandard

from learningchain.errors import DecodeError, InvalidBlock
from learningchain.node import Node
from learningchain.node.store import SQLiteStore
from learningchain.node.verify import verify_chain
from learningchain.protocol import decode_block
from learningchain.protocol.transition import params_of_genesis
from tests.test_head_pins import RUNS

CHAINS = Path(__file__).resolve().parent.parent / "vectors" / "chains"
MAX_BLOCK = 16 << 20


def _frames(name: str) -> list[bytes]:
    raw = zstandard.ZstdDecompressor().decompress((CHAINS / f"{name}.chain").read_bytes(), max_output_size=MAX_BLOCK)
    frames, at = [], 0
    while at < len(raw):
        size = int.from_bytes(raw[at:at + 4], "little")
        frames.append(raw[at + 4:at + 4 + size])
        at += 4 + size
    assert at == len(raw), "truncated chain file"
    return frames


def _blocks(frames: list[bytes]):
    genesis = decode_block(frames[0], max_dim=1 << 20, max_messages=1 << 16)
    params = params_of_genesis(genesis)
    return genesis, [decode_block(f, max_dim=params.dim, max_messages=params.max_messages) for f in frames[1:]]


def _replay(genesis, blocks, store=None) -> Node:
    node = Node(genesis, store=store)
    for block in blocks:
        node.on_block(block, check_unseen=False)
        assert node.head.hash == block.hash, f"block {block.header.height} did not become the head"
    return node


def test_every_pinned_run_has_a_recorded_chain():
    assert sorted(p.stem for p in CHAINS.glob("*.chain")) == sorted(RUNS)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_recorded_chain_replays_to_its_head_on_this_machine(tmp_path, name):
    frames = _frames(name)
    genesis, blocks = _blocks(frames)
    assert [b.encode() for b in [genesis, *blocks]] == frames  # strict decoding round-trips
    head = "0x" + blocks[-1].hash.hex()
    assert head == RUNS[name][1][0], "the recording is of the first pinned head"
    store = SQLiteStore(tmp_path / "chain.sqlite")
    node = _replay(genesis, blocks, store)
    assert node.head.header.height == len(blocks)
    store.close()
    report = verify_chain(tmp_path / "chain.sqlite")
    assert report.ok, report.describe()
    assert (report.checked, report.head_hash) == (len(blocks), blocks[-1].hash)


@pytest.mark.parametrize("name", ["synthetic-dp-byzantine", "breast-cancer-no-dp-krum"])
def test_a_recorded_chain_with_one_changed_gradient_entry_is_refused(name):
    frames = _frames(name)
    genesis, blocks = _blocks(frames)
    middle = len(blocks) // 2
    raw = bytearray(frames[1 + middle])
    msg = blocks[middle].messages[0]
    start = bytes(raw).find(msg.encode())
    assert start > 0
    raw[start + len(msg.encode()) - 65 - 4] ^= 1  # the last gradient entry's low byte
    node = _replay(genesis, blocks[:middle])
    with pytest.raises((InvalidBlock, DecodeError), match="signature|root"):
        node.on_block(decode_block(bytes(raw), max_dim=node.params.dim, max_messages=node.params.max_messages),
                      check_unseen=False)
    assert node.head.hash == blocks[middle - 1].hash if middle else genesis.hash
