"""What an index database holds: its schema and version, how paths are stored, the rows read back.

``store.py`` reads and writes it; ``migrate.py`` upgrades older versions to it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

FORMAT = "cmadapter-video-index"
VERSION = 2
DATABASE = "index.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS adapters (name TEXT PRIMARY KEY, sha256 TEXT, method TEXT);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path BLOB NOT NULL UNIQUE, kind TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, inode INTEGER NOT NULL,
    hash TEXT NOT NULL, frame_count INTEGER NOT NULL, times BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS files_hash ON files(hash);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    first INTEGER NOT NULL, stop INTEGER NOT NULL, start REAL NOT NULL, "end" REAL NOT NULL);
CREATE INDEX IF NOT EXISTS segments_file ON segments(file_id);
CREATE TABLE IF NOT EXISTS features (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE, adapter TEXT NOT NULL,
    segments BLOB NOT NULL, UNIQUE (file_id, adapter));
CREATE INDEX IF NOT EXISTS features_adapter ON features(adapter, seq);
CREATE TABLE IF NOT EXISTS frames (
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE, adapter TEXT NOT NULL,
    chunk INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (file_id, adapter, chunk));
CREATE TABLE IF NOT EXISTS problems (path BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (path BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER, count INTEGER NOT NULL);
"""


def frame_chunk_for(stride_frames: int) -> int:
    """Frames per stored chunk: the segment stride, so a window of two strides reads two chunks, no more
    (at least 4 frames a chunk, at most 64, to keep the rows few and small)."""
    return min(max(stride_frames, 4), 64)


def path_key(path: str) -> bytes:
    """A path as the database stores it: the file system's own bytes (any name, UTF-8 or not)."""
    return os.fsencode(path)


def path_of(key: bytes | str) -> str:
    """The path of a stored key (undecodable bytes become surrogate escapes, as ``os`` does)."""
    return os.fsdecode(key)


@dataclass(frozen=True)
class Stamp:
    """What tells a file changed without reading it: size, modification time, change time, inode."""

    size: int
    mtime_ns: int
    ctime_ns: int = 0
    inode: int = 0


@dataclass(frozen=True)
class FileRow:
    id: int
    path: str
    kind: str
    stamp: Stamp
    hash: str
    frame_count: int
    times: np.ndarray  # float64 [frame_count]: seconds of each stored frame

    @property
    def size(self) -> int:
        return self.stamp.size

    @property
    def mtime_ns(self) -> int:
        return self.stamp.mtime_ns


@dataclass(frozen=True)
class SegmentRow:
    id: int
    file_id: int
    first: int
    stop: int
    start: float
    end: float
