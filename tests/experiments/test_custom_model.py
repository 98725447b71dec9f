"""A user-defined model and data set train through the chain from the CLI and from
Python, `chain verify` rebuilds the model genesis names and replays the chain, and
hostile or mistaken factories are refused with a message that names the fault."""

import hashlib
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import learningchain
from learningchain.cli.main import main
from learningchain.config import TrainConfig
from learningchain.errors import ConfigError
from learningchain.models import build_model, loss_fn, num_params
from learningchain.node.verify import verify_chain
from learningchain.parties import build_chain_setup

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SMALL = {"holders": 3, "rounds": 4, "no_dp": True, "difficulty": 2, "progress": False}


@pytest.fixture
def examples_dir(monkeypatch):
    """The working directory is examples/, as in docs/CUSTOM.md (custom_cnn.py sits beside the user)."""
    monkeypatch.chdir(EXAMPLES)
    monkeypatch.syspath_prepend(str(EXAMPLES))
    yield EXAMPLES
    sys.modules.pop("custom_cnn", None)


def _module(tmp_path, monkeypatch, name: str, body: str) -> str:
    """A user's module ``name`` in tmp_path, importable; returns its directory."""
    (tmp_path / f"{name}.py").write_text("import torch\nfrom torch import nn\n" + textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)
    return str(tmp_path)


def _shapes_hash(model) -> str:
    shapes = [list(p.shape) for p in model.parameters()]
    return hashlib.sha256(json.dumps(shapes, separators=(",", ":")).encode()).hexdigest()


def test_python_api_trains_a_user_cnn_on_arrays_and_verify_replays_it(examples_dir, tmp_path):
    from custom_cnn import make_arrays, make_cnn

    x, y = make_arrays(150)
    summary = learningchain.run_training(model=make_cnn, model_args={"channels": 2}, data=(x, y),
                                         out=str(tmp_path / "run"), **SMALL)
    assert summary.run_dir == tmp_path / "run" and summary["height"] == 4
    spec = summary["model"]
    reference = make_cnn(channels=2)  # the factory called directly: what genesis must record
    assert spec["factory"] == "custom_cnn:make_cnn" and spec["args"] == {"channels": 2}
    assert spec["params"] == num_params(reference) == 2 * 9 + 2 + 2 * 16 * 3 + 3
    assert spec["shapes"] == _shapes_hash(reference) and spec["input_shape"] == [1, 8, 8]
    assert spec["loss"] == "cross-entropy" and spec["classes"] == 3
    report = verify_chain(summary.run_dir, trust_model_code="custom_cnn:make_cnn")
    assert report.ok and report.checked == 4 and report.not_replayed == "", report.describe()
    untrusted = verify_chain(summary.run_dir)
    assert untrusted.ok and "was not rebuilt" in untrusted.not_replayed and "--trust-model-code" in \
        untrusted.not_replayed


def test_cli_trains_a_user_cnn_on_an_npz_and_verify_rebuilds_it(examples_dir, tmp_path, capsys):
    from custom_cnn import make_arrays

    x, y = make_arrays(150, seed=1)
    np.savez(tmp_path / "bars.npz", x=x, y=y)
    out = tmp_path / "cli"
    argv = ["train", "--data", str(tmp_path / "bars.npz"), "--model", "custom_cnn:make_cnn", "--model-arg",
            "channels=3", "--holders", "3", "--rounds", "4", "--no-dp", "--difficulty", "2", "--quiet",
            "--out", str(out), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"]["args"] == {"channels": 3} and summary["dataset"].startswith("bars.npz: 120 train / 30")
    assert main(["chain", "verify", str(out), "--trust-model-code", "custom_cnn:make_cnn"]) == 0
    assert capsys.readouterr().out.startswith("OK: 4 blocks verified by full replay from genesis")
    # the same model from the TOML [train] table gives the same genesis
    (tmp_path / "run.toml").write_text(f'[train]\ndata = "{tmp_path / "bars.npz"}"\nmodel = "custom_cnn:make_cnn"\n'
                                       'model_args = {channels = 3}\nholders = 3\nrounds = 4\nno_dp = true\n'
                                       'difficulty = 2\n')
    from learningchain.config import load_toml

    cfg = TrainConfig.from_dict(load_toml(str(tmp_path / "run.toml")))
    assert build_chain_setup(cfg).genesis.hash.hex() == summary["genesis_hash"].removeprefix("0x")
    # and from Python with the file's path: the same chain, block for block (a seeded run)
    same = learningchain.run_training(TrainConfig(holders=3, rounds=4, no_dp=True, difficulty=2, progress=False),
                                      model="custom_cnn:make_cnn", model_args={"channels": 3},
                                      data=tmp_path / "bars.npz", out=str(tmp_path / "py"))
    assert (same["genesis_hash"], same["head_hash"]) == (summary["genesis_hash"], summary["head_hash"])


def test_verify_refuses_when_the_module_is_gone_or_builds_other_shapes(tmp_path, monkeypatch):
    (tmp_path / "code").mkdir()
    code = _module(tmp_path / "code", monkeypatch, "lc_user_net", """
        class Net(nn.Module):
            def __init__(self, a, b):
                super().__init__()
                self.w = nn.Parameter(torch.full((a, b), 0.01))
            def forward(self, x):
                return x @ self.w
        def make(a=4, b=2):
            return Net(a, b)
    """)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    summary = learningchain.run_training(model="lc_user_net:make", data=(x, y), out=str(tmp_path / "run"), **SMALL)
    assert summary["model"]["loss"] == "cross-entropy" and summary["model"]["params"] == 8
    assert verify_chain(tmp_path / "run", trust_model_code="lc_user_net:make").ok
    # trust names one factory: a genesis naming any other is refused before anything is imported
    sys.modules.pop("lc_user_net", None)
    report = verify_chain(tmp_path / "run", trust_model_code="subprocess:getoutput")
    assert not report.ok and report.first_bad_height == 0 and "lc_user_net" not in sys.modules
    assert "genesis names model factory 'lc_user_net:make', not the 'subprocess:getoutput' you trust" in report.error
    # same parameter count, other shapes: (2, 4) instead of (4, 2)
    source = (Path(code) / "lc_user_net.py").read_text().replace("def make(a=4, b=2)", "def make(a=2, b=4)")
    (Path(code) / "lc_user_net.py").write_text(source)
    sys.modules.pop("lc_user_net", None)
    report = verify_chain(tmp_path / "run", trust_model_code="lc_user_net:make")
    assert not report.ok and report.first_bad_height == 0
    assert "now builds 8 parameters" in report.error and "the code differs" in report.error
    # the module gone
    (Path(code) / "lc_user_net.py").unlink()
    sys.modules.pop("lc_user_net", None)
    report = verify_chain(tmp_path / "run", trust_model_code="lc_user_net:make")
    assert not report.ok and "cannot import module 'lc_user_net'" in report.error, report.error
    # without --trust-model-code nothing is imported: the chain itself still replays
    report = verify_chain(tmp_path / "run")
    assert report.ok and "'lc_user_net:make' named in genesis was not rebuilt" in report.describe()


def test_one_logit_on_two_classes_is_binary_cross_entropy(tmp_path, monkeypatch):
    _module(tmp_path, monkeypatch, "lc_user_bin", """
        def one(inputs=3):
            return nn.Linear(inputs, 1)
        def two(inputs=3):
            return nn.Linear(inputs, 2)
    """)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    y = (x.sum(1) > 0).astype(np.int64)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    specs = {}
    for name in ("one", "two"):
        cfg = TrainConfig(data=str(tmp_path / "d.npz"), model=f"lc_user_bin:{name}", holders=2, rounds=1)
        specs[name] = build_chain_setup(cfg).spec
    assert specs["one"]["loss"] == "binary" and specs["two"]["loss"] == "cross-entropy"
    out = torch.tensor([[0.3], [-1.2]])
    target = torch.tensor([1, 0])
    expected = F.binary_cross_entropy_with_logits(out.squeeze(1), target.float(), reduction="none")
    assert torch.allclose(loss_fn(specs["one"])(out, target), expected)
    model = build_model(specs["one"])
    assert isinstance(model, torch.nn.Module) and num_params(model) == 4


HOSTILE = {
    "returns an int": ("def f():\n    return 3\n", "returned int, not a torch.nn.Module"),
    "integer parameters": ("class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                           "        self.w = nn.Parameter(torch.zeros(3, dtype=torch.int64), requires_grad=False)\n"
                           "def f():\n    return M()\n", "not a float tensor"),
    "frozen parameter": ("def f():\n    m = nn.Linear(4, 2)\n    m.bias.requires_grad_(False)\n    return m\n",
                         "'bias' is frozen"),
    "buffers": ("def f():\n    return nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2))\n",
                "has buffers .*running_mean"),
    "no parameters": ("def f():\n    return nn.ReLU()\n", "no parameters"),
    "raises": ("def f():\n    raise RuntimeError('boom')\n", "raised RuntimeError: boom"),
    "wrong output width": ("def f():\n    return nn.Linear(4, 5)\n", "returns 5 logits per example, the data has 2"),
    "wrong input shape": ("def f():\n    return nn.Linear(7, 2)\n", "cannot take examples of shape \\(4,\\)"),
    "not callable": ("f = 3\n", "is a int, not a callable"),
    "unknown argument": ("def f():\n    return nn.Linear(4, 2)\n", "does not take the arguments"),
    "no such attribute": ("def g():\n    return nn.Linear(4, 2)\n", "has no attribute 'f'"),
    "import fails": ("raise ImportError('half installed')\n", "importing 'lc_hostile_.*' failed: ImportError"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_factories_are_refused_with_what_is_wrong(case, tmp_path, monkeypatch):
    body, match = HOSTILE[case]
    name = "lc_hostile_" + case.replace(" ", "_")
    _module(tmp_path, monkeypatch, name, body)
    x = np.random.default_rng(2).standard_normal((20, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(20) % 2)
    args = {"width": 3} if case == "unknown argument" else {}
    cfg = TrainConfig(data=str(tmp_path / "d.npz"), model=f"{name}:f", model_args=args, holders=2, rounds=1)
    with pytest.raises(ConfigError, match=match):
        build_chain_setup(cfg)


def test_bad_model_names_and_arguments_are_refused_before_anything_loads(tmp_path):
    with pytest.raises(ConfigError, match="not an import path"):
        TrainConfig(model="my model:make")
    with pytest.raises(ConfigError, match="unknown model 'transformer'"):
        TrainConfig(model="transformer")
    with pytest.raises(ConfigError, match="model_args applies to a package.module:factory model"):
        TrainConfig(model="logistic", model_args={"width": 3})
    with pytest.raises(ConfigError, match="must be plain values"):
        TrainConfig(model="m:f", model_args={"w": float("nan")})
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2)), y=[0, 1, 0, 1])
    with pytest.raises(ConfigError, match="cannot import module 'lc_no_such_module'"):
        build_chain_setup(TrainConfig(model="lc_no_such_module:f", data=str(tmp_path / "d.npz"), holders=2,
                                      rounds=1))
    with pytest.raises(ConfigError, match="cannot be named by an import path"):
        learningchain.run_training(model=lambda: torch.nn.Linear(2, 2), data=(np.zeros((4, 2)), [0, 1, 0, 1]))
    assert main(["train", "--model-arg", "width", "--model", "m:f"]) == 2  # KEY=VALUE expected


def _doc_blocks(kind: str) -> str:
    """The fenced block after ``<!-- custom-doc-test: KIND -->`` in docs/CUSTOM.md."""
    text = (EXAMPLES.parent / "docs" / "CUSTOM.md").read_text()
    after = text.split(f"<!-- custom-doc-test: {kind} -->", 1)[1]
    return after.split("```", 2)[1].split("\n", 1)[1]


@pytest.mark.slow
def test_the_commands_of_docs_custom_run_as_written(tmp_path, monkeypatch, capsys):
    import runpy
    import shlex

    (tmp_path / "custom_cnn.py").write_text((EXAMPLES / "custom_cnn.py").read_text())  # the doc's copy
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("custom_cnn", None)
    try:
        for line in _doc_blocks("sh").strip().splitlines():
            argv = shlex.split(line)
            if argv[:2] == ["python", "custom_cnn.py"]:
                monkeypatch.setattr(sys, "argv", argv[1:])
                runpy.run_path("custom_cnn.py", run_name="__main__")
            else:
                assert argv[0] == "learningchain" and main(argv[1:]) == 0, line
        printed = capsys.readouterr().out
        assert "test error                    0.0917" in printed and "baseline test error           0.1000" in printed
        assert "OK: 40 blocks verified by full replay from genesis to head 40" in printed
        exec(compile(_doc_blocks("python"), "CUSTOM.md", "exec"), {})
        assert capsys.readouterr().out.strip() == "0.09166666666666666 bars-py"
        assert main(["chain", "verify", "bars-py", "--trust-model-code", "custom_cnn:make_cnn"]) == 0
    finally:
        sys.modules.pop("custom_cnn", None)


def test_data_from_a_factory_is_the_same_as_its_arrays(examples_dir, tmp_path, monkeypatch):
    from custom_cnn import make_arrays

    setup = build_chain_setup(TrainConfig(data="custom_cnn:bars_dataset", model="custom_cnn:make_cnn", holders=3,
                                          rounds=1, seed=4))
    x, y = make_arrays()
    order = np.random.default_rng([4, 0xDA7A]).permutation(len(y))  # the documented split
    np.testing.assert_array_equal(setup.dataset.x_test, x[order[:120]].reshape(120, 64))
    np.testing.assert_array_equal(setup.dataset.y_train, y[order[120:]])
    assert setup.params.meta["data"]["source"] == "custom_cnn:bars_dataset"
    _module(tmp_path, monkeypatch, "lc_bad_data", "def broken():\n    raise OSError('disk gone')\n"
                                                   "def scalar():\n    return 7\n")
    from learningchain.errors import DataError

    with pytest.raises(DataError, match="data factory 'lc_bad_data:broken' raised OSError: disk gone"):
        build_chain_setup(TrainConfig(data="lc_bad_data:broken", holders=2, rounds=1))
    with pytest.raises(DataError, match="expected a torch.utils.data.Dataset"):
        build_chain_setup(TrainConfig(data="lc_bad_data:scalar", holders=2, rounds=1))
    with pytest.raises(ConfigError, match="data factory 'lc_bad_data:missing'.*has no attribute"):
        build_chain_setup(TrainConfig(data="lc_bad_data:missing", holders=2, rounds=1))
