"""LearningChain's Byzantine-tolerant rules for Flower users.

``ChainRule`` (needs ``flwr``, the ``flower`` extra) is a Flower strategy that
aggregates with l-nearest or another exact rule of the chain; ``verify_log``
replays the log it writes. See docs/FLOWER.md.
"""

from .log import LogVerdict, RunLog, verify_log
from .rounds import RoundInputs, RoundResult, aggregate_round, prepare_updates, rule_params

__all__ = ["ChainRule", "LogVerdict", "RunLog", "verify_log", "RoundInputs", "RoundResult", "aggregate_round",
           "prepare_updates", "rule_params"]


def __getattr__(name):
    if name == "ChainRule":  # flwr is optional: imported on first use
        from .strategy import ChainRule

        return ChainRule
    raise AttributeError(name)
