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
    "TrainConfig",
    "__version__",
    "run_training",
]


def run_training(config: "TrainConfig", **kwargs):
    """Run ``learningchain train`` from Python; returns the summary dict."""
    # Imported when called: the top layer (torch, matplotlib, the data sets) stays out
    # of ``import learningchain``; the layers contract lists this one edge.
    from .experiments.train import run_training as _run

    return _run(config, **kwargs)
