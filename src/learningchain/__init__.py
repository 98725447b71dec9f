"""LearningChain: decentralized, privacy-preserving and Byzantine-tolerant
machine learning on a blockchain (Chen et al., IEEE BigData 2018).

The public surface is deliberately small; everything else is reachable through
the subpackages, whose layout follows the data flow (see docs/ARCHITECTURE.md).
"""

from .config import TrainConfig
from .errors import (
    ConfigError,
    DataError,
    DecodeError,
    InvalidBlock,
    InvalidMessage,
    LearningChainError,
    StoreError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "DecodeError",
    "InvalidBlock",
    "InvalidMessage",
    "LearningChainError",
    "StoreError",
    "RunSummary",
    "TrainConfig",
    "__version__",
    "run_training",
]


class RunSummary(dict):
    """The summary of a run (the dict written to ``summary.json``), with its run directory."""

    @property
    def run_dir(self):
        from pathlib import Path

        return Path(self["out"])


def run_training(config: "TrainConfig | dict | None" = None, *, model=None, model_args=None, data=None,
                 progress=None, on_round=None, **keys) -> RunSummary:
    """Run ``learningchain train`` from Python; returns the summary (a dict) with ``.run_dir``.

    ``config`` is a :class:`TrainConfig`, a dict of its keys, or nothing; ``keys`` set
    more keys (``rounds=50, holders=5``). A model of your own: ``model`` is a function
    that returns a ``torch.nn.Module`` (defined at the top level of an importable
    module, so that genesis can name it) or its import path ``"package.module:factory"``,
    with ``model_args`` its keyword arguments. Data of your own: ``data`` is a path (an
    ``.npz``, a ``.csv`` or ``"package.module:factory"``), arrays ``(x, y)`` or ``(x, y,
    x_test, y_test)``, a dict of them, or a ``torch.utils.data.Dataset``. See docs/CUSTOM.md.
    """
    # Imported when called: the top layer (torch, matplotlib, the data sets) stays out
    # of ``import learningchain``; the layers contract lists this one edge.
    import os
    from dataclasses import replace

    from .experiments.train import run_training as _run
    from .models.custom import factory_path_of

    if isinstance(config, TrainConfig):
        cfg = replace(config, **keys) if keys else config
    elif isinstance(config, dict) or config is None:
        cfg = TrainConfig.from_dict({**(config or {}), **keys})
    else:
        raise ConfigError(f"config must be a TrainConfig or a dict of its keys, got {type(config).__name__}")
    if model is not None:
        cfg = replace(cfg, model=model if isinstance(model, str) else factory_path_of(model))
    if model_args is not None:
        cfg = replace(cfg, model_args=dict(model_args))
    arrays = None
    if isinstance(data, (str, os.PathLike)):
        cfg = replace(cfg, data=os.fspath(data))
    elif data is not None:
        if cfg.data is not None or cfg.dataset not in ("synthetic", "user"):
            raise ConfigError(f"give data as arrays or in the config (dataset {cfg.dataset!r}, data "
                              f"{cfg.data!r}), not both")
        cfg, arrays = replace(cfg, dataset="user"), data
    return RunSummary(_run(cfg, progress=progress, on_round=on_round, data=arrays))
