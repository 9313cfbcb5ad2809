"""`cmadapter bench search --parts store`: what stage 2 reads from a real index store of long videos.

Stage 2 needs each candidate segment's frame features (12 frames at 1 fps). An index of version 1 kept a
file's frames as one blob, so a candidate in a two-hour video read all 7,200 frames; version 2 keeps them in
chunks of the segment stride, so it reads the chunks the window covers. This builds one store through the
index's own writer (synthetic features, no decoding), with the version-1 blobs of the same features in a side
table, and reads every query's candidates both ways: bytes and milliseconds per query, in one run.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..search.encoder import ZERO_SHOT
from ..search.faiss_index import AnnIndex
from ..search.schema import Stamp, frame_chunk_for
from ..search.segments import Segment, segment_ranges, segment_vectors
from ..search.store import IndexStore


@dataclass
class StoreReadSettings:
    videos: int = 40
    minutes: float = 120.0  # each video's length; 1 frame per second
    dim: int = 512
    window: int = 12  # frames per segment
    stride: int = 6
    candidates: int = 200
    queries: int = 30
    seed: int = 0
    workdir: str | None = None


def store_reads(settings: StoreReadSettings) -> dict:
    rng = np.random.default_rng(settings.seed)
    frames_per_video = int(settings.minutes * 60)
    with tempfile.TemporaryDirectory(dir=settings.workdir, prefix="bench-store-") as tmp:
        store = IndexStore(Path(tmp) / "index", readonly=False, create=True)
        try:
            with store.transaction():
                store.set_meta("frame_chunk", frame_chunk_for(settings.stride))
                store.set_meta("dim", settings.dim)
            store.db.execute("CREATE TABLE version_1_frames (file_id INTEGER PRIMARY KEY, frames BLOB NOT NULL)")
            ids, vectors = [], []
            for v in range(settings.videos):
                features = _video_features(rng, frames_per_video, settings.dim)
                ranges = [(s.first, s.stop) for s in segment_ranges(frames_per_video, settings.window, settings.stride)]
                with store.transaction():
                    file_id = store.put_file(
                        f"/synthetic/video{v}.mp4", "video", Stamp(1, 1), f"hash{v}",
                        np.arange(frames_per_video, dtype=np.float64), _segments(ranges), 1.0,
                    )  # fmt: skip
                    store.put_features(file_id, ZERO_SHOT, features, segment_vectors(features, ranges))
                    store.db.execute("INSERT INTO version_1_frames VALUES (?, ?)", (file_id, features.tobytes()))
                rows = store.db.execute("SELECT id FROM segments WHERE file_id = ? ORDER BY first", (file_id,))
                ids += [r[0] for r in rows]
                vectors.append(segment_vectors(features, ranges))
            stage1 = AnnIndex.build(np.concatenate(vectors), np.asarray(ids), "Flat")
            before, after = [], []
            for _ in range(settings.queries + 2):  # two warm-up queries: both layouts read from the page cache
                query = rng.standard_normal((1, settings.dim)).astype(np.float32)
                candidates, _ = stage1.search(query / np.linalg.norm(query), settings.candidates)
                rows = store.segments(candidates[0])
                after.append(_read_chunks(store, rows, settings.dim))
                before.append(_read_blobs(store, rows, settings.dim))
            before, after = before[2:], after[2:]
        finally:
            store.close()
    median = lambda values, i: float(np.median([v[i] for v in values]))
    return {
        "videos": settings.videos,
        "frames_per_video": frames_per_video,
        "segments": len(ids),
        "candidates": settings.candidates,
        "bytes_needed_per_query": settings.candidates * settings.window * settings.dim * 2,
        "version_1_bytes_per_query": median(before, 0),
        "version_2_bytes_per_query": median(after, 0),
        "version_1_ms_per_query": round(1000 * median(before, 1), 2),
        "version_2_ms_per_query": round(1000 * median(after, 1), 2),
        "bytes_ratio": round(median(before, 0) / median(after, 0), 1),
    }


def _read_chunks(store: IndexStore, rows, dim: int) -> tuple[int, float]:
    """Stage 2's read as the index does it now: (bytes, seconds)."""
    began, read = time.perf_counter(), store.bytes_read
    frames = store.segment_frames(rows, ZERO_SHOT, dim)
    assert all(f is not None for f in frames)
    return store.bytes_read - read, time.perf_counter() - began


def _read_blobs(store: IndexStore, rows, dim: int) -> tuple[int, float]:
    """Stage 2's read as version 1 did it: every candidate file's whole frame blob, then the windows sliced."""
    began, read = time.perf_counter(), 0
    files = sorted({r.file_id for r in rows})
    blobs = {}
    for start in range(0, len(files), 500):
        chunk = files[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for file_id, blob in store.db.execute(
            f"SELECT file_id, frames FROM version_1_frames WHERE file_id IN ({marks})", chunk
        ):
            read += len(blob)
            blobs[file_id] = np.frombuffer(blob, dtype=np.float16).reshape(-1, dim)
    _ = [blobs[r.file_id][r.first : r.stop] for r in rows]
    return read, time.perf_counter() - began


def _video_features(rng: np.random.Generator, frames: int, dim: int) -> np.ndarray:
    """A video's frame features: scenes of a few dozen seconds, frames varying around each scene (fp16)."""
    scenes = rng.standard_normal((frames // 30 + 1, dim)).astype(np.float32)
    per_frame = np.repeat(scenes, 30, axis=0)[:frames] + 0.3 * rng.standard_normal((frames, dim), dtype=np.float32)
    return (10 * per_frame / np.linalg.norm(per_frame, axis=1, keepdims=True)).astype(np.float16)


def _segments(ranges: list[tuple[int, int]]) -> list[Segment]:
    return [Segment(a, b) for a, b in ranges]


def format_store_reads(result: dict) -> str:
    return (
        f"stage 2 over a store of {result['videos']} videos x {result['frames_per_video']} frames "
        f"({result['segments']} segments), {result['candidates']} candidates per query: version 1 (a file's "
        f"frames in one blob) read {result['version_1_bytes_per_query'] / 2**20:.1f} MiB in "
        f"{result['version_1_ms_per_query']} ms, version 2 (chunks) {result['version_2_bytes_per_query'] / 2**20:.2f} MiB "
        f"in {result['version_2_ms_per_query']} ms ({result['bytes_ratio']}x fewer bytes; the windows themselves "
        f"are {result['bytes_needed_per_query'] / 2**20:.2f} MiB)"
    )
