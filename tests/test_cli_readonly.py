"""Inspection commands open a store read-only: whatever the file, it stays byte-identical
and nothing is created beside it."""

import hashlib
import sqlite3

import pytest

from learningchain.cli.main import main

COMMANDS = [["chain", "verify"], ["chain", "head"], ["chain", "balances"], ["chain", "verify", "--last", "2"],
            ["chain", "privacy"]]


def _snapshot(directory):
    return {p.name: (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(directory.iterdir()) if p.is_file()}


def _make(kind, path):
    if kind == "zero-bytes":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"this is not a database\n" * 200)
    elif kind == "garbage-with-sqlite-magic":
        path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 5000)
    elif kind == "empty-sqlite":
        db = sqlite3.connect(path)
        db.execute("PRAGMA user_version=1")  # a real, empty SQLite file (no tables)
        db.close()
    elif kind == "other-program":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
        db.execute("INSERT INTO contacts VALUES ('ada', '123')")
        db.commit()
        db.close()
    elif kind == "partial-schema":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        db.commit()
        db.close()


KINDS = ["zero-bytes", "garbage", "garbage-with-sqlite-magic", "empty-sqlite", "other-program", "partial-schema"]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c))
@pytest.mark.parametrize("kind", KINDS)
def test_inspection_of_a_file_that_is_not_a_chain_store_changes_nothing(tmp_path, capsys, command, kind):
    path = tmp_path / "chain.sqlite"
    _make(kind, path)
    before = _snapshot(tmp_path)
    assert main(command[:2] + [str(path)] + command[2:]) == 2
    err = capsys.readouterr().err
    assert err.startswith("learningchain: error: ") and "is not a LearningChain chain store" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c))
def test_inspection_of_a_missing_path_creates_nothing(tmp_path, capsys, command):
    for target in (tmp_path / "none.sqlite", tmp_path):  # a file that is not there, a directory without a chain
        assert main(command[:2] + [str(target)] + command[2:]) == 2
        err = capsys.readouterr().err
        assert "is not a LearningChain chain store: no such file" in err, err
        assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def chain_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ro") / "run"
    assert main(["train", "--dataset", "breast-cancer", "--holders", "4", "--rounds", "3", "--no-dp",
                 "--difficulty", "0", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c))
def test_inspection_of_a_real_chain_leaves_it_byte_identical(chain_dir, capsys, command):
    before = _snapshot(chain_dir)
    assert main(command[:2] + [str(chain_dir / "chain.sqlite")] + command[2:]) == 0
    capsys.readouterr()
    assert _snapshot(chain_dir) == before  # no -wal or -shm files either
