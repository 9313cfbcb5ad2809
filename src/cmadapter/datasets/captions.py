"""Your own data: a captions table (CSV, TSV, JSON lines or Parquet), one row per caption.

``data.annotations`` is the table's path; ``data.videos`` the folder its video paths are relative to.

    video,caption,start,end,split
    beach/clip01.mp4,waves roll onto a sandy beach,,,train
    beach/clip01.mp4,a quiet shore at sunset,,,train
    interviews/long.mp4,a woman answers a question,12.5,20,test
    photos/dog.jpg,a dog on a red sofa,,,val

- ``video``: a path relative to ``data.videos``, or absolute: a video file, a frame folder, or an image file
  (a one-frame clip, as in Flickr30K). The path is the video's id (in the frame cache too).
- ``caption``: the text.
- ``start``, ``end`` (optional, seconds, empty = open): a moment inside a longer video; only that window is
  sampled. Rows of one video with different windows are different moments, each its own item in evaluation.
- ``split`` (optional): ``train``, ``val`` or ``test``; a video stays in one split.

Several rows of one video (and window) are several captions: multi-caption evaluation, as for MSR-VTT and
Flickr30K. Options (``data.dataset_options``): ``columns`` renames them (``{video: filepath, caption: title}``);
without a split column, ``val_fraction`` (0.1), ``test_fraction`` (0.1) and ``split_seed`` (0) split by video
(``splits.py``), or ``split_file`` (written by a training run) gives the split.
"""

from __future__ import annotations

import logging
import math
import posixpath
from pathlib import Path
from typing import Any

from ..errors import DataError
from .annotations import EmptySplit
from .records import Record
from .splits import (
    SPLITS,
    TEST_FRACTION,
    VAL_FRACTION,
    apply_split_file,
    read_split_file,
    seeded_split,
)
from .table_files import Table, read_table

log = logging.getLogger(__name__)

__all__ = ["ANNOTATIONS", "COLUMNS", "MOMENTS", "SPLITS", "CaptionTable", "read"]

ANNOTATIONS = "file"  # data.annotations is the table itself
MOMENTS = True  # each window of a video is an item of its own
COLUMNS = ("video", "caption", "start", "end", "split")
REQUIRED = ("video", "caption")


def read(
    table: Path,
    split: str,
    *,
    columns: dict[str, str] | None = None,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
    split_seed: int = 0,
    split_file: str | None = None,
) -> list[Record]:
    options = dict(columns=columns, val_fraction=val_fraction, test_fraction=test_fraction)
    return CaptionTable(table, **options, split_seed=split_seed, split_file=split_file).records(split)


class CaptionTable:
    """A captions table read and split once: the records of each split, and the split it drew (if it did)."""

    def __init__(
        self,
        table: str | Path,
        *,
        columns: dict[str, str] | None = None,
        val_fraction: float = VAL_FRACTION,
        test_fraction: float = TEST_FRACTION,
        split_seed: int = 0,
        split_file: str | None = None,
    ):
        self.path = Path(table)
        self.rows = CaptionRows.read(self.path, columns)
        if self.rows.splits is not None:
            if split_file:
                log.warning("%s has a split column: ignoring split_file %s", self.path, split_file)
            self.drawn = None
            self.splits = self.rows.splits
            return
        if split_file:
            self.drawn = None
            by_video = apply_split_file(self.rows.videos, read_split_file(split_file), str(split_file))
        else:
            self.drawn = by_video = seeded_split(
                self.rows.videos, val_fraction=val_fraction, test_fraction=test_fraction, seed=split_seed
            )
        self.splits = [by_video.get(v) for v in self.rows.videos]

    def own_split(self) -> dict[str, str] | None:
        """The seeded split by video a training run writes down; None when the table has a split column or a
        split file gave it."""
        return None if self.drawn is None else dict(self.drawn)

    def records(self, split: str) -> list[Record]:
        rows = self.rows
        records = [
            Record(video, caption, name, start, end, line=line)
            for video, caption, start, end, name, line in zip(
                rows.videos, rows.captions, rows.starts, rows.ends, self.splits, rows.table.lines
            )
            if name == split
        ]
        if not records:
            counts = ", ".join(f"{s} {self.splits.count(s)}" for s in SPLITS)
            hint = " (set data.val_split=null to train without validation)" if split == "val" else ""
            raise EmptySplit(f"{self.path}: no rows in split {split!r} (rows per split: {counts}){hint}")
        return records


class CaptionRows:
    """The checked rows of a captions table, column by column."""

    def __init__(self, table: Table, names: dict[str, str]):
        self.table = table
        cols = table.columns
        where = table.where
        self.videos = _videos(cols[names["video"]], names["video"], where)
        self.captions = [_caption(c, names["caption"], where, i) for i, c in enumerate(cols[names["caption"]])]
        count = len(table)
        self.starts = _seconds_column(cols.get(names["start"]), names["start"], where, count)
        self.ends = _seconds_column(cols.get(names["end"]), names["end"], where, count)
        for i, (start, end) in enumerate(zip(self.starts, self.ends)):
            if start is not None and end is not None and start >= end:
                raise DataError(f"{where(i)}: {names['start']} {start:g} is not before {names['end']} {end:g}")
        self.splits = None if names["split"] not in cols else self._split_column(cols[names["split"]], names["split"])

    @classmethod
    def read(cls, path: Path, columns: dict[str, str] | None) -> CaptionRows:
        names = column_names(columns)
        optional = [names[c] for c in COLUMNS if c not in REQUIRED]
        table = read_table(path, [names[c] for c in REQUIRED], optional)
        if not len(table):
            raise DataError(f"{path}: the table has no rows")
        return cls(table, names)

    def _split_column(self, values: list[Any], column: str) -> list[str]:
        where = self.table.where
        first: dict[str, tuple[str, int]] = {}  # video -> (its split, its first row)
        for i, (video, name) in enumerate(zip(self.videos, values)):
            if name not in SPLITS:
                raise DataError(f"{where(i)}: {column} {name!r} is not one of {', '.join(SPLITS)}")
            seen = first.setdefault(video, (name, i))
            if seen[0] != name:
                raise DataError(
                    f"{where(i)}: video {video!r} is in split {name!r} here and in {seen[0]!r} at "
                    f"{self.table.unit} {self.table.lines[seen[1]]}; a video stays in one split"
                )
        return values


def column_names(columns: dict[str, str] | None) -> dict[str, str]:
    """Our column -> the table's, from the ``columns`` option (the others keep their names)."""
    columns = columns or {}
    if not isinstance(columns, dict):
        raise DataError(f"columns must map our column names to yours, e.g. {{video: filepath}}, got {columns!r}")
    unknown = sorted(set(columns) - set(COLUMNS))
    if unknown:
        raise DataError(f"columns: {unknown[0]!r} is not one of ours ({', '.join(COLUMNS)})")
    names = {c: columns.get(c, c) for c in COLUMNS}
    for ours, theirs in names.items():
        if not isinstance(theirs, str) or not theirs:
            raise DataError(f"columns: {ours} must name a column, got {theirs!r}")
    taken = sorted(n for n in set(names.values()) if list(names.values()).count(n) > 1)
    if taken:
        raise DataError(f"columns: {taken[0]!r} is given to two of ours ({', '.join(COLUMNS)})")
    return names


def _videos(values: list[Any], column: str, where) -> list[str]:
    """Each row's video path, normalised (``./a/../b.mp4`` is ``b.mp4``); checked once per distinct value."""
    known: dict[str, str] = {}
    out = []
    for i, value in enumerate(values):
        path = known.get(value) if isinstance(value, str) else None
        if path is None:
            path = _video(value, column, where, i)
            known[value] = path
        out.append(path)
    return out


def _video(value: Any, column: str, where, i: int) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{where(i)}: empty {column}")
    if not isinstance(value, str):
        raise DataError(f"{where(i)}: {column} must be a path, got {value!r}")
    return posixpath.normpath(value.strip())


def _caption(value: Any, column: str, where, i: int) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{where(i)}: empty {column}")
    if not isinstance(value, str):
        raise DataError(f"{where(i)}: {column} must be text, got {value!r}")
    return value.strip()


def _seconds_column(values: list[Any] | None, column: str, where, count: int) -> list[float | None]:
    if values is None:
        return [None] * count
    return [_seconds(v, column, where, i) for i, v in enumerate(values)]


def _seconds(value: Any, column: str, where, i: int) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DataError(f"{where(i)}: {column} must be a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except ValueError:
        raise DataError(f"{where(i)}: {column} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise DataError(f"{where(i)}: {column} must be a finite number of seconds >= 0, got {value!r}")
    return seconds
