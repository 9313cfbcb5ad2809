"""Planning an index run: what changed on disk since the index last saw it, before any model is loaded.

A file whose stamp (size, mtime, ctime, inode) is unchanged is left alone; one whose stamp changed but whose
bytes did not (content hash) is only re-stamped; a new path holding the bytes of a file that disappeared is
that file renamed (its row, segments and features move with it); files gone from the given paths are
dropped. What remains to encode comes back as ``Work``. Anything wrong with one file becomes that file's
problem (``record_problem``), never the run's; a file that ``MAX_ATTEMPTS`` runs died on is one too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import CmadapterError
from .errors import SearchError
from .files import MediaFile, content_hash, display_path, identity
from .schema import FileRow, Stamp
from .store import IndexStore

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # runs that may die on one file before it is recorded as a problem


@dataclass
class BuildReport:
    files: int = 0
    segments: int = 0
    frames: int = 0
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    restamped: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (old path, new path): features kept
    deleted: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)  # path -> reason (this run's and earlier ones)
    skipped_other: int = 0
    encoded: dict[str, dict[str, int]] = field(default_factory=dict)  # adapter -> {"files", "frames"}
    model_loaded: bool = False
    skipped_frames: int = 0  # frames that reused the features of the one before (``skip_similar``)
    # decode and encode overlap (decoder threads), so they add up to more than ``pipeline``, the wall time of both
    seconds: dict[str, float] = field(
        default_factory=lambda: {
            "plan": 0.0,
            "hash": 0.0,
            "load": 0.0,
            "pipeline": 0.0,
            "decode": 0.0,
            "encode": 0.0,
            "write": 0.0,
            "ann": 0.0,
        }
    )
    factory: str = ""

    def to_dict(self) -> dict:
        """JSON-ready: paths that are not UTF-8 shown with backslash escapes."""
        out = dict(self.__dict__)
        for key in ("new", "changed", "restamped", "deleted"):
            out[key] = [display_path(p) for p in out[key]]
        out["renamed"] = [[display_path(a), display_path(b)] for a, b in self.renamed]
        out["problems"] = {display_path(p): reason for p, reason in self.problems.items()}
        return out


@dataclass
class Work:
    """A file to (re)encode, as the driver planned it: the unit a worker (this process, or a Ray task) runs."""

    item: MediaFile
    stamp: Stamp
    content: str
    row: FileRow | None
    missing: list[str]  # adapters to encode
    is_new: bool


def _same_stamp(stored: Stamp, now: Stamp) -> bool:
    """Size and mtime, and ctime and inode where known: a rewrite that restores size and mtime (``touch -r``,
    a copy keeping times) still moves ctime, which no program can set back."""
    return (
        (stored.size, stored.mtime_ns) == (now.size, now.mtime_ns)
        and stored.ctime_ns in (0, now.ctime_ns)
        and stored.inode in (0, now.inode)
    )


def plan(store: IndexStore, media: list[MediaFile], names: list[str], report: BuildReport) -> list[Work]:
    """Re-stamp touched files, move renamed ones, drop deleted ones, and list what must be encoded."""
    stored = store.files()
    problems = store.problems()
    attempts = store.attempts()
    done = store.encoded_adapters()
    present = {m.path for m in media}
    gone = {path: row for path, row in stored.items() if path not in present}
    with store.transaction():
        store.delete_problems([p for p in problems if p not in present])
    for adapter in names:
        report.encoded[adapter] = {"files": 0, "frames": 0}
    works = []
    for item in media:
        try:
            work = _plan_file(store, item, stored.get(item.path), gone, problems, attempts, done, names, report)
        except Exception as exc:  # anything about one file is that file's problem, never the run's
            record_problem(store, item, exc)
            continue
        if work is not None:
            works.append(work)
    with store.transaction():
        store.delete_files(gone)
    report.deleted = sorted(gone)
    return works


def _plan_file(store, item: MediaFile, row, gone, problems, attempts, done, names, report) -> Work | None:
    stamp = identity(item)
    if row is None and item.path in problems and problems[item.path][:2] == (stamp.size, stamp.mtime_ns):
        return None  # unreadable before, unchanged since
    tried = attempts.get(item.path)
    if tried is not None and tried[:2] == (stamp.size, stamp.mtime_ns) and tried[2] >= MAX_ATTEMPTS:
        raise SearchError(
            f"{tried[2]} index runs stopped while processing this file (killed, or out of memory?); "
            "it is skipped until it changes"
        )
    content = None
    if row is not None and not _same_stamp(row.stamp, stamp):
        content = _hash(item, report)
        if content == row.hash:
            with store.transaction():
                store.touch_file(row.id, stamp)
            report.restamped.append(item.path)
        else:
            row = None
            report.changed.append(item.path)
    elif row is None:
        content = _hash(item, report)
        twin = next((r for r in gone.values() if r.hash == content and r.kind == item.kind), None)
        if twin is not None:  # the bytes of a file that disappeared: that file, renamed
            with store.transaction():
                store.rename_file(twin.id, item.path, stamp)
            del gone[twin.path]
            report.renamed.append((twin.path, item.path))
            row = replace(twin, path=item.path, stamp=stamp)
    missing = [a for a in names if row is None or a not in done.get(row.id, set())]
    if not missing:
        if row is not None and item.path not in report.restamped and all(item.path != new for _, new in report.renamed):
            report.unchanged += 1
        return None
    is_new = row is None and item.path not in report.changed
    return Work(item, stamp, content or row.hash, row, missing, is_new)


def _hash(item: MediaFile, report: BuildReport) -> str:
    began = time.perf_counter()
    try:
        return content_hash(item)
    finally:
        report.seconds["hash"] += time.perf_counter() - began


def record_problem(store, item: MediaFile, exc: Exception) -> None:
    reason = str(exc) if isinstance(exc, (CmadapterError, OSError)) else f"{type(exc).__name__}: {exc}"
    reason = reason[len(item.path) :].lstrip(": ") if reason.startswith(item.path) else reason
    reason = reason.encode("utf-8", "backslashreplace").decode("utf-8")  # a name quoted in it may not be UTF-8
    log.warning("cannot index %s: %s", display_path(item.path), reason)
    log.debug("cannot index %s", display_path(item.path), exc_info=exc)
    size, mtime = _stat_or_none(item.path)
    with store.transaction():
        store.put_problem(item.path, size, mtime, reason)


def _stat_or_none(path: str) -> tuple[int | None, int | None]:
    try:
        stat = Path(path).stat()
        return stat.st_size, stat.st_mtime_ns
    except OSError:
        return None, None
