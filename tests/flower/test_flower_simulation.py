"""A real Flower simulation (Ray backend) with Byzantine clients, aggregated by ChainRule."""

import json
import os

import numpy as np
import pytest

flwr = pytest.importorskip("flwr", reason="the flower extra is not installed (pip install -e '.[flower]')")
pytest.importorskip("ray", reason="Flower's simulation needs ray (flwr[simulation])")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # no GPU here; keeps Ray quiet about it

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.simulation import run_simulation  # noqa: E402

from learningchain.flower import ChainRule, verify_log  # noqa: E402
from learningchain.flower.rounds import rule_params  # noqa: E402
from learningchain.protocol.aggregation import Batch, aggregate  # noqa: E402

CLIENTS, BYZANTINE, ROUNDS, DIM = 10, 3, 4, 8
TRUE_W = np.linspace(-1.0, 1.0, DIM)


def client_data(pid: int):
    rng = np.random.default_rng(100 + pid)
    x = rng.normal(size=(64, DIM))
    return x, x @ TRUE_W + 0.01 * rng.normal(size=64)


client = ClientApp()


@client.train()
def train(msg: Message, context: Context) -> Message:
    pid = int(context.node_config["partition-id"])
    w = msg.content["arrays"]["w"].numpy().astype(np.float64)
    byzantine = pid < BYZANTINE
    if byzantine:  # the paper's Gaussian attacker: a huge random update
        new = w + np.random.default_rng(pid * 1000 + int(msg.content["config"]["server-round"])).normal(
            0.0, 200.0, size=DIM)
    else:
        x, y = client_data(pid)
        new = w.copy()
        for _ in range(5):  # local gradient steps on the mean squared error
            new -= 0.1 * (x.T @ (x @ new - y)) / len(y)
    content = RecordDict({"arrays": ArrayRecord({"w": flwr.app.Array(new.astype(np.float32))}),
                          "metrics": MetricRecord({"num-examples": 64, "byzantine": float(byzantine)})})
    return Message(content=content, reply_to=msg)


class Recording(ChainRule):
    """Also keeps, per round, which node ids sent Byzantine updates."""

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        self.byzantine_nodes = getattr(self, "byzantine_nodes", set()) | {
            m.metadata.src_node_id for m in replies if m.content["metrics"]["byzantine"] == 1.0}
        return super().aggregate_train(server_round, replies)


def test_l_nearest_leaves_byzantine_clients_out_of_a_flower_simulation(tmp_path):
    outcome = {}
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = Recording(rule="l-nearest", log_dir=str(tmp_path / "log"), fraction_evaluate=0.0,
                             min_train_nodes=CLIENTS, min_available_nodes=CLIENTS)
        initial = ArrayRecord({"w": flwr.app.Array(np.zeros(DIM, dtype=np.float32))})
        result = strategy.start(grid=grid, initial_arrays=initial, num_rounds=ROUNDS)
        outcome["strategy"], outcome["result"] = strategy, result

    run_simulation(server_app=server, client_app=client, num_supernodes=CLIENTS,
                   backend_config={"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 2}})
    strategy = outcome["strategy"]
    assert len(strategy.selections) == ROUNDS and len(strategy.byzantine_nodes) == BYZANTINE
    for selection in strategy.selections.values():
        assert len(selection) == CLIENTS // 2  # l = ceil(K/2)
        assert not set(selection) & strategy.byzantine_nodes
    w = outcome["result"].arrays["w"].numpy()
    assert np.linalg.norm(w - TRUE_W) < 0.5 * np.linalg.norm(TRUE_W)  # it learns despite 3 of 10 attackers

    verdict = verify_log(tmp_path / "log")
    assert verdict.ok and verdict.rounds == ROUNDS, str(verdict)
    assert np.array_equal(verdict.model.astype(np.float32), w)

    # The same vectors through the native rule, as a chain validator would run it
    # (Batch and aggregate from protocol/), and through a float reference.
    lines = [json.loads(x) for x in (tmp_path / "log" / "rounds.jsonl").read_text().splitlines()]
    for line in lines:
        data = np.load(tmp_path / "log" / f"round-{line['round']:06d}.npz")
        keys = tuple(bytes.fromhex(k[2:]) for k in line["keys"])
        batch = Batch(q=data["q"], norms=data["norms"], keys=keys, bits=20, round=line["round"] - 1)
        native = aggregate(batch, rule_params("l-nearest", {}, dim=DIM, holders=CLIENTS))
        assert [line["node_ids"][i] for i in native.selection] == line["selection"]
        u = data["q"] / 2.0**20
        cos = (u @ u.sum(axis=0)) / np.linalg.norm(u, axis=1)
        top = sorted(np.argsort(-cos, kind="stable")[:CLIENTS // 2])
        assert sorted(line["node_ids"][i] for i in top) == sorted(line["selection"])
