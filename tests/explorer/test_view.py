"""The explorer's read-only view and API, without a browser."""

import json
import os
import time

import pytest

from learningchain.config import TrainConfig
from learningchain.experiments.rundir import RunInterrupted
from learningchain.experiments.train import run_training
from learningchain.explorer import ChainView, ExplorerApp


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("view") / "run"
    summary = run_training(TrainConfig(out=str(out), dataset="breast-cancer", rounds=6, epsilon=1.0, byzantine=2,
                                       progress=False))
    return out, summary


def api(app, path, **query):
    code, ctype, body = app.handle(path, {k: [str(v)] for k, v in query.items()})
    return code, json.loads(body) if ctype == "application/json" else body


def test_the_api_answers_from_the_stored_chain_and_the_summary(run):
    out, summary = run
    app = ExplorerApp(ChainView(out))
    code, head = api(app, "/api/head")
    assert code == 200 and head["hash"] == summary["head_hash"] and head["height"] == 6 and not head["live"]
    code, page = api(app, "/api/blocks", limit=4)
    assert [b["height"] for b in page["blocks"]] == [6, 5, 4, 3] and page["next"] == 3
    code, page = api(app, "/api/blocks", before=3, limit=10)
    assert [b["height"] for b in page["blocks"]] == [2, 1, 0] and page["next"] is None
    code, block = api(app, "/api/block/4")
    assert block["header"]["height"] == 4 and len(block["messages"]) == 10
    assert [m["index"] for m in block["messages"] if m["selected"]] == block["selection"]
    assert sum(m["byzantine"] for m in block["messages"]) == 2  # marked from the run's Byzantine identities
    assert {m["identity"] for m in block["messages"] if m["byzantine"]} <= set(summary["byzantine_identities"])
    code, same = api(app, f"/api/block/{block['header']['hash']}")
    assert same == block
    code, overview = api(app, "/api/overview")
    assert overview["summary"]["test_error"] == summary["test_error"] and overview["genesis"]["holders"] == 10
    code, m = api(app, "/api/metrics")
    assert [r["round"] for r in m["rows"]] == [1, 2, 3, 4, 5, 6] and m["baseline"]


@pytest.mark.parametrize("path, code", [("/api/block/99", 404), ("/api/block/0xzz", 404), ("/api/nothing", 404),
                                        # past SQLite's integers (was 500), another script's digit (was 503)
                                        ("/api/block/99999999999999999999", 404), ("/api/block/\u00b2", 404),
                                        ("/static/../../etc/passwd", 404), ("/static/app.js", 200)])
def test_bad_requests_get_a_clear_answer_and_no_file_outside_the_assets(run, path, code):
    assert ExplorerApp(ChainView(run[0])).handle(path, {})[0] == code


def test_a_bad_page_parameter_is_refused(run):
    code, body = api(ExplorerApp(ChainView(run[0])), "/api/blocks", before="x")
    assert code == 400 and "before" in body["error"]


def test_a_run_still_going_is_followed_in_its_temporary_directory(tmp_path):
    seen = {}

    def look(row):
        if row["round"] == 3:
            view = ChainView(tmp_path / "live")
            # the store writes the block behind the round and the checkpoint (the live rows)
            # after the block: the view catches up with the round within moments
            deadline = time.monotonic() + 30
            while True:
                seen["head"], seen["metrics"] = view.head(), view.metrics()
                if (seen["head"]["height"] == 3 and len(seen["metrics"]["rows"]) == 3) or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted):
        run_training(TrainConfig(out=str(tmp_path / "live"), dataset="synthetic", rounds=8, progress=False),
                     on_round=look)
    assert seen["head"]["live"] and seen["head"]["height"] == 3
    assert [r["round"] for r in seen["metrics"]["rows"]] == [1, 2, 3]


def test_the_explorer_never_writes_the_store(run):
    out, _ = run
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    app = ExplorerApp(ChainView(out))
    for path in ("/api/overview", "/api/blocks", "/api/block/3", "/api/metrics"):
        app.handle(path, {})
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not any(name.endswith(("-wal", "-shm")) for name in os.listdir(out))
