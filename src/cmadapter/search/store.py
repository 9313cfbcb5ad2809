"""The index's metadata and features in one SQLite database (``INDEX/index.sqlite``), in WAL mode.

Tables: ``meta`` (settings and the model the index was built with, as JSON values), ``adapters`` (the
adapters features exist for, with the sha256 of the checkpoint copied next to the database), ``files``
(path as the file system's bytes, size, mtime, ctime, inode, content hash, frame timestamps), ``segments``
(frame ranges of a file, with their times), ``features`` (per file and adapter: the segments' stage-1
vectors, fp32 ``[segments, D]``, numbered by a ``seq`` that only grows), ``frames`` (per file and adapter:
the frames' features, fp16, in chunks of ``frame_chunk`` frames, so stage 2 reads only the chunks its
candidates cover), ``problems`` (files that could not be indexed, with the reason) and ``attempts`` (files
an index run started on and never finished: a run killed on the same file again and again gives up on it).

Every file is written in one transaction (its row, segments and the features of every adapter), and every
committed change bumps ``meta.generation``; a killed run therefore leaves whole files only. Readers take a
``Snapshot``: one read transaction, so everything a search reads comes from one generation while an
``index`` run goes on committing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SearchError
from .schema import DATABASE, FORMAT, SCHEMA, VERSION, FileRow, SegmentRow, Stamp, path_key, path_of
from .segments import Segment

_FILE_COLUMNS = "id, path, kind, size, mtime_ns, ctime_ns, inode, hash, frame_count, times"


class IndexStore:
    """One connection to an index database; ``readonly`` ones never write (``search``, ``serve``)."""

    def __init__(self, root: str | Path, *, readonly: bool, create: bool = False):
        self.root = Path(root)
        self.path = self.root / DATABASE
        self.readonly = readonly
        self.bytes_read = 0  # frame-feature bytes stage 2 read through this connection
        if not self.path.is_file() and not create:
            raise SearchError(f"{self.root} is not a video index (no {DATABASE}); build one with `cmadapter index`")
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        try:
            if readonly:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self.db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            else:
                self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable against a killed process
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA busy_timeout=10000")  # a reader meeting a checkpoint waits, never fails
            found = self.get_meta("format") if self._has_meta() else None
        except sqlite3.DatabaseError as exc:
            raise SearchError(f"{self.path} is not a video index database: {exc}") from exc
        if found is None and create:
            self.db.executescript(SCHEMA)
            with self.transaction():
                self.set_meta("format", FORMAT)
                self.set_meta("version", VERSION)
                self.set_meta("generation", 0)
            return
        if found != FORMAT:
            raise SearchError(f"{self.path} is not a cmadapter video index (format {found!r})")
        version = self.get_meta("version")
        if version == 1 and not readonly:
            from .migrate import upgrade_from_v1

            upgrade_from_v1(self)
        elif version == 1:
            raise SearchError(
                f"{self.root} was built by an older cmadapter (index version 1); run `cmadapter index` on it once "
                "to upgrade it (nothing is encoded again)"
            )
        elif version != VERSION:
            raise SearchError(f"{self.path}: index version {version}, this cmadapter reads {VERSION}")

    def _has_meta(self) -> bool:
        return (
            self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is not None
        )

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

    def data_version(self) -> int:
        """Changes whenever another connection commits (SQLite's ``PRAGMA data_version``): a cheap watch."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

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

    @property
    def frame_chunk(self) -> int:
        """Frames per stored chunk of frame features (fixed when the index is created)."""
        return int(self.get_meta("frame_chunk", 16))

    # ---- adapters -----------------------------------------------------------------------------------------

    def adapters(self) -> dict[str, str | None]:
        """Adapter name -> sha256 of its checkpoint (None: the plain backbone)."""
        return dict(self.db.execute("SELECT name, sha256 FROM adapters ORDER BY rowid"))

    def set_adapter(self, name: str, sha256: str | None, method: str | None) -> None:
        """Register (or replace) an adapter: its old features go, every file is encoded again for it."""
        self.db.execute("DELETE FROM features WHERE adapter = ?", (name,))
        self.db.execute("DELETE FROM frames WHERE adapter = ?", (name,))
        self.db.execute(
            "INSERT OR REPLACE INTO adapters (name, sha256, method) VALUES (?, ?, ?)", (name, sha256, method)
        )
        self.bump_generation()

    # ---- files --------------------------------------------------------------------------------------------

    def files(self) -> dict[str, FileRow]:
        return {row.path: row for row in map(_file_row, self.db.execute(f"SELECT {_FILE_COLUMNS} FROM files"))}

    def file(self, file_id: int) -> FileRow | None:
        row = self.db.execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE id = ?", (file_id,)).fetchone()
        return _file_row(row) if row is not None else None

    def file_id_of(self, path: str) -> int | None:
        row = self.db.execute("SELECT id FROM files WHERE path = ?", (path_key(path),)).fetchone()
        return int(row[0]) if row is not None else None

    def encoded_adapters(self) -> dict[int, set[str]]:
        done: dict[int, set[str]] = {}
        for file_id, adapter in self.db.execute("SELECT file_id, adapter FROM features"):
            done.setdefault(file_id, set()).add(adapter)
        return done

    def put_file(
        self,
        path: str,
        kind: str,
        stamp: Stamp,
        content_hash: str,
        times: np.ndarray,
        segments: list[Segment],
        rate: float,
    ) -> int:
        """Insert (or replace, dropping its old segments and features) a file and its segments; in a transaction."""
        key = path_key(path)
        self.db.execute("DELETE FROM files WHERE path = ?", (key,))
        cursor = self.db.execute(
            f"INSERT INTO files ({_FILE_COLUMNS[4:]}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key, kind, stamp.size, stamp.mtime_ns, stamp.ctime_ns, stamp.inode, content_hash, len(times),
                np.asarray(times, np.float64).tobytes(),
            ),
        )  # fmt: skip
        file_id = int(cursor.lastrowid)
        self.db.executemany(
            'INSERT INTO segments (file_id, first, stop, start, "end") VALUES (?, ?, ?, ?, ?)',
            [
                (file_id, s.first, s.stop, float(times[s.first]), float(times[s.stop - 1]) + 1.0 / rate)
                for s in segments
            ],
        )
        self._resolved(key)
        self.bump_generation()
        return file_id

    def rename_file(self, file_id: int, path: str, stamp: Stamp) -> None:
        """A file moved: the same row (id, segments, features) under its new path."""
        key = path_key(path)
        self.db.execute("DELETE FROM files WHERE path = ? AND id != ?", (key, file_id))
        self.db.execute(
            "UPDATE files SET path = ?, size = ?, mtime_ns = ?, ctime_ns = ?, inode = ? WHERE id = ?",
            (key, stamp.size, stamp.mtime_ns, stamp.ctime_ns, stamp.inode, file_id),
        )
        self._resolved(key)
        self.bump_generation()

    def touch_file(self, file_id: int, stamp: Stamp) -> None:
        """New stamp, same bytes (checked by hash): nothing searchable changes."""
        self.db.execute(
            "UPDATE files SET size = ?, mtime_ns = ?, ctime_ns = ?, inode = ? WHERE id = ?",
            (stamp.size, stamp.mtime_ns, stamp.ctime_ns, stamp.inode, file_id),
        )

    def put_features(self, file_id: int, adapter: str, frames: np.ndarray, segment_vectors: np.ndarray) -> None:
        """A file's features for one adapter: stage-1 vectors (a new ``seq``) and the frames in chunks."""
        self.db.execute("DELETE FROM features WHERE file_id = ? AND adapter = ?", (file_id, adapter))
        self.db.execute("DELETE FROM frames WHERE file_id = ? AND adapter = ?", (file_id, adapter))
        self.db.execute(
            "INSERT INTO features (file_id, adapter, segments) VALUES (?, ?, ?)",
            (file_id, adapter, np.ascontiguousarray(segment_vectors, np.float32).tobytes()),
        )
        frames = np.ascontiguousarray(frames, np.float16)
        chunk = self.frame_chunk
        self.db.executemany(
            "INSERT INTO frames (file_id, adapter, chunk, data) VALUES (?, ?, ?, ?)",
            [
                (file_id, adapter, i, frames[i * chunk : (i + 1) * chunk].tobytes())
                for i in range(-(-len(frames) // chunk))
            ],
        )
        self.bump_generation()

    def delete_files(self, paths: Iterable[str]) -> int:
        count = 0
        for path in paths:
            count += self.db.execute("DELETE FROM files WHERE path = ?", (path_key(path),)).rowcount
        if count:
            self.bump_generation()
        return count

    def _resolved(self, key: bytes) -> None:
        self.db.execute("DELETE FROM problems WHERE path = ?", (key,))
        self.db.execute("DELETE FROM attempts WHERE path = ?", (key,))

    # ---- problems and attempts ------------------------------------------------------------------------------

    def problems(self) -> dict[str, tuple[int | None, int | None, str]]:
        rows = self.db.execute("SELECT path, size, mtime_ns, reason FROM problems")
        return {path_of(r[0]): (r[1], r[2], r[3]) for r in rows}

    def put_problem(self, path: str, size: int | None, mtime_ns: int | None, reason: str) -> None:
        """The file cannot be indexed now: its rows (if it had any) leave the searchable index."""
        key = path_key(path)
        self.db.execute("DELETE FROM files WHERE path = ?", (key,))
        self.db.execute("DELETE FROM attempts WHERE path = ?", (key,))
        self.db.execute(
            "INSERT OR REPLACE INTO problems (path, size, mtime_ns, reason) VALUES (?, ?, ?, ?)",
            (key, size, mtime_ns, reason),
        )
        self.bump_generation()

    def delete_problems(self, paths: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM problems WHERE path = ?", [(path_key(p),) for p in paths])

    def attempts(self) -> dict[str, tuple[int | None, int | None, int]]:
        """Files runs began on and never finished: path -> (size, mtime_ns, how many runs)."""
        return {
            path_of(r[0]): (r[1], r[2], r[3])
            for r in self.db.execute("SELECT path, size, mtime_ns, count FROM attempts")
        }

    def note_attempt(self, path: str, size: int, mtime_ns: int) -> int:
        """Record that a run begins on ``path`` (committed before the work); returns the count so far."""
        key = path_key(path)
        row = self.db.execute("SELECT size, mtime_ns, count FROM attempts WHERE path = ?", (key,)).fetchone()
        count = row[2] + 1 if row is not None and tuple(row[:2]) == (size, mtime_ns) else 1
        self.db.execute(
            "INSERT OR REPLACE INTO attempts (path, size, mtime_ns, count) VALUES (?, ?, ?, ?)",
            (key, size, mtime_ns, count),
        )
        return count

    def clear_attempt(self, path: str) -> None:
        self.db.execute("DELETE FROM attempts WHERE path = ?", (path_key(path),))

    # ---- segments and features ----------------------------------------------------------------------------

    def segments(self, ids: Iterable[int] | None = None) -> list[SegmentRow]:
        """Segment rows (all, or those of ``ids`` that exist, in the order of ``ids``)."""
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

    def segment_frames(self, rows: list[SegmentRow], adapter: str, dim: int) -> list[np.ndarray | None]:
        """fp16 ``[stop - first, D]`` frame features of each segment (None: no features for ``adapter``),
        reading only the chunks the segments cover."""
        chunk = self.frame_chunk
        wanted: dict[int, set[int]] = {}
        for row in rows:
            wanted.setdefault(row.file_id, set()).update(range(row.first // chunk, (row.stop - 1) // chunk + 1))
        loaded: dict[tuple[int, int], np.ndarray] = {}
        for file_id, chunks in wanted.items():
            chunks = sorted(chunks)
            marks = ",".join("?" * len(chunks))
            query = f"SELECT chunk, data FROM frames WHERE file_id = ? AND adapter = ? AND chunk IN ({marks})"
            for index, data in self.db.execute(query, (file_id, adapter, *chunks)):
                self.bytes_read += len(data)
                loaded[file_id, index] = np.frombuffer(data, dtype=np.float16).reshape(-1, dim)
        out = []
        for row in rows:
            parts = [loaded.get((row.file_id, c)) for c in range(row.first // chunk, (row.stop - 1) // chunk + 1)]
            if any(p is None for p in parts):
                out.append(None)
                continue
            block = parts[0] if len(parts) == 1 else np.concatenate(parts)
            offset = row.first - (row.first // chunk) * chunk
            frames = block[offset : offset + row.stop - row.first]
            out.append(frames if len(frames) == row.stop - row.first else None)
        return out

    def file_frames(self, file_id: int, adapter: str, dim: int) -> np.ndarray | None:
        """All of a file's fp16 frame features for ``adapter`` (None: none stored)."""
        rows = self.db.execute(
            "SELECT data FROM frames WHERE file_id = ? AND adapter = ? ORDER BY chunk", (file_id, adapter)
        ).fetchall()
        if not rows:
            return None
        return np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float16).reshape(-1, dim)

    def segment_vectors(self, adapter: str, dim: int, after_seq: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
        """(segment ids int64 [N], stage-1 vectors float32 [N, D], the largest ``seq`` read) of every segment
        whose ``adapter`` features were written after ``after_seq`` (0: all of them)."""
        rows = self.db.execute(
            "SELECT seq, file_id, segments FROM features WHERE adapter = ? AND seq > ? ORDER BY seq",
            (adapter, after_seq),
        ).fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, dim), np.float32), after_seq
        segment_ids: dict[int, list[int]] = {}
        files = [r[1] for r in rows]
        for chunk in _chunks(files, 500):
            marks = ",".join("?" * len(chunk))
            query = f"SELECT file_id, id FROM segments WHERE file_id IN ({marks}) ORDER BY file_id, first"
            for file_id, segment_id in self.db.execute(query, chunk):
                segment_ids.setdefault(file_id, []).append(segment_id)
        ids, vectors = [], []
        for _seq, file_id, blob in rows:
            block = np.frombuffer(blob, dtype=np.float32).reshape(-1, dim)
            ids += segment_ids[file_id]
            vectors.append(block)
        return np.asarray(ids, np.int64), np.concatenate(vectors), int(rows[-1][0])

    def counts(self) -> dict[str, int]:
        one = lambda q: int(self.db.execute(q).fetchone()[0])
        return {
            "files": one("SELECT COUNT(*) FROM files"),
            "segments": one("SELECT COUNT(*) FROM segments"),
            "frames": one("SELECT COALESCE(SUM(frame_count), 0) FROM files"),
            "problems": one("SELECT COUNT(*) FROM problems"),
        }


def _file_row(r) -> FileRow:
    stamp = Stamp(r[3], r[4], r[5], r[6])
    return FileRow(r[0], path_of(r[1]), r[2], stamp, r[7], r[8], np.frombuffer(r[9], dtype=np.float64))


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]
