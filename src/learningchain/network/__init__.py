"""Drivers that move messages and blocks between :class:`~learningchain.node.Node`
objects: the in-process simulation here, TCP peers in :mod:`.tcp`."""

from .simulation import InProcessNetwork, Miner, MinerStrategy, HonestMiner, RoundResult

__all__ = ["InProcessNetwork", "Miner", "MinerStrategy", "HonestMiner", "RoundResult"]
