"""``learningchain explore PATH``: the chain explorer and live dashboard for a run or a node directory."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from ..errors import ConfigError
from ..explorer import ChainView, ExplorerApp
from ..network.status_http import StatusServer


async def serve(view: ChainView, host: str, port: int, *, ready=None) -> None:
    server = StatusServer(None, host=host, port=port, routes=ExplorerApp(view).handle)
    await server.start()
    try:
        if ready is not None:
            ready(server)
        await asyncio.Event().wait()  # until cancelled (Ctrl-C)
    finally:
        await server.close()


def cmd_explore(args) -> int:
    path = Path(args.path)
    view = ChainView(path)
    directory, live = view.data_dir()
    if not path.exists() and not live:
        raise ConfigError(f"{path}: no such run or node directory")
    if not path.is_file() and not (directory / "chain.sqlite").exists():
        raise ConfigError(f"{path}: no chain.sqlite here (give a run directory, a node's data directory "
                          "or a chain.sqlite file)")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {args.port}")

    def ready(server):
        print(f"explorer for {path}{' (a run still going: shown live)' if live else ''} at "
              f"http://{server.host}:{server.port}/  (Ctrl-C to stop)", flush=True)

    try:
        asyncio.run(serve(view, args.host, args.port, ready=ready))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        print("explorer stopped", file=sys.stderr)
    return 0


def register(sub, csub) -> None:
    p = sub.add_parser("explore", allow_abbrev=False,
                       help="browse a chain: blocks, messages, selection, test error, privacy (read-only, live)")
    p.add_argument("path", help="a run directory (--out of train), a node's data directory, or a chain.sqlite")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=9545,
                   help="port to listen on (default: 9545; 0 picks a free one)")
    p.set_defaults(func=cmd_explore)
