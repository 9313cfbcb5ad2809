"""The index's metadata and features in one SQLite database (``INDEX/index.sqlite``), in WAL mode.

Tables: ``meta`` (settings and the model the index was built with, as JSON values), ``adapters`` (the
adapters features exist for; their checkpoints are copied next to the database), ``files`` (path, size,
mtime, content hash, frame timestamps), ``segments`` (frame ranges of a file, with their times),
``features`` (per file and adapter: the frames' features, fp16 ``[frames, D]``, and the segments' stage-1
vectors, fp32 ``[segments, D]``) and ``problems`` (files that could not be indexed, with the reason).

Every file is written in one transaction (its row, segments and the features of every adapter), and
each committing change bumps ``meta.generation``; a killed run therefore leaves whole files only, and a
FAISS file saved for an older generation is known to be stale.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SearchError
from .segments import Segment

FORMAT = "cmadapter-video-index"
VERSION = 1
DATABASE = "index.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS adapters (name TEXT PRIMARY KEY, sha256 TEXT, method TEXT);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, hash TEXT NOT NULL,
    frame_count INTEGER NOT NULL, times BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    first INTEGER NOT NULL, stop INTEGER NOT NULL, start REAL NOT NULL, "end" REAL NOT NULL);
CREATE INDEX IF NOT EXISTS segments_file ON segments(file_id);
CREATE TABLE IF NOT EXISTS features (
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE, adapter TEXT NOT NULL,
    frames BLOB NOT NULL, segments BLOB NOT NULL, PRIMARY KEY (file_id, adapter));
CREATE TABLE IF NOT EXISTS problems (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, reason TEXT NOT NULL);
"""


@dataclass(frozen=True)
class FileRow:
    id: int
    path: str
    kind: str
    size: int
    mtime_ns: int
    hash: str
    frame_count: int
    times: np.ndarray  # float64 [frame_count]: seconds of each stored frame


@dataclass(frozen=True)
class SegmentRow:
    id: int
    file_id: int
    first: int
    stop: int
    start: float
    end: float


class IndexStore:
    """One connection to an index database; ``readonly`` ones never write (``search``, ``serve``)."""

    def __init__(self, root: str | Path, *, readonly: bool, create: bool = False):
        self.root = Path(root)
        self.path = self.root / DATABASE
        self.readonly = readonly
        if not self.path.is_file() and not create:
            raise SearchError(f"{self.root} is not a video index (no {DATABASE}); build one with `cmadapter index`")
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        try:
            if readonly:
                self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
            else:
                self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable against a killed process
            self.db.execute("PRAGMA foreign_keys=ON")
            if create:
                self.db.executescript(_SCHEMA)
            found = self.get_meta("format")
        except sqlite3.DatabaseError as exc:
            raise SearchError(f"{self.path} is not a video index database: {exc}") from exc
        if found is None and create:
            with self.transaction():
                self.set_meta("format", FORMAT)
                self.set_meta("version", VERSION)
                self.set_meta("generation", 0)
        elif found != FORMAT:
            raise SearchError(f"{self.path} is not a cmadapter video index (format {found!r})")
        elif self.get_meta("version") != VERSION:
            raise SearchError(f"{self.path}: index version {self.get_meta('version')}, this cmadapter reads {VERSION}")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT (ROLLBACK on any error): all of it lands, or none."""
        if self.readonly:
            raise SearchError(f"{self.root} was opened read-only")
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---- meta ---------------------------------------------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row is not None else default

    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def bump_generation(self) -> None:
        self.set_meta("generation", int(self.get_meta("generation", 0)) + 1)

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation", 0))

    # ---- adapters -----------------------------------------------------------------------------------------

    def adapters(self) -> dict[str, str | None]:
        """Adapter name -> sha256 of its checkpoint (None: the plain backbone)."""
        return dict(self.db.execute("SELECT name, sha256 FROM adapters ORDER BY rowid"))

    def set_adapter(self, name: str, sha256: str | None, method: str | None) -> None:
        self.db.execute("DELETE FROM features WHERE adapter = ?", (name,))
        self.db.execute(
            "INSERT OR REPLACE INTO adapters (name, sha256, method) VALUES (?, ?, ?)", (name, sha256, method)
        )
        self.bump_generation()

    # ---- files --------------------------------------------------------------------------------------------

    def files(self) -> dict[str, FileRow]:
        rows = self.db.execute("SELECT id, path, kind, size, mtime_ns, hash, frame_count, times FROM files")
        return {r[1]: _file_row(r) for r in rows}

    def file(self, file_id: int) -> FileRow | None:
        row = self.db.execute(
            "SELECT id, path, kind, size, mtime_ns, hash, frame_count, times FROM files WHERE id = ?", (file_id,)
        ).fetchone()
        return _file_row(row) if row is not None else None

    def encoded_adapters(self) -> dict[int, set[str]]:
        done: dict[int, set[str]] = {}
        for file_id, adapter in self.db.execute("SELECT file_id, adapter FROM features"):
            done.setdefault(file_id, set()).add(adapter)
        return done

    def put_file(
        self,
        path: str,
        kind: str,
        size: int,
        mtime_ns: int,
        content_hash: str,
        times: np.ndarray,
        segments: list[Segment],
        rate: float,
    ) -> int:
        """Insert (or replace, dropping its old segments and features) a file and its segments; in a transaction."""
        self.db.execute("DELETE FROM files WHERE path = ?", (path,))
        cursor = self.db.execute(
            "INSERT INTO files (path, kind, size, mtime_ns, hash, frame_count, times) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (path, kind, size, mtime_ns, content_hash, len(times), np.asarray(times, np.float64).tobytes()),
        )
        file_id = int(cursor.lastrowid)
        self.db.executemany(
            'INSERT INTO segments (file_id, first, stop, start, "end") VALUES (?, ?, ?, ?, ?)',
            [
                (file_id, s.first, s.stop, float(times[s.first]), float(times[s.stop - 1]) + 1.0 / rate)
                for s in segments
            ],
        )
        self.db.execute("DELETE FROM problems WHERE path = ?", (path,))
        self.bump_generation()
        return file_id

    def touch_file(self, file_id: int, size: int, mtime_ns: int) -> None:
        self.db.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, file_id))

    def put_features(self, file_id: int, adapter: str, frames: np.ndarray, segment_vectors: np.ndarray) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO features (file_id, adapter, frames, segments) VALUES (?, ?, ?, ?)",
            (
                file_id,
                adapter,
                np.ascontiguousarray(frames, np.float16).tobytes(),
                np.ascontiguousarray(segment_vectors, np.float32).tobytes(),
            ),
        )
        self.bump_generation()

    def delete_files(self, paths: Iterable[str]) -> int:
        count = 0
        for path in paths:
            count += self.db.execute("DELETE FROM files WHERE path = ?", (path,)).rowcount
        if count:
            self.bump_generation()
        return count

    # ---- problems -----------------------------------------------------------------------------------------

    def problems(self) -> dict[str, tuple[int | None, int | None, str]]:
        return {r[0]: (r[1], r[2], r[3]) for r in self.db.execute("SELECT path, size, mtime_ns, reason FROM problems")}

    def put_problem(self, path: str, size: int | None, mtime_ns: int | None, reason: str) -> None:
        self.db.execute("DELETE FROM files WHERE path = ?", (path,))
        self.db.execute(
            "INSERT OR REPLACE INTO problems (path, size, mtime_ns, reason) VALUES (?, ?, ?, ?)",
            (path, size, mtime_ns, reason),
        )

    def delete_problems(self, paths: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM problems WHERE path = ?", [(p,) for p in paths])

    # ---- segments and features ----------------------------------------------------------------------------

    def segments(self, ids: Iterable[int] | None = None) -> list[SegmentRow]:
        query = 'SELECT id, file_id, first, stop, start, "end" FROM segments'
        if ids is None:
            return [SegmentRow(*r) for r in self.db.execute(query + " ORDER BY id")]
        ids = [int(i) for i in ids]
        found = {}
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            for r in self.db.execute(f"{query} WHERE id IN ({marks})", chunk):
                found[r[0]] = SegmentRow(*r)
        return [found[i] for i in ids if i in found]

    def frame_features(self, file_ids: Iterable[int], adapter: str, dim: int) -> dict[int, np.ndarray]:
        """fp16 ``[frames, D]`` per file (read-only views of the stored bytes)."""
        ids = sorted({int(i) for i in file_ids})
        out = {}
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT file_id, frames FROM features WHERE adapter = ? AND file_id IN ({marks})", [adapter, *chunk]
            )
            for file_id, blob in rows:
                out[file_id] = np.frombuffer(blob, dtype=np.float16).reshape(-1, dim)
        return out

    def segment_vectors(self, adapter: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(segment ids int64 [N], stage-1 vectors float32 [N, D]) of every segment with ``adapter`` features."""
        ids, vectors = [], []
        rows = self.db.execute(
            "SELECT f.file_id, f.segments FROM features f WHERE f.adapter = ? ORDER BY f.file_id", (adapter,)
        )
        segment_ids: dict[int, list[int]] = {}
        for file_id, segment_id in self.db.execute("SELECT file_id, id FROM segments ORDER BY file_id, first"):
            segment_ids.setdefault(file_id, []).append(segment_id)
        for file_id, blob in rows:
            block = np.frombuffer(blob, dtype=np.float32).reshape(-1, dim)
            ids += segment_ids[file_id]
            vectors.append(block)
        if not vectors:
            return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
        return np.asarray(ids, np.int64), np.concatenate(vectors)

    def counts(self) -> dict[str, int]:
        one = lambda q: int(self.db.execute(q).fetchone()[0])
        return {
            "files": one("SELECT COUNT(*) FROM files"),
            "segments": one("SELECT COUNT(*) FROM segments"),
            "frames": one("SELECT COALESCE(SUM(frame_count), 0) FROM files"),
            "problems": one("SELECT COUNT(*) FROM problems"),
        }


def _file_row(r) -> FileRow:
    return FileRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], np.frombuffer(r[7], dtype=np.float64))


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]
