"""``learningchain node`` and ``learningchain network up``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

from ..config import NetworkConfig, TrainConfig, load_net_config, parse_set
from ..experiments.train import run_training
from ..network.daemon import NodeDaemon, load_or_create_key, parse_indices, run_node
from ..network.launcher import describe, network_up
from ..network.tcp import parse_hostport
from .options import add_config_options, config_values, option_group

__all__ = ["register"]

_CHAIN_TITLE = "the chain (every node of one network must agree)"


def _add_chain_options(p: argparse.ArgumentParser, *, node: bool = False) -> None:
    """The config keys `node` and `network up` take as options (the rest via --config / --set)."""
    g = option_group(p, _CHAIN_TITLE)
    g.add_argument("--config", metavar="FILE", help="TOML with a [train] table (the learning problem, as for "
                                                     "`learningchain train`) and a [network] table")
    add_config_options(p, TrainConfig, "chain", title=_CHAIN_TITLE)
    add_config_options(p, NetworkConfig, "chain", title=_CHAIN_TITLE)
    if node:
        add_config_options(p, NetworkConfig, "node", title="this node's policy ([network] keys)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a [train] key, or a [network] key as network.KEY=VALUE (repeatable)")


def _load(args):
    train = config_values(args, TrainConfig, "chain")
    network = {**config_values(args, NetworkConfig, "chain"), **config_values(args, NetworkConfig, "node")}
    for name, value in parse_set(args.set).items():
        if name.startswith("network."):
            network[name.removeprefix("network.")] = value
        else:
            train[name] = value
    config = args.config
    if config is None and getattr(args, "data_dir_node", None):
        saved = Path(args.data_dir_node) / "config.toml"
        if saved.exists():
            config = str(saved)
    return load_net_config(config, train_overrides=train, network_overrides=network)


def cmd_node(args) -> int:
    data_dir = Path(args.data_dir_node)
    if args.init:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = load_or_create_key(data_dir / "node.key")
        print(f"0x{key.address.hex()}")
        for k in parse_indices(args.holder_index):  # keys to enrol in [network] members
            print(f"holder {k} 0x{load_or_create_key(data_dir / f'holder-{k}.key').address.hex()}")
        return 0
    conf = _load(args)
    conf.check_node()
    listen = parse_hostport(args.listen, what="--listen")
    advertise = parse_hostport(args.advertise, what="--advertise") if args.advertise else None
    peers = [parse_hostport(p, what="--peers") for p in (args.peers or "").split(",") if p.strip()]
    http = status_address(listen, args.http)
    indices = parse_indices(args.holder_index)
    role = args.role or ("both" if indices else "miner")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    saved = data_dir / "config.toml"
    if not saved.exists():
        saved.write_text(conf.to_toml())

    def factory():
        return NodeDaemon(conf, data_dir=data_dir, listen=listen, advertise=advertise, peers=peers, role=role,
                          holder_indices=indices, http=http, name=args.name, prune=args.prune)

    return run_node(factory, log_file=data_dir / "node.log", verbose=args.verbose, console=not args.quiet)


def status_address(listen: tuple, http: Optional[str]) -> Optional[tuple]:
    """Where the status API listens: loopback, on the listen port + 1, whatever
    ``--listen`` says (/status is for the node's operator, not for the world),
    unless ``--http HOST:PORT`` says otherwise; None for ``--http off``."""
    if http in (None, ""):
        return ("127.0.0.1", listen[1] + 1) if listen[1] else ("127.0.0.1", 0)
    if http == "off":
        return None
    return parse_hostport(http, what="--http")


def cmd_network_up(args) -> int:
    conf = _load(args)
    summary = network_up(conf, nodes=args.nodes, out=args.out, timeout=args.timeout, quiet=args.quiet,
                         compare=run_training if args.compare else None, verbose=args.verbose, force=args.force,
                         permissioned=args.permissioned)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(describe(summary))
    ok = summary["same_head"] and summary["all_verified"]
    return 0 if ok else 1


def register(sub, csub) -> None:
    p = sub.add_parser("node", allow_abbrev=False,
                       help="run one node of a LearningChain network (holder, computing node or both)")
    p.add_argument("--data-dir", dest="data_dir_node", required=True, metavar="DIR",
                   help="the node's directory: chain.sqlite, node.key (mode 0600), holder keys, node.log")
    p.add_argument("--init", action="store_true", help="create the data directory and node key, print the "
                                                       "node's address (for [network] authorities) and, with "
                                                       "--holder-index, each holder's (for [network] members), "
                                                       "and exit")
    p.add_argument("--listen", default="127.0.0.1:30333", metavar="HOST:PORT",
                   help="where peers connect (default %(default)s; 0.0.0.0:PORT for other machines)")
    p.add_argument("--advertise", metavar="HOST:PORT", help="the address other nodes should dial (default --listen)")
    p.add_argument("--peers", metavar="LIST", help="bootstrap peers, HOST:PORT[,HOST:PORT...]")
    p.add_argument("--http", metavar="HOST:PORT", help="status API (GET /status); default 127.0.0.1 and the listen port + 1, "
                                                        "whatever --listen says; 'off' for none")
    p.add_argument("--role", help="both (default with --holder-index), holder, miner (default without) or relay")
    p.add_argument("--holder-index", metavar="I", help="which holders' shards this node hosts: I, I,J,... or A-B")
    p.add_argument("--name", help="name in logs (default: the data directory's name)")
    p.add_argument("--prune", action="store_true",
                   help="drop the message bodies of blocks deeper than the genesis's finality_depth (headers, "
                        "selections and models stay); a pruned node serves sync only from the blocks it holds "
                        "whole and refuses the rest (PRUNED), so a fresh node syncs those from an archival node")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    p.add_argument("--quiet", action="store_true", help="log to DIR/node.log only, not to stderr")
    _add_chain_options(p, node=True)
    p.set_defaults(func=cmd_node)

    net = sub.add_parser("network", allow_abbrev=False, help="run a local network of node processes")
    nsub = net.add_subparsers(dest="network_command", metavar="ACTION")
    nsub.required = True
    p = nsub.add_parser("up", allow_abbrev=False,
                        help="start N node processes on loopback, run R rounds, stop them cleanly")
    p.add_argument("--nodes", type=int, required=True, metavar="N", help="node processes")
    p.add_argument("--out", metavar="DIR", default="runs/network",
                   help="where each node's directory is left (default %(default)s)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S", help="give up after S seconds (default %(default)g)")
    p.add_argument("--compare", action="store_true", help="also run the in-process network with the same settings")
    p.add_argument("--force", action="store_true", help="replace a network run already in --out")
    p.add_argument("--permissioned", action="store_true",
                   help="enrol the holders: create their keys first and list them in genesis as [network] members, "
                        "so the nodes refuse messages from any other key")
    p.add_argument("--quiet", action="store_true", help="no live progress")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--verbose", action="store_true", help="debug logging in the nodes")
    _add_chain_options(p)
    p.set_defaults(func=cmd_network_up)
