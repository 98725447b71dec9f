"""Configuration of a network of ``learningchain node`` processes.

One TOML file describes the chain every node joins and each node's policy::

    [train]                 # the learning problem: same keys as `learningchain train`
    dataset = "synthetic"
    holders = 30
    rounds = 20
    seed = 0

    [network]               # consensus (fixed by genesis) and node policy
    consensus = "pow"       # or "poa" with authorities = ["0x...", ...]
    interval_ms = 500       # proof-of-work retarget toward this block interval (0: fixed difficulty)

Every key of ``[train]`` and the consensus keys of ``[network]`` go into the
genesis block, so processes on different machines that load the same file build
the same genesis and can talk; a node refuses peers and blocks of another genesis.
The other ``[network]`` keys are local policy (limits, timeouts) and may differ
between nodes. The keys are declared in :mod:`learningchain.config`; this module
keeps the names the drivers import.
"""

from ..config import CONSENSUS_KEYS, NetConfigFile, NetworkConfig, load_net_config, parse_address

__all__ = ["NetworkConfig", "NetConfigFile", "load_net_config", "CONSENSUS_KEYS", "parse_address"]
