"""The parties of a run, built once and shared by every driver.

* :mod:`.genesis`: the chain every party derives from the config (data, shards,
  protocol parameters, genesis) and the holders with their attacks;
* :mod:`.round`: the holders' messages for a head (:func:`collect_messages`) and
  the rule that they answer each head once (:class:`AnswerOnce`);
* :mod:`.miners`: the computing nodes, the strategy interface they write blocks
  with and the narrow view a strategy gets (:class:`MinerView`).

The in-process simulation, the TCP nodes and the Ethereum backend drive these;
none of them builds its own.
"""

from .backend import Backend, RoundOutcome
from .genesis import (GENESIS_TIME_MS, ChainSetup, Parties, apply_target_epsilon, build_chain_setup, build_params,
                      build_parties, network_setup, resolve_noise_multiplier)
from .miners import HonestMiner, Miner, MinerStrategy, MinerView, build_miners, check_miners
from .round import AnswerOnce, collect_messages

__all__ = ["GENESIS_TIME_MS", "AnswerOnce", "Backend", "ChainSetup", "HonestMiner", "Miner", "MinerStrategy",
           "MinerView", "Parties", "RoundOutcome", "apply_target_epsilon", "build_chain_setup", "build_miners",
           "build_params", "build_parties", "check_miners", "collect_messages", "network_setup",
           "resolve_noise_multiplier"]
