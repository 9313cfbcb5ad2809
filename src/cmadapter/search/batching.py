"""Concurrent queries through the model together: a micro-batcher.

    batcher = MicroBatcher(encode_group, BatchOptions(max_batch=16, window_seconds=0.005))
    vector = batcher.submit(("msrvtt", sha256), "a dog catches a frisbee")   # from many threads at once

On a CPU one forward of the text tower for 8 captions costs a fraction of 8 forwards (the matrices of one
short caption are thin: per-call overhead and thin matrix products dominate). Callers wait in one queue, in
arrival order; the oldest leads. When the model is free the leader waits at most ``window_seconds`` from its
own arrival for others to join, and only while more searches are in flight than are queued (a lone query never
waits), then runs up to ``max_batch`` queued items of its group (one adapter version: the model can hold one
active adapter) in one call and hands each caller its own result. Items that arrive while a forward runs gather
for the next one, so under load the batches fill by themselves. One forward runs at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from .errors import SearchError


@dataclass(frozen=True)
class BatchOptions:
    """How concurrent queries share a forward: at most ``max_batch`` per call (1: no batching), and how long
    the oldest waits for company while other searches are in flight."""

    max_batch: int = 16
    window_seconds: float = 0.005

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise SearchError(f"max_batch must be at least 1, got {self.max_batch}")
        if not 0 <= self.window_seconds <= 1:
            raise SearchError(f"the batching window must be between 0 and 1 s, got {self.window_seconds}")


class _Entry:
    __slots__ = ("arrived", "done", "error", "group", "result", "value")

    def __init__(self, group: Hashable, value: Any):
        self.group, self.value, self.arrived = group, value, time.monotonic()
        self.done, self.result, self.error = False, None, None


class MicroBatcher:
    """``submit(group, item)`` from any thread returns ``run(group, items)[i]`` for its own item; ``run`` gets up
    to ``max_batch`` items of one group at a time, never two calls at once. An exception in ``run`` reaches every
    caller of that batch. ``in_flight()`` (optional) counts the searches under way, the callers included."""

    def __init__(
        self,
        run: Callable[[Hashable, list], list],
        options: BatchOptions | None = None,
        in_flight: Callable[[], int] | None = None,
    ):
        self._run = run
        self.options = options or BatchOptions()
        self._in_flight = in_flight or (lambda: 0)
        self._cond = threading.Condition()
        self._queue: list[_Entry] = []
        self._running = False
        self.batches = 0  # forwards run
        self.items = 0  # items they carried (items / batches: the mean batch)

    def submit(self, group: Hashable, value: Any) -> Any:
        entry = _Entry(group, value)
        with self._cond:
            self._queue.append(entry)
            self._cond.notify_all()
            while not entry.done and (self._running or self._queue[0] is not entry):
                self._cond.wait()
            if not entry.done:
                batch = self._gather(entry)
        if not entry.done:
            self._execute(batch)
        if entry.error is not None:
            raise entry.error
        return entry.result

    def _gather(self, leader: _Entry) -> list[_Entry]:
        """The leader's batch (called holding the condition, the model free): wait within the window while
        searches that may still join are in flight, then take up to ``max_batch`` of the leader's group."""
        limit, deadline = self.options.max_batch, leader.arrived + self.options.window_seconds
        while limit > 1:
            same = sum(1 for e in self._queue if e.group == leader.group)
            left = deadline - time.monotonic()
            if same >= limit or left <= 0 or self._in_flight() <= len(self._queue):
                break
            self._cond.wait(left)
        batch = [e for e in self._queue if e.group == leader.group][:limit]
        taken = set(map(id, batch))
        self._queue = [e for e in self._queue if id(e) not in taken]
        self._running = True
        return batch

    def _execute(self, batch: list[_Entry]) -> None:
        try:
            results = self._run(batch[0].group, [e.value for e in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} items gave {len(results)} results")
            for entry, result in zip(batch, results):
                entry.result = result
        except BaseException as exc:  # every caller of the batch learns of it, the leader included
            for entry in batch:
                entry.error = exc
        finally:
            with self._cond:
                for entry in batch:
                    entry.done = True
                self._running = False
                self.batches += 1
                self.items += len(batch)
                self._cond.notify_all()
