"""A reader's view of an index: one generation, held while an ``index`` run goes on committing."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .store import IndexStore


class Snapshot:
    """A read-only view of one generation of the index: a connection inside one read transaction.

    An ``index`` run may commit meanwhile (WAL mode lets it); this view does not move. Shared by threads:
    each read goes through ``reading()``, one at a time. ``acquire``/``release`` count its users; the
    connection closes when the last user of a retired snapshot releases it."""

    def __init__(self, root: str | Path):
        self.store = IndexStore(root, readonly=True)
        self._lock = threading.Lock()
        self._users = 0
        self._retired = False
        self.store.db.execute("BEGIN")
        self.generation = self.store.generation  # the first read pins the snapshot
        self.adapters = self.store.adapters()
        self.default_adapter = self.store.get_meta("default_adapter")
        self.factory = self.store.get_meta("factory")
        self.files = int(self.store.db.execute("SELECT COUNT(*) FROM files").fetchone()[0])

    @contextmanager
    def reading(self) -> Iterator[IndexStore]:
        with self._lock:
            yield self.store

    def acquire(self) -> Snapshot:
        with self._lock:
            self._users += 1
        return self

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            close = self._retired and self._users <= 0
        if close:
            self._close()

    def retire(self) -> None:
        """A newer snapshot replaces this one: close once nobody uses it."""
        with self._lock:
            self._retired = True
            close = self._users <= 0
        if close:
            self._close()

    def _close(self) -> None:
        with self._lock:
            with suppress(sqlite3.Error):  # the transaction only read
                self.store.db.execute("COMMIT")
            self.store.close()
