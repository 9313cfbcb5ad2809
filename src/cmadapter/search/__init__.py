"""Search your own videos: an index of per-frame features over segments, and two-stage text search.

``VideoIndex.build(videos, out, ...)`` (or ``cmadapter index``) writes an index folder; ``VideoIndex.open``
and ``index.search("a dog catches a frisbee")`` (or ``cmadapter search``) read it.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "VideoIndex": "api",
    "BuildOptions": "build",
    "BuildReport": "build",
    "SearchError": "errors",
    "SearchHit": "query",
    "VideoResult": "query",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'cmadapter.search' has no attribute {name!r}")


__all__ = list(_EXPORTS)
