"""Exported clips kept on disk within bounds: total bytes (least recently used evicted), clips cut at once.

One export per clip runs at a time (concurrent requests for the same clip wait for it), at most
``ClipLimits.encoders`` exports run at once, and a request that finds no free slot within
``wait_seconds`` gets ``ExportsBusy`` (HTTP 503). The folder is the server's own temporary one; a file is
handed out opened, so evicting it never cuts a download short.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import CmadapterError
from .file_response import OpenedFile, open_file
from .inflight import SingleFlight

MiB = 2**20


@dataclass(frozen=True)
class ClipLimits:
    """How much work and disk clip exports may take."""

    cache_bytes: int = 512 * MiB  # exported clips kept, least recently used evicted beyond it
    max_seconds: float = 60.0  # a longer segment is exported from its start, this long
    short_side: int = 720  # re-encoded clips are scaled down to it (aspect kept, even sizes); copies are not
    encoders: int = 2  # exports running at once
    wait_seconds: float = 20.0  # a request waits this long for a free slot, then gets 503

    def __post_init__(self) -> None:
        if self.cache_bytes < 0 or self.max_seconds <= 0 or self.short_side < 2 or self.encoders < 1:
            raise CmadapterError(f"clip limits out of range: {self}")
        if self.wait_seconds < 0:
            raise CmadapterError(f"clip limits out of range: {self}")


class ExportsBusy(CmadapterError):
    """Every export slot stayed busy for the whole wait (HTTP 503)."""


class ClipExports:
    def __init__(self, limits: ClipLimits | None = None):
        self.limits = limits or ClipLimits()
        self._folder = tempfile.TemporaryDirectory(prefix="cmadapter-clips-")
        self.folder = Path(self._folder.name)
        self._sizes: OrderedDict[str, int] = OrderedDict()  # file name -> bytes, least recently used first
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.limits.encoders)
        self._flight = SingleFlight()

    def close(self) -> None:
        self._folder.cleanup()

    @property
    def stored_bytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def get(self, name: str, make: Callable[[Path], object], download_name: str) -> OpenedFile:
        """The clip stored as ``name`` (a plain file name), opened; ``make(path)`` writes it when missing."""
        for _ in range(3):  # made, then evicted by others before it was opened: only under a tiny cache_bytes
            opened = self._open(name, download_name)
            if opened is not None:
                return opened
            self._flight.do(name, lambda: self._make(name, make))
        raise ExportsBusy(f"the clip cache ({self.limits.cache_bytes} bytes) is too small for the exports in flight")

    def _open(self, name: str, download_name: str) -> OpenedFile | None:
        with self._lock:  # eviction takes the lock too: a file listed here exists until it is opened
            if name not in self._sizes:
                return None
            self._sizes.move_to_end(name)
            try:
                return open_file(self.folder / name, download_name)
            except FileNotFoundError:  # removed behind our back (a cleaner of /tmp)
                del self._sizes[name]
                return None

    def _make(self, name: str, make: Callable[[Path], object]) -> None:
        with self._lock:
            if name in self._sizes:  # made by a call that ended between our miss and this one
                return
        if not self._slots.acquire(timeout=self.limits.wait_seconds):
            raise ExportsBusy(
                f"{self.limits.encoders} clip exports are already running and none ended within"
                f" {self.limits.wait_seconds:g} s; try again shortly"
            )
        try:
            partial = self.folder / f".partial-{uuid.uuid4().hex}-{name}"
            try:
                make(partial)
                size = partial.stat().st_size
                partial.replace(self.folder / name)
            finally:
                partial.unlink(missing_ok=True)
        finally:
            self._slots.release()
        with self._lock:
            self._sizes[name] = size
            total = sum(self._sizes.values())
            while total > self.limits.cache_bytes and len(self._sizes) > 1:
                evicted, evicted_size = next(iter(self._sizes.items()))
                if evicted == name:
                    break
                del self._sizes[evicted]
                (self.folder / evicted).unlink(missing_ok=True)  # an open download keeps reading its descriptor
                total -= evicted_size
