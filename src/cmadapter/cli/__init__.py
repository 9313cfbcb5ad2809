"""The ``cmadapter`` command line: one module per group of subcommands, ``main`` puts them together."""

from .app import main

__all__ = ["main"]
