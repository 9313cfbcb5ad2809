"""One writer per index: ``index`` holds an exclusive lock on ``INDEX/index.lock`` for its whole run.

The lock is the operating system's (``flock``): it goes with the process, so a run killed at any moment
(``kill -9`` included) leaves nothing to clean up. The file names the holder (process id, host, start
time, command line), so a second run can say who it waits for. Readers (``search``, ``serve``) never lock:
SQLite's WAL mode gives them a consistent snapshot while the writer commits.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from .errors import SearchError

LOCK_FILE = "index.lock"


class IndexBusy(SearchError):
    """Another process is updating the index."""


@contextmanager
def index_lock(root: str | Path, *, wait: float | None = 0.0) -> Iterator[None]:
    """Hold the index's write lock. ``wait``: seconds to wait for a running writer (None: as long as it
    takes; 0: not at all); then ``IndexBusy`` names the holder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise IndexBusy(
                        f"{root} is being updated by another `cmadapter index` ({_holder(descriptor)}); "
                        "wait for it to finish (or pass --wait), or stop it"
                    ) from None
                time.sleep(0.2)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)[:300],
        }
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(holder).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(descriptor, 0)
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def _holder(descriptor: int) -> str:
    try:
        holder = json.loads(os.pread(descriptor, 4096, 0) or b"{}")
        return f"process {holder['pid']} on {holder['host']} since {holder['since']}: {holder['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not said who it is yet"
