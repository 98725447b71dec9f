"""The chain explorer: a read-only view of a run's or a node's chain, served as a page and a JSON API."""

from .app import ASSETS, ExplorerApp
from .view import ChainView, NotFound

__all__ = ["ChainView", "ExplorerApp", "NotFound", "ASSETS"]
