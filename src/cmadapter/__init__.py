"""cmadapter: parameter-efficient text-video retrieval with the Cross-Modal Adapter.

Importing the package has no side effects (no process groups, no downloads, no logging set-up), and
is cheap: the heavy modules (torch, open_clip) load on first use of a name below.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Architecture": "architecture",
    "Backbone": "backbone",
    "load_backbone": "backbone",
    "CmadapterError": "errors",
    "CheckpointError": "errors",
    "DataError": "errors",
    "RetrievalModel": "model",
    "build_model": "model",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'cmadapter' has no attribute {name!r}")


__all__ = ["__version__", *_EXPORTS]
