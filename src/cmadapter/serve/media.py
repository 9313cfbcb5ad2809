"""The files behind search results, addressed by index id only: videos, frame thumbnails, exported clips.

A client never names a path: it names a video or segment id, and the path comes from the index. Nothing
here writes to the index; thumbnails are kept in memory and clips in a temporary folder of the server's
(``exports.py``: bounded in bytes and in exports at once). Identical misses in flight are done once.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import CmadapterError, DataError
from ..search.files import display_path
from ..search.store import IndexStore
from ..video.grid import decode_path_grid
from ..video.sampling import exact
from ..video.seek import decode_points
from .clips import clip_suffix, export_clip
from .exports import ClipExports, ClipLimits
from .file_response import NotARegularFile, OpenedFile, open_file
from .inflight import SingleFlight

THUMBNAIL_SHORT_SIDE = 96
MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger id is no row, not an overflow


class MediaNotFound(CmadapterError):
    """An id the index does not hold, or a file gone since indexing (HTTP 404)."""


class MediaLibrary:
    def __init__(self, index_root: str | Path, *, thumbnail_cache: int = 4096, clips: ClipLimits | None = None):
        self.root = Path(index_root)
        self._local = threading.local()  # one read-only SQLite connection per server thread
        self._thumbs: OrderedDict[tuple, bytes] = OrderedDict()  # (video version, grid point) -> JPEG
        self._thumb_limit = thumbnail_cache
        self._thumb_lock = threading.Lock()
        self._flight = SingleFlight()
        self.exports = ClipExports(clips)
        settings = self._store().get_meta("settings") or {}
        self.rate = exact(settings.get("fps", 1))

    def close(self) -> None:
        self.exports.close()

    def _store(self) -> IndexStore:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = IndexStore(self.root, readonly=True)
        return store

    # ---- lookups -------------------------------------------------------------------------------------------

    def video(self, video_id: int):
        row = self._store().file(video_id) if 0 <= video_id <= MAX_ID else None
        if row is None:
            raise MediaNotFound(f"no video {video_id} in this index")
        return row

    def video_file(self, video_id: int) -> Path:
        """The path of an indexed video; MediaNotFound if it was deleted or replaced since indexing."""
        row = self.video(video_id)
        path = Path(row.path)
        if not path.exists():
            raise MediaNotFound(f"video {video_id} ({path.name}) was deleted or moved since it was indexed")
        if path.is_dir():
            raise MediaNotFound(f"video {video_id} ({path.name}) is a folder of frames, not a playable file")
        if path.stat().st_size != row.size:
            raise MediaNotFound(f"video {video_id} ({path.name}) changed since it was indexed; rerun `cmadapter index`")
        return path

    def open_video(self, video_id: int) -> OpenedFile:
        """An indexed video opened for sending; the size check is made on the open descriptor (``fstat``), so
        the bytes sent are those of the file checked, whatever happens to the path meanwhile."""
        path = self.video_file(video_id)
        try:
            opened = open_file(path)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise MediaNotFound(f"video {video_id} ({path.name}) was deleted or moved since it was indexed") from exc
        except NotARegularFile as exc:
            raise MediaNotFound(f"video {video_id} ({path.name}) is not a playable file") from exc
        if opened.size != self.video(video_id).size:
            opened.close()
            raise MediaNotFound(f"video {video_id} ({path.name}) changed since it was indexed; rerun `cmadapter index`")
        return opened

    def segment(self, segment_id: int):
        rows = self._store().segments([segment_id]) if 0 <= segment_id <= MAX_ID else []
        if not rows:
            raise MediaNotFound(f"no segment {segment_id} in this index")
        return rows[0]

    # ---- thumbnails ----------------------------------------------------------------------------------------

    def thumbnail(self, segment_id: int, frame: int) -> bytes:
        """JPEG of the segment's ``frame``-th frame: the very frame the index encoded (same grid, same decoder).

        A miss decodes the segment's frames only (seeking to the keyframe before it) and keeps each under its
        video and grid point, which neighbouring segments (they overlap) share. Concurrent misses for one
        segment (a page asks for all of its frames at once) wait for one decode."""
        segment = self.segment(segment_id)
        if not 0 <= frame < segment.stop - segment.first:
            raise MediaNotFound(f"segment {segment_id} has {segment.stop - segment.first} frames, not a frame {frame}")
        row = self.video(segment.file_id)
        version = (row.id, row.size, row.mtime_ns)  # a file re-indexed under the same id gets new thumbnails
        key = (version, segment.first + frame)
        found = self._cached([key])
        if found:
            return found[key]
        jpegs = self._flight.do((version, segment.first, segment.stop), lambda: self._decode_thumbnails(row, segment))
        return jpegs[key]

    def _cached(self, keys: list) -> dict | None:
        with self._thumb_lock:
            if not all(key in self._thumbs for key in keys):
                return None
            for key in keys:
                self._thumbs.move_to_end(key)
            return {key: self._thumbs[key] for key in keys}

    def _decode_thumbnails(self, row, segment) -> dict:
        version = (row.id, row.size, row.mtime_ns)
        points = list(range(segment.first, segment.stop))
        found = self._cached([(version, p) for p in points])  # made by a decode that ended since our miss
        if found:
            return found
        path = Path(row.path)
        if not path.exists():
            raise MediaNotFound(f"video {row.id} ({path.name}) was deleted or moved since it was indexed")
        try:
            if row.kind == "video":
                frames = decode_points(path, self.rate, THUMBNAIL_SHORT_SIDE, points).frames
            else:  # a frame folder, or a photo (one frame at time 0)
                rate = self.rate if row.kind != "image" else Fraction(1)
                grid = decode_path_grid(
                    path, rate, THUMBNAIL_SHORT_SIDE, lambda count: sorted({min(p, count - 1) for p in points})
                )
                decoded = dict(zip(grid.points, grid.frames))
                last = max(decoded)  # a folder shortened since indexing: its last frame stands for the missing ones
                frames = {p: decoded.get(p, decoded[last]) for p in points}
        except DataError as exc:
            raise MediaNotFound(f"video {row.id} ({path.name}) cannot be read now: {exc}") from exc
        jpegs = {(version, p): _jpeg(frames[p]) for p in points}
        with self._thumb_lock:
            self._thumbs.update(jpegs)
            for done in jpegs:
                self._thumbs.move_to_end(done)
            while len(self._thumbs) > self._thumb_limit:
                self._thumbs.popitem(last=False)
        return jpegs

    # ---- clips ---------------------------------------------------------------------------------------------

    def clip(self, segment_id: int) -> OpenedFile:
        """The segment exported as a file (made once, kept within the export limits), opened, with its download
        name; a segment longer than ``ClipLimits.max_seconds`` is cut to that length from its start."""
        segment = self.segment(segment_id)
        row = self.video(segment.file_id)
        if row.kind == "image":
            raise MediaNotFound(
                f"segment {segment_id} is a photo: it has no clip (the photo is /api/media/{segment.file_id})"
            )
        source = self.video_file(segment.file_id)
        limits = self.exports.limits
        start, end = segment.start, min(segment.end, segment.start + limits.max_seconds)
        suffix = clip_suffix(source)
        # Named by what it is cut from, so a file re-indexed under the same id is cut again.
        name = f"clip-{row.id}-{row.size}-{row.mtime_ns}-{round(start * 1000)}-{round(end * 1000)}{suffix}"
        download = display_path(f"{source.stem}_{start:.0f}-{end:.0f}s{suffix}")
        return self.exports.get(
            name, lambda out: export_clip(source, start, end, out, short_side=limits.short_side), download
        )


def _jpeg(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
