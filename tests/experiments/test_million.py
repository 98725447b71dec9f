"""A model of a million parameters through the chain: the built-in wide MLP, and the
run options that bound what the in-process nodes hold (at d = 1,000,000 a round's
100 messages are 400 MB of integers and as much again of encodings)."""

import gc

import numpy as np
import pytest
import torch

from learningchain.cli.main import main
from learningchain.config import TrainConfig
from learningchain.errors import ConfigError
from learningchain.experiments.native import NativeBackend
from learningchain.experiments.train import build_parties, run_training
from learningchain.models import build_model, num_params
from learningchain.protocol.message import Message

SMALL = dict(dataset="synthetic", model="mlp", hidden=(20,), holders=6, difficulty=2, no_dp=True,
             clip_mode="per-example", progress=False)


def _alive() -> list:
    gc.collect()
    return [o for o in gc.get_objects() if type(o) is Message]


def _rounds_alive(before: frozenset = frozenset()) -> set:
    """Rounds of the messages alive, leaving out those alive before the run (``before``: their ids;
    earlier tests in the same process may hold some)."""
    return {o.round for o in _alive() if id(o) not in before}


def test_keep_bodies_and_mempool_bases_bound_what_nodes_hold(tmp_path):
    """With keep_bodies = mempool_bases = 2 (and chain.sqlite pruned at depth 2) only the
    messages of the last 3 rounds stay alive; before, keep_bodies below verify_last + 2 (8) was raised to 8 in every run
    and the nodes' shared body-check cache held its last 64 blocks, messages and all."""
    rounds = 12
    heads = {}
    for keep in (2, None):
        # pruned: chain.sqlite's cache of 4 decoded blocks drops a block's messages with its body
        opts = dict(keep_bodies=keep, mempool_bases=2, prune=True) if keep is not None else {}
        held = _alive()  # kept referenced, so that no new message takes one of their ids
        before = frozenset(id(o) for o in held)
        cfg = TrainConfig(**SMALL, rounds=rounds, finality_depth=2, **opts).resolved()
        parties = build_parties(cfg)
        (tmp_path / f"keep-{keep}").mkdir()
        backend = NativeBackend(cfg, parties, tmp_path / f"keep-{keep}")
        for _ in range(rounds):
            backend.step()
        heads[keep] = backend.head.hash
        # chain.sqlite writes behind: a block waiting for its writer (at most one) holds its
        # messages until it is written and pruned; count what stays once it is
        backend.archive.store.flush()
        if keep is not None:
            assert _rounds_alive(before) <= set(range(rounds - keep - 1, rounds))
            for miner in backend.miners:
                assert len(miner.node.mempool._by_base) <= 2
        else:  # the defaults (16 bodies, 16 bases) hold every round of this short run
            assert _rounds_alive(before) == set(range(rounds))
        backend.archive.store.close()
        del backend, parties
    assert heads[2] == heads[None]  # what a node keeps is local: the chain is the same


def test_mempool_bases_is_checked():
    with pytest.raises(ConfigError, match="mempool_bases must be >= 1"):
        TrainConfig(**SMALL, mempool_bases=0)


def test_the_built_in_wide_mlp_has_a_million_parameters():
    spec = {"kind": "mlp", "inputs": 784, "classes": 10, "hidden": [1024, 256]}
    model = build_model(spec)
    expected = 784 * 1024 + 1024 + 1024 * 256 + 256 + 256 * 10 + 10
    assert num_params(model) == expected == 1_068_810
    assert isinstance(model(torch.zeros(2, 784)), torch.Tensor)


def test_a_million_parameter_run_goes_through_the_chain_and_verifies(tmp_path, capsys):
    """Two holders, two rounds of the 784-1024-256-10 MLP on MNIST, pruned chain:
    `chain verify` replays it with the built-in model (no --trust-model-code)."""
    out = tmp_path / "run"
    summary = run_training(TrainConfig(dataset="mnist", model="mlp", hidden=(1024, 256), holders=2, rounds=3,
                                       no_dp=True, clip_mode="per-example", difficulty=2, finality_depth=1,
                                       prune=True, keep_bodies=1, mempool_bases=1, eval_every=3,
                                       progress=False, out=str(out)))
    assert summary["parameters"] == 1_068_810 and summary["height"] == 3
    assert np.isfinite(summary["test_error"])
    capsys.readouterr()
    assert main(["chain", "verify", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("OK") and "checked by header only" in text


def test_a_built_in_model_past_the_chains_size_is_refused_before_it_is_allocated(capsys, tmp_path):
    from learningchain.models import model_spec
    from learningchain.types import MAX_DIM  # what genesis refuses too
    # 12 billion parameters: torch tried to allocate 48 GB and failed with a traceback
    with pytest.raises(ConfigError, match=r"model 'mlp' with these options has 12,000,000,001 parameters; a "
                                          r"chain's model has at most 4,194,304"):
        build_model(model_spec("mlp", 10, 2, hidden=[1_000_000_000]))
    # the edge: (10 + 1) * h + h + 1 parameters
    h = (MAX_DIM - 1) // 12
    assert num_params(build_model(model_spec("mlp", 10, 2, hidden=[h]))) == 12 * h + 1 <= MAX_DIM
    with pytest.raises(ConfigError, match=f"has {12 * (h + 1) + 1:,} parameters"):
        build_model(model_spec("mlp", 10, 2, hidden=[h + 1]))
    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--model", "mlp", "--set", "hidden=[1000000000]",
                 "--rounds", "2", "--holders", "4", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "has 12,000,000,001 parameters" in err and "Traceback" not in err and not out.exists()
