"""The files behind search results, addressed by index id only: videos, frame thumbnails, exported clips.

A client never names a path: it names a video or segment id, and the path comes from the index. Nothing
here writes to the index; thumbnails are kept in memory and clips in a temporary folder of the server's.
"""

from __future__ import annotations

import io
import tempfile
import threading
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import CmadapterError, DataError
from ..search.store import IndexStore
from ..video.grid import decode_path_grid
from ..video.sampling import exact
from .clips import clip_suffix, export_clip

THUMBNAIL_SHORT_SIDE = 96


class MediaNotFound(CmadapterError):
    """An id the index does not hold, or a file gone since indexing (HTTP 404)."""


class MediaLibrary:
    def __init__(self, index_root: str | Path, *, thumbnail_cache: int = 4096):
        self.root = Path(index_root)
        self._local = threading.local()  # one read-only SQLite connection per server thread
        self._thumbs: OrderedDict[tuple[int, int], bytes] = OrderedDict()  # (video id, grid point) -> JPEG
        self._thumb_limit = thumbnail_cache
        self._thumb_lock = threading.Lock()
        self._clips = tempfile.TemporaryDirectory(prefix="cmadapter-clips-")
        settings = self._store().get_meta("settings") or {}
        self.rate = exact(settings.get("fps", 1))

    def close(self) -> None:
        self._clips.cleanup()

    def _store(self) -> IndexStore:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = IndexStore(self.root, readonly=True)
        return store

    # ---- lookups -------------------------------------------------------------------------------------------

    def video(self, video_id: int):
        row = self._store().file(video_id)
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

    def segment(self, segment_id: int):
        rows = self._store().segments([segment_id])
        if not rows:
            raise MediaNotFound(f"no segment {segment_id} in this index")
        return rows[0]

    # ---- thumbnails ----------------------------------------------------------------------------------------

    def thumbnail(self, segment_id: int, frame: int) -> bytes:
        """JPEG of the segment's ``frame``-th frame: the very frame the index encoded (same grid, same decoder).

        A miss decodes the whole segment in one pass (the page asks for all of its frames) and keeps each
        frame under its video and grid point, which neighbouring segments (they overlap) share."""
        segment = self.segment(segment_id)
        if not 0 <= frame < segment.stop - segment.first:
            raise MediaNotFound(f"segment {segment_id} has {segment.stop - segment.first} frames, not a frame {frame}")
        key = (segment.file_id, segment.first + frame)
        with self._thumb_lock:
            if key in self._thumbs:
                self._thumbs.move_to_end(key)
                return self._thumbs[key]
        row = self.video(segment.file_id)
        path = Path(row.path)
        if not path.exists():
            raise MediaNotFound(f"video {row.id} ({path.name}) was deleted or moved since it was indexed")
        points = range(segment.first, segment.stop)
        rate = self.rate if row.kind != "image" else Fraction(1)
        try:
            grid = decode_path_grid(
                path, rate, THUMBNAIL_SHORT_SIDE, lambda count: sorted({min(p, count - 1) for p in points})
            )
        except DataError as exc:
            raise MediaNotFound(f"video {row.id} ({path.name}) cannot be read now: {exc}") from exc
        decoded = dict(zip(grid.points, grid.frames))
        last = max(decoded)  # a file shortened since indexing: its last frame stands for the missing ones (as before)
        jpegs = {(row.id, p): _jpeg(decoded.get(p, decoded[last])) for p in points}
        with self._thumb_lock:
            self._thumbs.update(jpegs)
            for done in jpegs:
                self._thumbs.move_to_end(done)
            while len(self._thumbs) > self._thumb_limit:
                self._thumbs.popitem(last=False)
        return jpegs[key]

    # ---- clips ---------------------------------------------------------------------------------------------

    def clip(self, segment_id: int) -> tuple[Path, str]:
        """An exported file of the segment (made once per segment) and the download name."""
        segment = self.segment(segment_id)
        if self.video(segment.file_id).kind == "image":
            raise MediaNotFound(
                f"segment {segment_id} is a photo: it has no clip (the photo is /api/media/{segment.file_id})"
            )
        source = self.video_file(segment.file_id)
        suffix = clip_suffix(source)
        out = Path(self._clips.name) / f"segment-{segment_id}{suffix}"
        if not out.is_file():
            partial = out.with_name(f".partial-{threading.get_ident()}-{out.name}")
            export_clip(source, segment.start, segment.end, partial)
            partial.replace(out)
        name = f"{source.stem}_{segment.start:.0f}-{segment.end:.0f}s{suffix}"
        return out, name


def _jpeg(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
