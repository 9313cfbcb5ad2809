"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The data go to a temporary file in the same folder (a rename is atomic only within one file system), which
is flushed to disk (``fsync``) before it is renamed over the target; the folder is then synced so that the
rename itself survives a power cut. A write that fails or is killed leaves at most a temporary file, whose
name ends with ``TEMP_SUFFIX``: no file cmadapter writes for keeps ends so, so ``leftover_temporaries``
finds exactly those.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_SUFFIX = ".cmadapter-partial"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write the whole file to; when the block ends without an
    error the file is made durable and renamed to ``path``, otherwise it is deleted.

        with atomic_path(target) as temporary:
            np.save(temporary, frames)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _new_temporary(path)
    try:
        yield temporary
        _fsync(temporary, os.O_RDONLY)
        os.replace(temporary, path)
        _fsync(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    finally:
        temporary.unlink(missing_ok=True)


def _new_temporary(path: Path) -> Path:
    """A new empty file beside ``path``, created with the mode any new file gets (0666 less the umask), not
    ``mkstemp``'s 0600: what we write for keeps (an index another user serves) must be readable as usual."""
    while True:
        temporary = path.with_name(f"{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")
        try:
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return temporary
        except FileExistsError:
            continue


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def leftover_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Temporary files that interrupted writes left in ``folder`` (and nothing else)."""
    return sorted(Path(folder).glob(f"*{TEMP_SUFFIX}"))


def _fsync(path: Path, flags: int) -> None:
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
