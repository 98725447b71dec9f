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


def _hash_at(db, height):
    return db.execute("SELECT hash FROM canonical WHERE height=?", (height,)).fetchone()[0]


def _cli_verify(path, capsys, *extra):
    from learningchain.cli.main import main

    code = main(["chain", "verify", str(path), *extra])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out + err


@pytest.mark.parametrize("column,value", [
    ("parent", lambda db: _hash_at(db, 2)),
    ("height", lambda db: 7),
    ("work", lambda db: "999999999"),
    ("work", lambda db: "not a number"),
    ("parent", lambda db: "0x" + "00" * 32),
])
def test_a_changed_column_the_node_reads_back_is_found_at_its_height(run_dir, tmp_path, capsys, column, value):
    path = copy_chain(run_dir, tmp_path)
    db = sqlite3.connect(path)
    db.execute(f"UPDATE blocks SET {column}=? WHERE hash=?", (value(db), _hash_at(db, 6)))
    db.commit()
    db.close()
    report = verify_chain(path)
    assert not report.ok and report.first_bad_height == 6, report.error
    code, text = _cli_verify(path, capsys)
    assert code == 1 and "INVALID at height 6" in text


@pytest.mark.parametrize("where", ["blocks", "canonical", "head"])
def test_a_hash_stored_as_text_is_reported_not_a_traceback(run_dir, tmp_path, capsys, where):
    path = copy_chain(run_dir, tmp_path)
    db = sqlite3.connect(path)
    if where == "blocks":
        h = _hash_at(db, 6)
        db.execute("UPDATE blocks SET hash=CAST(hash AS TEXT) WHERE hash=?", (h,))
        want = 6
    elif where == "canonical":
        db.execute("UPDATE canonical SET hash=CAST(hash AS TEXT) WHERE height=6")
        want = 6
    else:
        db.execute("UPDATE meta SET value=CAST(value AS TEXT) WHERE key='head'")
        want = 12
    db.commit()
    db.close()
    code, text = _cli_verify(path, capsys)
    assert code == 1 and f"INVALID at height {want}" in text, text
    from learningchain.cli.main import main

    assert main(["chain", "head", str(path)]) in (0, 2)
    assert "Traceback" not in capsys.readouterr().err


def test_a_truncated_store_is_reported_without_a_traceback(run_dir, tmp_path, capsys):
    path = copy_chain(run_dir, tmp_path)
    data = path.read_bytes()
    for size in (len(data) // 2, len(data) - 4096, 4096 + 100):
        path.write_bytes(data[:size])
        code, text = _cli_verify(path, capsys)
        assert code == 1 and text.startswith("INVALID"), (size, text)  # a damaged chain, not a usage error
        assert "OK:" not in text
        assert path.read_bytes() == data[:size]


@pytest.mark.parametrize("column", ["header", "body"])
def test_a_corrupted_genesis_is_invalid_at_height_0(run_dir, tmp_path, capsys, column):
    from learningchain.node.store import compress_body, decompress_body

    path = copy_chain(run_dir, tmp_path)
    db = sqlite3.connect(path)
    h = _hash_at(db, 0)
    blob = bytearray(db.execute(f"SELECT {column} FROM blocks WHERE hash=?", (h,)).fetchone()[0])
    if column == "body":  # a valid compressed body whose model (or parameters) changed
        blob = bytearray(decompress_body(bytes(blob)))
        blob[-40] ^= 0x01
        blob = bytearray(compress_body(bytes(blob)))
    else:
        blob[len(blob) // 2] ^= 0x01
    db.execute(f"UPDATE blocks SET {column}=? WHERE hash=?", (bytes(blob), h))
    db.commit()
    db.close()
    code, text = _cli_verify(path, capsys)
    assert code == 1 and "INVALID at height 0" in text, text


def test_last_s_finds_a_changed_header_below_its_window_and_says_what_it_did_not_replay(run_dir, tmp_path, capsys):
    code, text = _cli_verify(run_dir, capsys, "--last", "3")
    assert code == 0 and "blocks 1 to 9 were not replayed" in text, text
    path = copy_chain(run_dir, tmp_path)
    db = sqlite3.connect(path)
    h5 = _hash_at(db, 5)
    header = bytearray(db.execute("SELECT header FROM blocks WHERE hash=?", (h5,)).fetchone()[0])
    header[len(header) // 2] ^= 0x01
    db.execute("UPDATE blocks SET header=? WHERE hash=?", (bytes(header), h5))
    db.commit()
    code, text = _cli_verify(path, capsys, "--last", "3")
    assert code == 1 and "INVALID at height 5" in text, text
    db.close()

    (tmp_path / "second").mkdir()
    path = copy_chain(run_dir, tmp_path / "second")
    db = sqlite3.connect(path)
    db.execute("UPDATE blocks SET work='12345' WHERE hash=?", (_hash_at(db, 4),))
    db.commit()
    db.close()
    code, text = _cli_verify(path, capsys, "--last", "3")
    assert code == 1 and "INVALID at height 4" in text, text


def test_last_s_checks_its_first_model_against_that_blocks_header(run_dir, tmp_path, capsys):
    from learningchain.node.store import compress_body, decompress_body

    path = copy_chain(run_dir, tmp_path)
    db = sqlite3.connect(path)
    h9 = _hash_at(db, 9)  # the parent of the --last 3 window (10, 11, 12): its model is the replay's start
    body = bytearray(decompress_body(db.execute("SELECT body FROM blocks WHERE hash=?", (h9,)).fetchone()[0]))
    body[len(body) - 20] ^= 0x01  # inside the model
    db.execute("UPDATE blocks SET body=? WHERE hash=?", (compress_body(bytes(body)), h9))
    db.commit()
    db.close()
    code, text = _cli_verify(path, capsys, "--last", "3")
    assert code == 1 and "INVALID at height 9" in text and "model" in text, text
    code, text = _cli_verify(path, capsys)
    assert code == 1 and "INVALID at height 9" in text


@pytest.mark.parametrize("where", ["model", "message"])
def test_last_s_finds_a_changed_body_below_its_window(run_dir, tmp_path, capsys, where):
    """A block just below the --last window whose body no longer matches its header."""
    from learningchain.node.store import compress_body, decompress_body

    path = copy_chain(run_dir, tmp_path)
    db = sqlite3.connect(path)
    h8 = _hash_at(db, 8)
    body = bytearray(decompress_body(db.execute("SELECT body FROM blocks WHERE hash=?", (h8,)).fetchone()[0]))
    body[len(body) - 20 if where == "model" else 200] ^= 0x01
    db.execute("UPDATE blocks SET body=? WHERE hash=?", (compress_body(bytes(body)), h8))
    db.commit()
    db.close()
    code, text = _cli_verify(path, capsys, "--last", "3")
    assert code == 1 and "INVALID at height 8" in text, text
