"""Every key of every command (train, node, network up, grid, reproduce) is
accepted with a valid value, refused with a value of the wrong type, and either
changes what runs or is refused by the command that would ignore it."""

import importlib
import inspect
import pkgutil
from dataclasses import MISSING, fields
from typing import get_type_hints

import pytest

from learningchain.cli.main import _load_extensions, build_parser, train_config_from_args
from learningchain.cli.netcmd import _load
from learningchain.cli.options import option_name
from learningchain.config import NetworkConfig, TrainConfig, load_net_config
from learningchain.config.files import _toml_value
from learningchain.config.tables import FigureTable, GridTable, PanelTable
from learningchain.errors import ConfigError
from learningchain.experiments import reproduce
from learningchain.experiments.grid import grid_cells, load_grid
import learningchain.network
from learningchain.parties import network_setup

from ..test_config_types import _wrong_values
from .keys import FIGURE, GRID, NETWORK, PANEL, TRAIN

TABLES = [(TrainConfig, TRAIN), (NetworkConfig, NETWORK), (GridTable, GRID), (FigureTable, FIGURE),
          (PanelTable, PANEL)]


def _plain(value):
    """A config value as TOML gives it back (tuples as lists)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _sets(values: dict) -> list:
    return [a for k, v in values.items() for a in ("--set", f"{k}={_toml_value(v)}")]


def _parse(argv):
    _load_extensions()
    return build_parser().parse_args(argv)


def _field(cls, name):
    return cls.__dataclass_fields__[name]


@pytest.mark.parametrize("cls,table", TABLES, ids=lambda x: getattr(x, "__name__", ""))
def test_every_declared_key_has_a_valid_value_in_the_walk(cls, table):
    assert set(table) == {f.name for f in fields(cls)}
    for name, (value, _) in table.items():
        f = _field(cls, name)
        assert f.metadata["help"].strip(), name
        if f.default is MISSING and f.default_factory is MISSING:
            continue  # a required key: no default to differ from
        default = f.default_factory() if f.default is MISSING else f.default
        assert _plain(default) != value, f"{name}: the walk needs a value other than the default"


# -- train --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TRAIN))
def test_train_takes_every_key_it_honours_and_refuses_the_others(name, tmp_path):
    value, extra = TRAIN[name]
    value = str(tmp_path / "o") if value == "OUT" else value
    f = _field(TrainConfig, name)
    argv = ["train", *_sets({**extra, name: value})]
    if "train" in f.metadata["honoured_by"]:
        assert _plain(getattr(train_config_from_args(_parse(argv)), name)) == value
    else:
        with pytest.raises(ConfigError, match=f"^{name} = .* is not used by this run"):
            train_config_from_args(_parse(argv))
    if "train" in f.metadata["option"]:  # the generated option sets the same key
        option = [option_name(f)] if get_type_hints(TrainConfig)[name] in (bool, "Optional[bool]") or isinstance(
            value, bool) else [option_name(f), str(value)]
        if isinstance(value, dict):  # a table option takes its entries one by one: --model-arg KEY=VALUE
            option = [a for k, v in value.items() for a in (option_name(f), f"{k}={_toml_value(v)}")]
        cfg = train_config_from_args(_parse(["train", *_sets(extra), *option]))
        assert _plain(getattr(cfg, name)) == value


@pytest.mark.parametrize("name", sorted(TRAIN))
def test_train_refuses_a_value_of_the_wrong_type_naming_the_key(name, tmp_path):
    path = tmp_path / "bad.toml"
    for bad in _wrong_values(get_type_hints(TrainConfig)[name]):
        path.write_text(f"{name} = {_toml_value(bad)}\n")
        with pytest.raises(ConfigError, match=f"^{name} must be"):
            train_config_from_args(_parse(["train", "--config", str(path)]))


@pytest.mark.parametrize("text, stray", [
    ("epsilon = 0.01\n[train]\ndataset = \"synthetic\"\n", "['epsilon']"),  # a top-level key beside [train]
    ("[train]\ndataset = \"synthetic\"\n[trian]\nepsilon = 0.01\n", "['trian']"),  # a misspelt table
    ("[train]\nholders = 4\n[network]\nbudget = 1.0\n", "['network']"),  # a network's table
])
def test_train_refuses_a_config_file_key_beside_its_train_table(text, stray, tmp_path):
    # such keys were dropped without a word: epsilon = 0.01 ran at the default 0.1 a round
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"\[" + stray[1:-1] + r"\] beside the \[train\] table would be ignored"):
        train_config_from_args(_parse(["train", "--config", str(path)]))
    # the same keys in the [train] table, or at the top level alone, are read
    path.write_text("[train]\nepsilon = 0.01\n")
    assert train_config_from_args(_parse(["train", "--config", str(path)])).epsilon == 0.01
    path.write_text("epsilon = 0.01\n")
    assert train_config_from_args(_parse(["train", "--config", str(path)])).epsilon == 0.01


# -- node and network up ----------------------------------------------------------------------
def _net_load(argv):
    return _load(_parse(argv))


@pytest.mark.parametrize("command", [["node", "--data-dir", "DIR"], ["network", "up", "--nodes", "2"]])
def test_node_and_network_up_take_every_key_or_refuse_it(command, tmp_path):
    command = [str(tmp_path / "n") if a == "DIR" else a for a in command]
    for name, (value, extra) in TRAIN.items():
        value = str(tmp_path / "o") if value == "OUT" else value
        f = _field(TrainConfig, name)
        argv = command + _sets({**extra, name: value})
        if "network" in f.metadata["honoured_by"]:
            assert _plain(getattr(_net_load(argv).train, name)) == value, name
        else:
            keys = "|".join([name, *extra])  # the key, or a key it needs that nodes ignore as well
            with pytest.raises(ConfigError, match=f"^\\[train\\] ({keys}) = .* is not used by this run"):
                _net_load(argv)
    for name, (value, extra) in NETWORK.items():
        sets = _sets({f"network.{k}": v for k, v in {**extra, name: value}.items()})
        assert _plain(getattr(_net_load(command + sets).network, name)) == value, name
        f = _field(NetworkConfig, name)
        wanted = "node" if command[0] == "node" else "chain"
        if f.metadata["option"] and (wanted in f.metadata["option"] or "chain" in f.metadata["option"]):
            argv = command + _sets({f"network.{k}": v for k, v in extra.items()}) + [option_name(f), str(value)]
            assert _plain(getattr(_net_load(argv).network, name)) == value, name


@pytest.mark.parametrize("name", sorted(NETWORK))
def test_a_network_key_of_the_wrong_type_is_refused_naming_it(name, tmp_path):
    path = tmp_path / "net.toml"
    for bad in _wrong_values(get_type_hints(NetworkConfig)[name]):
        path.write_text(f"[network]\n{name} = {_toml_value(bad)}\n")
        with pytest.raises(ConfigError, match=f"^\\[network\\] {name} must be"):
            _net_load(["node", "--data-dir", str(tmp_path / "n"), "--config", str(path)])


def test_every_network_key_changes_the_genesis_or_is_read_by_the_node_processes():
    """Consensus keys change the genesis every node builds; policy keys are read by the drivers."""
    sources = "".join(inspect.getsource(importlib.import_module(f"learningchain.network.{m.name}"))
                      for m in pkgutil.iter_modules(learningchain.network.__path__))
    small = {"dataset": "breast-cancer", "holders": 4, "rounds": 2}
    base = network_setup(load_net_config(None, train_overrides=small)).genesis.hash
    for name, (value, extra) in NETWORK.items():
        f = _field(NetworkConfig, name)
        if f.metadata["section"] == "chain" and name != "consensus":
            overrides = {**extra, name: value}
            other = network_setup(load_net_config(None, train_overrides=small, network_overrides=overrides))
            try:  # the genesis of the keys it needs alone, where they make a chain without it
                before = network_setup(load_net_config(None, train_overrides=small, network_overrides=extra))
                before = before.genesis.hash
            except ConfigError:
                before = base
            assert other.genesis.hash != before, name
        else:
            assert f".{name}" in sources, f"[network] {name} is read by no driver"


# -- grid --------------------------------------------------------------------------------------
GRID_BASE = {"attacks": ["gaussian"], "aggregators": ["l-nearest"], "fractions": [0.5]}
GRID_TRAIN = "[train]\ndataset = \"breast-cancer\"\nholders = 4\nrounds = 2\n"


def _grid_file(tmp_path, grid: dict, train: str = GRID_TRAIN):
    path = tmp_path / "grid.toml"
    path.write_text("[grid]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in grid.items()) + train)
    return path


@pytest.mark.parametrize("name", sorted(GRID))
def test_every_grid_key_is_taken_changes_the_grid_and_a_wrong_type_is_refused(name, tmp_path):
    value, extra = GRID[name]
    base = load_grid(_grid_file(tmp_path, {**GRID_BASE, **extra}))
    spec = load_grid(_grid_file(tmp_path, {**GRID_BASE, **extra, name: value}))
    assert _plain(getattr(spec, name)) == value
    assert (spec, grid_cells(spec)) != (base, grid_cells(base))
    tp = get_type_hints(GridTable)[name]
    for bad in ([2.5, True, ["byzantine"], "many"] if tp is object else _wrong_values(tp)):
        with pytest.raises(ConfigError, match=f"\\[grid\\] {name} must be"):
            load_grid(_grid_file(tmp_path, {**GRID_BASE, name: bad}))


def test_every_train_key_of_a_grid_reaches_its_cells_or_is_refused(tmp_path):
    small = {"dataset": "breast-cancer", "holders": 4, "rounds": 2}
    set_by_grid = {"byzantine", "attack", "aggregator", "attack_options", "aggregator_options", "seed", "out", "force"}
    for name, (value, extra) in TRAIN.items():
        value = str(tmp_path / "o") if value == "OUT" else value
        train = {**small, **extra, name: value}
        path = _grid_file(tmp_path, GRID_BASE, "[train]\n" + "".join(f"{k} = {_toml_value(v)}\n"
                                                                     for k, v in train.items()))
        ignored = [k for k in (name, *extra) if "train" not in _field(TrainConfig, k).metadata["honoured_by"]]
        if set_by_grid & set(train):
            with pytest.raises(ConfigError, match="must not set"):
                load_grid(path)
        elif ignored:
            with pytest.raises(ConfigError, match=f"({'|'.join(ignored)}) = .* is not used by this run"):
                load_grid(path)
        else:
            assert all(_plain(c.config[name]) == value for c in grid_cells(load_grid(path))), name


# -- reproduce ---------------------------------------------------------------------------------
def _figure(**changes):
    spec = {"name": "figt", "panels": [{"id": "a", "title": "(a)", "curves": [{"label": "one"}]}]}
    spec.update(changes)
    return spec


@pytest.mark.parametrize("cls,table", [(FigureTable, FIGURE), (PanelTable, PANEL)], ids=["figure", "panel"])
def test_every_figure_and_panel_key_is_taken_changes_the_runs_or_the_plot_and_a_wrong_type_is_refused(
        cls, table, tmp_path):
    plotted = inspect.getsource(reproduce.plot_figure)
    for name, (value, _) in table.items():
        if cls is FigureTable:
            spec = _figure(**{name: value})
        else:
            panel = {"id": "a", "title": "(a)", "curves": [{"label": "one"}], name: value}
            spec = _figure(panels=[panel])
        FigureTable.check(spec, "test")
        jobs = reproduce.figure_jobs(spec, quick=name == "quick", out=tmp_path)
        base = reproduce.figure_jobs(_figure(), quick=name == "quick", out=tmp_path)
        changed = [(j.figure, j.panel, j.panel_title, j.curve, j.config) for j in jobs] != \
                  [(j.figure, j.panel, j.panel_title, j.curve, j.config) for j in base]
        assert changed or f'"{name}"' in plotted, f"{name} changes neither the runs nor the plot"
        for bad in _wrong_values(get_type_hints(cls)[name]):
            bad_spec = _figure(**{name: bad}) if cls is FigureTable else _figure(
                panels=[{"id": "a", "title": "(a)", "curves": [{"label": "one"}], name: bad}])
            with pytest.raises(ConfigError, match=f"{name} must be"):
                FigureTable.check(bad_spec, "test")


def test_a_figure_refuses_a_train_key_train_would_ignore(tmp_path):
    spec = _figure(defaults={"consensus": "poa"})
    with pytest.raises(ConfigError, match="consensus = 'poa' is not used by this run"):
        reproduce.figure_jobs(FigureTable.check(spec, "test"), quick=False, out=tmp_path)
    with pytest.raises(ConfigError, match="unknown option 'speed'"):
        FigureTable.check(_figure(defaults={"speed": 1}), "test")


@pytest.mark.parametrize("name", sorted(TRAIN))
def test_on_the_ethereum_backend_train_takes_the_keys_it_honours_and_refuses_the_others(name, tmp_path):
    value, extra = TRAIN[name]
    value = str(tmp_path / "o") if value == "OUT" else value
    values = {"backend": "ethereum", **extra, name: value}
    argv = ["train", *_sets(values)]
    ignored = [k for k in values if "ethereum" not in _field(TrainConfig, k).metadata["honoured_by"]]
    if name == "aggregator":
        with pytest.raises(ConfigError, match="the Ethereum backend implements l-nearest only"):
            train_config_from_args(_parse(argv))
    elif ignored:
        with pytest.raises(ConfigError, match=f"^({'|'.join(ignored)}) = .* is not used by this run: on the Ethereum"):
            train_config_from_args(_parse(argv))
    else:
        assert _plain(getattr(train_config_from_args(_parse(argv)), name)) == value
