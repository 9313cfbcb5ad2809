"""Identical work in flight done once: callers that ask for a key already being computed wait for that result.

    flight = SingleFlight()
    jpegs = flight.do(("thumbs", video, first, stop), lambda: decode_segment(...))

A page asks for all the thumbnails of a segment at once, and several people may export the same clip:
without this, each of those concurrent misses would decode (or encode) the same frames again. Nothing is
kept once the work ends; callers keep results in their own caches.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


class SingleFlight:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, Future] = {}
        self._joined: dict[Hashable, int] = {}  # callers per key in flight, the first included

    def do(self, key: Hashable, work: Callable[[], T]) -> T:
        """``work()``'s result; while another caller runs it for ``key``, that call's result (or exception)."""
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if leader:
                call = self._calls[key] = Future()
            self._joined[key] = self._joined.get(key, 0) + 1
        if not leader:
            return call.result()
        try:
            result = work()
        except BaseException as exc:
            call.set_exception(exc)
            raise
        else:
            call.set_result(result)
            return result
        finally:
            with self._lock:
                del self._calls[key], self._joined[key]

    def callers(self, key: Hashable | None = None) -> int:
        """How many callers share the work in flight for ``key`` (for every key: None); 0 when none is."""
        with self._lock:
            return sum(self._joined.values()) if key is None else self._joined.get(key, 0)
