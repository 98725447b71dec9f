"""``chain verify``: a stored chain replays, and any changed byte is found with its height."""

import sqlite3

import pytest

from learningchain.config import TrainConfig
from learningchain.experiments.train import run_training
from learningchain.node.verify import chain_head, verify_chain


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    run_training(TrainConfig(dataset="breast-cancer", rounds=12, out=str(out), force=True, epsilon=0.5,
                             byzantine=2, progress=False))
    return out


def copy_chain(run_dir, tmp_path):
    src = sqlite3.connect(run_dir / "chain.sqlite")
    dst_path = tmp_path / "chain.sqlite"
    dst = sqlite3.connect(dst_path)
    src.backup(dst)
    src.close()
    dst.close()
    return dst_path


def test_a_written_chain_verifies(run_dir):
    report = verify_chain(run_dir)
    assert report.ok, report.error
    assert report.checked == 12 and report.height == 12
    assert chain_head(run_dir)[0] == 12


def test_the_holders_final_check_replays_only_the_last_s_blocks(run_dir):
    report = verify_chain(run_dir, last=3)
    assert report.ok and report.checked == 3 and report.from_height == 10


@pytest.mark.parametrize("column", ["header", "body"])
@pytest.mark.parametrize("height", [1, 6, 12])
def test_any_changed_byte_is_found_at_its_height(run_dir, tmp_path, column, height):
    path = copy_chain(run_dir, tmp_path)
    db = sqlite3.connect(path)
    h = db.execute("SELECT hash FROM canonical WHERE height=?", (height,)).fetchone()[0]
    blob = bytearray(db.execute(f"SELECT {column} FROM blocks WHERE hash=?", (h,)).fetchone()[0])
    for pos in sorted({0, 7, len(blob) // 3, len(blob) // 2, len(blob) - 1}):
        tampered = bytearray(blob)
        tampered[pos] ^= 0x40
        db.execute(f"UPDATE blocks SET {column}=? WHERE hash=?", (bytes(tampered), h))
        db.commit()
        report = verify_chain(path)
        assert not report.ok and report.first_bad_height == height, (pos, report.error)
    db.close()


def test_a_changed_model_or_message_inside_the_body_is_named(run_dir, tmp_path):
    from learningchain.node.store import compress_body, decompress_body

    path = copy_chain(run_dir, tmp_path)
    db = sqlite3.connect(path)
    h = db.execute("SELECT hash FROM canonical WHERE height=5").fetchone()[0]
    body = bytearray(decompress_body(db.execute("SELECT body FROM blocks WHERE hash=?", (h,)).fetchone()[0]))
    for pos, reason in ((len(body) - 20, "bad-model-hash"), (200, "messages root")):
        changed = bytearray(body)
        changed[pos] ^= 0x01
        db.execute("UPDATE blocks SET body=? WHERE hash=?", (compress_body(bytes(changed)), h))
        db.commit()
        report = verify_chain(path)
        assert not report.ok and report.first_bad_height == 5
    db.close()


def test_verify_of_a_missing_chain_is_a_clear_error(tmp_path):
    from learningchain.errors import StoreError

    with pytest.raises(StoreError, match="no chain"):
        verify_chain(tmp_path / "nothing.sqlite")
