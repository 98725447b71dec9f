"""The tables of ``learningchain grid`` and ``learningchain reproduce`` files,
declared like every other key and checked on load: ``[grid]`` (:class:`GridTable`)
and a figure's top level and ``[[panels]]`` (:class:`FigureTable`,
:class:`PanelTable`). The ``[train]`` keys inside them are :class:`TrainConfig`'s."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Optional

from ..errors import ConfigError
from .names import check_name
from .schema import check_types, key, refuse_unknown
from .train import TrainConfig

__all__ = ["GridTable", "FigureTable", "PanelTable", "GRID_MAX_WORKERS", "check_train_keys"]

#: The most grid processes at once.
GRID_MAX_WORKERS = 2

_G = "grid"


@dataclass(frozen=True)
class GridTable:
    """The ``[grid]`` table: attacks x aggregators x fractions x seeds."""

    attacks: tuple[str, ...] = key((), section="run", group=_G, help="holder attacks, one row each")
    aggregators: tuple[str, ...] = key((), section="run", group=_G, help="aggregation rules, one column each")
    fractions: tuple[float, ...] = key((), section="run", group=_G,
                                       help="Byzantine fractions of the K holders, in (0, 1), rounded down")
    name: Optional[str] = key(None, section="run", group=_G, help="the grid's name",
                              default_help="the file's name")
    seeds: tuple[int, ...] = key((0,), section="run", group=_G, help="seeds, one run of every cell each")
    workers: int = key(GRID_MAX_WORKERS, section="run", group=_G, help="processes at once")
    clean: bool = key(True, section="run", group=_G, help="also run every rule without attackers")
    f: object = key("byzantine", section="run", group=_G,
                    help="the f option of rules that have one: \"byzantine\" (the true count), \"default\" or an "
                         "integer")
    keep_chains: bool = key(False, section="run", group=_G, help="keep every cell's chain.sqlite")
    alphas: tuple[float, ...] = key((), section="run", group=_G,
                                    help="Dirichlet alphas of a non-IID axis: every cell once per alpha, with "
                                         "partition = \"dirichlet\" and dirichlet_alpha = alpha (see "
                                         "data/partition.py)", default_help="no axis: the [train] partition")

    def __post_init__(self) -> None:
        check_types(type(self), {f.name: getattr(self, f.name) for f in fields(self)}, where="[grid] ")
        for table, what in (("attacks", "attack"), ("aggregators", "aggregator")):
            if not getattr(self, table):
                raise ConfigError(f"[grid] {table} must be a non-empty list of {what} names")
            for name in getattr(self, table):
                check_name(what, name, where="[grid] ")
        if not self.fractions or not all(0 < x < 1 for x in self.fractions):
            raise ConfigError("[grid] fractions must be a non-empty list of numbers in (0, 1)")
        if not all(0 < x < float("inf") for x in self.alphas) or len(set(self.alphas)) != len(self.alphas):
            raise ConfigError("[grid] alphas must be a list of distinct numbers > 0")
        if not self.seeds:
            raise ConfigError("[grid] seeds must be a non-empty list of integers")
        if isinstance(self.workers, bool) or not 1 <= self.workers <= GRID_MAX_WORKERS:
            raise ConfigError(f"[grid] workers must be an integer from 1 to {GRID_MAX_WORKERS} (the cap on grid "
                              f"processes), got {self.workers!r}")
        f = self.f
        if not (f in ("byzantine", "default") or (isinstance(f, int) and not isinstance(f, bool) and f >= 0)):
            raise ConfigError(f"[grid] f must be \"byzantine\", \"default\" or an integer >= 0, got {f!r}")

    @classmethod
    def from_dict(cls, data: dict) -> "GridTable":
        clean = refuse_unknown(data, cls, "[grid] ")
        check_types(cls, clean, where="[grid] ")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in clean.items()})


@dataclass(frozen=True)
class PanelTable:
    """One ``[[panels]]`` entry of a figure: a base config and its curves."""

    id: str = key(section="run", group="figure", help="the panel's letter")
    title: str = key(section="run", group="figure", help="the panel's title ({key} is filled in from the config)")
    curves: tuple[dict, ...] = key(section="run", group="figure",
                                   help="the curves: label = \"...\" and the train keys that differ")
    config: dict = key(section="run", group="figure", factory=dict, help="train keys of every curve of the panel")
    quick: dict = key(section="run", group="figure", factory=dict, help="train keys of the quick variant")


@dataclass(frozen=True)
class FigureTable:
    """A figure file's top level."""

    name: str = key(section="run", group="figure", help="the figure's name (fig5, ...)")
    panels: tuple[dict, ...] = key(section="run", group="figure", help="the panels, [[panels]] tables")
    title: Optional[str] = key(None, section="run", group="figure", help="the figure's title",
                               default_help="its name")
    rows: int = key(1, section="run", group="figure", help="rows of panels")
    cols: Optional[int] = key(None, section="run", group="figure", help="columns of panels",
                              default_help="one per panel")
    defaults: dict = key(section="run", group="figure", factory=dict, help="train keys of every curve")
    quick: dict = key(section="run", group="figure", factory=dict, help="train keys of the quick variant")

    @classmethod
    def check(cls, spec: dict, source: str) -> dict:
        """``spec`` (a figure file) after checking every table and key in it."""
        where = f"{source}: "
        _typed(cls, spec, where)
        check_train_keys(spec.get("defaults", {}), f"{where}[defaults] ", extra=("seeds",))
        check_train_keys(spec.get("quick", {}), f"{where}[quick] ", extra=("seeds",))
        for panel in spec["panels"]:
            at = f"{where}panel {panel.get('id') if isinstance(panel, dict) else panel!r}: "
            if not isinstance(panel, dict):
                raise ConfigError(f"{at}a panel must be a table")
            _typed(PanelTable, panel, at)
            if not panel["curves"]:
                raise ConfigError(f"{at}has no curves")
            check_train_keys(panel.get("config", {}), f"{at}config ", extra=("seeds",))
            check_train_keys(panel.get("quick", {}), f"{at}quick ", extra=("seeds",))
            for curve in panel["curves"]:
                if not isinstance(curve, dict) or not isinstance(curve.get("label"), str):
                    raise ConfigError(f"{at}every curve is a table with a label string, got {curve!r}")
                check_train_keys(curve, f"{at}curve {curve['label']!r}: ", extra=("label", "quick", "seeds"))
                check_train_keys(curve.get("quick", {}), f"{at}curve {curve['label']!r} quick: ",
                                 extra=("seeds",))
        return spec


def _typed(cls, data: dict, where: str) -> None:
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"{where}unknown keys {unknown}; known: {', '.join(f.name for f in fields(cls))}")
    missing = [f.name for f in fields(cls)
               if f.name not in data and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ConfigError(f"{where}missing {', '.join(missing)}")
    check_types(cls, data, where=where)


def check_train_keys(data, where: str, *, extra: tuple = ()) -> None:
    """Refuse a table that is not one, or a key of it that is no train key (nor one of ``extra``)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}must be a table of train keys, got {data!r}")
    try:
        refuse_unknown({k: v for k, v in data.items() if k not in extra}, TrainConfig, "")
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    if "seeds" in extra and "seeds" in data:
        seeds = data["seeds"]
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                               for s in seeds):
            raise ConfigError(f"{where}seeds must be a non-empty list of integers, got {seeds!r}")
