"""A Flower simulation with Byzantine clients, aggregated by LearningChain's l-nearest.

    python examples/flower_byzantine.py --out runs/flower [--clients 10 --byzantine 3 --rounds 5 --rule l-nearest]

Each client fits a linear model to its own noisy samples of y = x . w*; the first
``--byzantine`` clients send the paper's Gaussian attack (a random update of
standard deviation 200) instead. The strategy writes a verifiable log to
``OUT/log``; the script prints each round's selection, the distance of the final
model to w*, and the log's replay verdict.
"""

import argparse
import os
import sys

import numpy as np

os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.simulation import run_simulation  # noqa: E402

from learningchain.flower import ChainRule, verify_log  # noqa: E402

DIM = 8
TRUE_W = np.linspace(-1.0, 1.0, DIM)


def make_client(byzantine: int) -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        w = msg.content["arrays"]["w"].numpy().astype(np.float64)
        rnd = int(msg.content["config"]["server-round"])
        if pid < byzantine:
            new = w + np.random.default_rng([pid, rnd]).normal(0.0, 200.0, size=DIM)
        else:
            rng = np.random.default_rng(100 + pid)
            x = rng.normal(size=(64, DIM))
            y = x @ TRUE_W + 0.01 * rng.normal(size=64)
            new = w.copy()
            for _ in range(5):
                new -= 0.1 * (x.T @ (x @ new - y)) / len(y)
        content = RecordDict({"arrays": ArrayRecord({"w": Array(new.astype(np.float32))}),
                              "metrics": MetricRecord({"num-examples": 64})})
        return Message(content=content, reply_to=msg)

    return app


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--out", required=True, help="directory for the strategy's log")
    parser.add_argument("--clients", type=int, default=10, help="number of clients (default 10)")
    parser.add_argument("--byzantine", type=int, default=3, help="Byzantine clients among them (default 3)")
    parser.add_argument("--rounds", type=int, default=5, help="federated rounds (default 5)")
    parser.add_argument("--rule", default="l-nearest", help="a rule of learningchain.protocol.aggregation")
    args = parser.parse_args(argv)
    if not 0 <= args.byzantine < args.clients:
        parser.error("--byzantine must be in 0..clients-1")
    outcome = {}
    server = ServerApp()

    @server.main()
    def serve(grid: Grid, context: Context) -> None:
        strategy = ChainRule(rule=args.rule, log_dir=os.path.join(args.out, "log"), fraction_evaluate=0.0,
                             min_train_nodes=args.clients, min_available_nodes=args.clients)
        initial = ArrayRecord({"w": Array(np.zeros(DIM, dtype=np.float32))})
        outcome["result"] = strategy.start(grid=grid, initial_arrays=initial, num_rounds=args.rounds)
        outcome["strategy"] = strategy

    run_simulation(server_app=server, client_app=make_client(args.byzantine), num_supernodes=args.clients,
                   backend_config={"client_resources": {"num_cpus": 1}})
    strategy = outcome["strategy"]
    for rnd, selection in sorted(strategy.selections.items()):
        print(f"round {rnd}: {args.rule} selected {len(selection)} of {args.clients} updates")
    w = outcome["result"].arrays["w"].numpy()
    print(f"distance of the model to w*: {np.linalg.norm(w - TRUE_W):.4f} (start: {np.linalg.norm(TRUE_W):.4f})")
    verdict = verify_log(os.path.join(args.out, "log"))
    print(f"log: {verdict}")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
