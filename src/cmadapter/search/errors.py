"""Errors of the search subsystem: one line, naming the index, adapter or query."""

from ..errors import CmadapterError


class SearchError(CmadapterError):
    """An index that cannot be opened or searched as asked (not an index, unknown adapter, empty query)."""


class NotInIndex(SearchError):
    """A video or segment the index does not hold (the server answers 404)."""
