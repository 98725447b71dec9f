"""The explorer's routes: a page, its assets and a read-only JSON API over a :class:`ChainView`.

``ExplorerApp.handle(path, query)`` answers ``(status code, content type, body
bytes)`` or None for a path it does not serve; the HTTP server that carries it
(network/status_http.py: loopback by default, bounded heads, connections and
time) is the node's status server or the one ``learningchain explore`` starts.
Assets ship in the package (no CDN): the page works without internet.

API (all GET, JSON):

* ``/api/head``: head hash and height, and whether a run is still writing;
* ``/api/overview``: the head, genesis parameters, the run's summary (test error,
  baseline, privacy spent, refused blocks by reason) and, on a node, its status;
* ``/api/metrics``: test error and training loss per round, the baseline curve;
* ``/api/blocks?before=H&limit=N``: canonical blocks below height H, newest first;
* ``/api/block/REF``: one block by height or hash, with its messages.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Optional
from urllib.parse import unquote

from ..errors import StoreError
from .view import ChainView, NotFound

__all__ = ["ExplorerApp", "ASSETS"]

#: The files of static/ the page loads, and their content types.
ASSETS = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}


def _json(code: int, doc) -> tuple:
    return code, "application/json", (json.dumps(doc, default=str) + "\n").encode()


def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def _int(query: dict, key: str, default: Optional[int]) -> Optional[int]:
    values = query.get(key)
    if not values:
        return default
    text = values[-1]
    if not text.isdigit() or len(text) > 12:
        raise ValueError(f"{key} must be a non-negative integer, got {text[:20]!r}")
    return int(text)


class ExplorerApp:
    def __init__(self, view: ChainView):
        self.view = view

    def handle(self, path: str, query: dict) -> Optional[tuple]:
        if path in ("/", "/explorer", "/explorer/"):
            return 200, ASSETS["index.html"], _asset("index.html")
        if path.startswith("/static/"):
            name = path[len("/static/"):]
            if name not in ASSETS:  # a fixed list: no path ever reaches the file system
                return _json(404, {"error": f"no asset {name[:40]!r}"})
            return 200, ASSETS[name], _asset(name)
        if not path.startswith("/api/"):
            return None
        try:
            return _json(200, self._api(path[len("/api/"):], query))
        except NotFound as exc:
            return _json(404, {"error": str(exc)})
        except ValueError as exc:
            return _json(400, {"error": str(exc)})
        except StoreError as exc:
            return _json(503, {"error": str(exc)})

    def _api(self, name: str, query: dict):
        if name == "head":
            return self.view.head()
        if name == "overview":
            return self.view.overview()
        if name == "metrics":
            return self.view.metrics()
        if name == "blocks":
            return self.view.blocks(before=_int(query, "before", None), limit=_int(query, "limit", 25))
        if name.startswith("block/"):
            ref = unquote(name[len("block/"):])
            if not ref or len(ref) > 80:
                raise ValueError("a block is named by its height or its 0x-hex hash")
            return self.view.block(ref)
        raise NotFound(f"no API {name[:40]!r}; see /api/overview, /api/head, /api/metrics, /api/blocks, /api/block/REF")
