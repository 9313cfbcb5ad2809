"""``cmadapter export``: an index's features as Parquet files that other engines read as they are.

    report = export_index("my_index", "my_export")   # segments.parquet, frames.parquet, export.json

``segments.parquet``, one row per segment: ``segment_id``, ``video_id``, ``video`` (the path, readable: bytes
that are not UTF-8 as ``\\xNN``), ``video_path`` (the path's exact bytes), ``kind``, ``start`` and ``end``
(seconds), ``first_frame`` and ``frame_count`` (its frames in ``frames.parquet``), and per adapter a column of its
stage-1 vector (``float[D]``: the L2-normalised mean of the segment's frame features; stage 1 ranks by the inner
product with the L2-normalised query vector, so a ``ORDER BY array_inner_product(...) DESC`` is stage 1).
``frames.parquet``, one row per indexed frame: ``video_id``, ``frame`` (its number in the video), ``time``
(seconds), and per adapter its feature (``float[D]``, raw as the head pools them; stored as float16 by the
index, written as float32, exactly). ``export.json`` says which model and adapters made them, their heads,
the column of each adapter, the normalisation and the index generation. A vector column is null where the index
holds no features of that adapter for a file (an adapter added while its files are still being encoded).

Everything comes from one ``Snapshot``: one generation of the index, even while an ``index`` run commits. The
files are written into a hidden folder beside ``out`` (``export.json`` last), synced, and renamed into place; a
previous export there is replaced only once the new one is complete, so a reader finds a whole export or none.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..files import TEMP_SUFFIX
from .errors import SearchError
from .files import display_path
from .schema import path_of
from .snapshot import Snapshot

FORMAT = "cmadapter-export"
VERSION = 1
MANIFEST = "export.json"
SEGMENTS, FRAMES = "segments.parquet", "frames.parquet"
_FRAMES_PER_BATCH = 50_000  # frames read and written at a time: memory stays bounded whatever the index's size


@dataclass
class ExportReport:
    out: Path
    generation: int
    videos: int
    segments: int
    frames: int
    adapters: dict[str, dict]


def export_index(root: str | Path, out: str | Path, *, frames_per_batch: int = _FRAMES_PER_BATCH) -> ExportReport:
    """Write the Parquet export of the index at ``root`` to the folder ``out`` (replacing an earlier export)."""
    import pyarrow.parquet as pq

    root, out = Path(root), Path(out)
    _check_target(out)
    partial = out.with_name(f".{out.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")
    snapshot = Snapshot(root)  # also checks that ``root`` is an index
    try:
        store = snapshot.store
        settings, dim = store.get_meta("settings"), store.get_meta("dim")
        if settings is None or dim is None:
            raise SearchError(f"{root} holds no indexed files yet; run `cmadapter index` to completion once")
        adapters = _adapter_columns(root, snapshot)
        partial.mkdir(parents=True)
        counts = {"videos": 0, "segments": 0, "frames": 0}
        schemas = _schemas(adapters, dim)
        with (
            pq.ParquetWriter(partial / SEGMENTS, schemas[0]) as segments_out,
            pq.ParquetWriter(partial / FRAMES, schemas[1]) as frames_out,
        ):
            for files in _file_batches(store, frames_per_batch):
                segment_table, frame_table = _tables(store, files, adapters, dim, schemas)
                segments_out.write_table(segment_table)
                frames_out.write_table(frame_table)
                counts["videos"] += len(files)
                counts["segments"] += segment_table.num_rows
                counts["frames"] += frame_table.num_rows
        manifest = _manifest(root, snapshot, settings, dim, adapters, counts)
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        for name in (SEGMENTS, FRAMES, MANIFEST):
            _sync(partial / name)
        _sync(partial, directory=True)
        _swap_in(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        snapshot.retire()
    return ExportReport(out, snapshot.generation, adapters=manifest["adapters"], **counts)


def _check_target(out: Path) -> None:
    """``out`` may be new, an empty folder, or an earlier export (which the new one replaces); nothing else."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise SearchError(f"{out} exists and is not a folder; give another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise SearchError(f"{out} is a folder that holds other files, not an earlier export; give another --out")


def _swap_in(partial: Path, out: Path) -> None:
    """Rename the complete export into place; an earlier one leaves only after the new one is there."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{secrets.token_hex(6)}{TEMP_SUFFIX}")
        os.replace(out, old)
    try:
        os.replace(partial, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    _sync(out.parent, directory=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _sync(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _adapter_columns(root: Path, snapshot: Snapshot) -> dict[str, dict]:
    """Per adapter: its checksum, method, head, and the names of its two columns (adapter names may hold any
    character; column names keep to letters, digits and ``_`` so every engine takes them unquoted)."""
    from ..checkpoint import load_adapter_checkpoint
    from ..heads import create_head
    from .adapter_files import adapter_path

    with snapshot.reading() as store:
        methods = dict(store.db.execute("SELECT name, method FROM adapters"))
    columns, taken = {}, set()
    for name, sha in snapshot.adapters.items():
        slug = re.sub(r"[^0-9A-Za-z_]", "_", name).lower()
        while slug in taken:
            slug += "_"
        taken.add(slug)
        if sha is None:
            head = {"name": "text-pool", "temperature": create_head("text-pool").temperature}  # the backbone's own
        else:
            head = dict(load_adapter_checkpoint(adapter_path(root, name, sha)).head)
        columns[name] = {
            "sha256": sha,
            "method": methods.get(name),
            "head": head,
            "vector_column": f"vector_{slug}",
            "feature_column": f"feature_{slug}",
        }
    return columns


def _schemas(adapters: dict[str, dict], dim: int):
    import pyarrow as pa

    vector = pa.list_(pa.float32(), dim)
    segments = pa.schema(
        [
            ("segment_id", pa.int64()), ("video_id", pa.int64()), ("video", pa.string()), ("video_path", pa.binary()),
            ("kind", pa.string()), ("start", pa.float64()), ("end", pa.float64()), ("first_frame", pa.int32()),
            ("frame_count", pa.int32()),
            *((a["vector_column"], vector) for a in adapters.values()),
        ]
    )  # fmt: skip
    frames = pa.schema(
        [
            ("video_id", pa.int64()), ("frame", pa.int32()), ("time", pa.float64()),
            *((a["feature_column"], vector) for a in adapters.values()),
        ]
    )  # fmt: skip
    return segments, frames


def _file_batches(store, frames_per_batch: int):
    """Files in id order, a batch at a time of about ``frames_per_batch`` frames: (id, path key, kind, times)."""
    batch, frames, after = [], 0, -1
    while True:
        rows = store.db.execute(
            "SELECT id, path, kind, times FROM files WHERE id > ? ORDER BY id LIMIT 256", (after,)
        ).fetchall()
        if not rows:
            break
        for file_id, key, kind, times in rows:
            batch.append((file_id, bytes(key), kind, np.frombuffer(times, dtype=np.float64)))
            frames += len(batch[-1][3])
            if frames >= frames_per_batch:
                yield batch
                batch, frames = [], 0
        after = rows[-1][0]
    if batch:
        yield batch


def _tables(store, files: list, adapters: dict[str, dict], dim: int, schemas):
    """The segments' and the frames' rows of a batch of files, as Arrow tables."""
    import pyarrow as pa

    ids = [f[0] for f in files]
    marks = ",".join("?" * len(ids))
    segments = store.db.execute(
        f'SELECT id, file_id, first, stop, start, "end" FROM segments WHERE file_id IN ({marks}) ORDER BY file_id, first',
        ids,
    ).fetchall()
    by_file = {f[0]: f for f in files}
    vectors = {name: np.zeros((len(segments), dim), np.float32) for name in adapters}
    vector_missing = {name: np.ones(len(segments), bool) for name in adapters}
    frame_offsets = np.cumsum([0, *(len(f[3]) for f in files)])
    features = {name: np.zeros((int(frame_offsets[-1]), dim), np.float32) for name in adapters}
    feature_missing = {name: np.ones(int(frame_offsets[-1]), bool) for name in adapters}
    rows_of = {}  # file id -> its segments' rows in this batch, in segment order (the order of its vectors)
    for row, segment in enumerate(segments):
        rows_of.setdefault(segment[1], []).append(row)
    for name in adapters:
        for file_id, blob in store.db.execute(
            f"SELECT file_id, segments FROM features WHERE adapter = ? AND file_id IN ({marks})", (name, *ids)
        ):
            block = np.frombuffer(blob, dtype=np.float32).reshape(-1, dim)
            rows = rows_of.get(file_id, [])
            if len(block) == len(rows):
                vectors[name][rows], vector_missing[name][rows] = block, False
        for position, file_id in enumerate(ids):
            frames = store.file_frames(file_id, name, dim)
            count = len(by_file[file_id][3])
            if frames is not None and len(frames) == count:
                span = slice(int(frame_offsets[position]), int(frame_offsets[position]) + count)
                features[name][span], feature_missing[name][span] = frames.astype(np.float32), False

    def column(matrix: np.ndarray, missing: np.ndarray):
        values = pa.array(matrix.reshape(-1), type=pa.float32())
        return pa.FixedSizeListArray.from_arrays(values, dim, mask=pa.array(missing) if missing.any() else None)

    segment_columns = [
        pa.array([s[0] for s in segments], pa.int64()),
        pa.array([s[1] for s in segments], pa.int64()),
        pa.array([display_path(path_of(by_file[s[1]][1])) for s in segments], pa.string()),
        pa.array([by_file[s[1]][1] for s in segments], pa.binary()),
        pa.array([by_file[s[1]][2] for s in segments], pa.string()),
        pa.array([s[4] for s in segments], pa.float64()),
        pa.array([s[5] for s in segments], pa.float64()),
        pa.array([s[2] for s in segments], pa.int32()),
        pa.array([s[3] - s[2] for s in segments], pa.int32()),
        *(column(vectors[name], vector_missing[name]) for name in adapters),
    ]
    frame_columns = [
        pa.array(np.repeat(ids, np.diff(frame_offsets)).astype(np.int64)),
        pa.array(np.concatenate([np.arange(len(f[3]), dtype=np.int32) for f in files])),
        pa.array(np.concatenate([f[3] for f in files])),
        *(column(features[name], feature_missing[name]) for name in adapters),
    ]
    return (
        pa.Table.from_arrays(segment_columns, schema=schemas[0]),
        pa.Table.from_arrays(frame_columns, schema=schemas[1]),
    )


def _manifest(root: Path, snapshot: Snapshot, settings: dict, dim: int, adapters: dict, counts: dict) -> dict:
    pretrained = settings.get("pretrained")
    return {
        "format": FORMAT,
        "version": VERSION,
        "index": display_path(str(root.absolute())),
        "generation": snapshot.generation,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "backbone": settings.get("backbone"),
            "pretrained": display_path(pretrained) if pretrained else None,
            "dim": dim,
            "precision": settings.get("precision"),
        },
        "sampling": {k: settings.get(k) for k in ("fps", "window", "stride", "window_frames", "stride_frames")},
        "adapters": adapters,
        "files": {"segments": SEGMENTS, "frames": FRAMES},
        "counts": counts,
        "normalisation": {
            "segment vectors": "float32 [dim]: mean of the segment's frame features, L2-normalised",
            "frame features": "float32 [dim]: the image tower's raw output with the adapter (not normalised; the"
            " index stores them as float16, exported exactly)",
            "stage 1": "inner product of the L2-normalised query vector with a segment vector (`cmadapter search"
            " INDEX 'words' --vector` prints the query vector)",
            "stage 2": "the adapter's head over the segment's frames (frames first_frame .. first_frame +"
            " frame_count - 1 of its video): text-pool weights frames by softmax(<query, frame> / temperature)"
            " and scores the cosine of the query with the weighted sum",
        },
    }
