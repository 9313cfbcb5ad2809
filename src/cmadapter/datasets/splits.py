"""A seeded split by video for data that comes without one, and the split file a run keeps of it.

Each video (never a caption, never a moment) goes to exactly one split: of the ``n`` videos, sorted by name
and permuted by ``seed``, the first ``round(test_fraction * n)`` are ``test``, the next
``round(val_fraction * n)`` ``val``, the rest ``train``; a fraction above zero holds out at least one video.
The permutation depends on the set of videos and the seed only, never on the order of the rows.

A training run writes the split it used to ``<run>/splits.csv`` (header ``video,split``) and names it in its
``config.yaml`` (``data.dataset_options.split_file``), so ``eval``, ``report`` and a resumed run read the same
split even after rows are added to the table.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files import atomic_write_text

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
VAL_FRACTION = 0.1
TEST_FRACTION = 0.1
SPLIT_FILE = "splits.csv"


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise DataError(f"{name} must be a number in [0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1:
        raise DataError(
            f"val_fraction + test_fraction must leave videos to train on, got {val_fraction + test_fraction}"
        )


def seeded_split(videos: Iterable[str], *, val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """video -> "train", "val" or "test" (see the module's docstring)."""
    check_fractions(val_fraction, test_fraction)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"split_seed must be a non-negative integer, got {seed!r}")
    names = sorted(set(videos))
    count = len(names)
    held = [_held_out(fraction, count) for fraction in (test_fraction, val_fraction)]
    if count - sum(held) < 1:
        raise DataError(
            f"{count} videos are too few to hold out {held[1]} for val and {held[0]} for test and still train; "
            "add videos, lower val_fraction/test_fraction, or give a split column"
        )
    order = np.random.default_rng(seed).permutation(count)
    split = dict.fromkeys(names, "train")
    for position, index in enumerate(order[: held[0] + held[1]]):
        split[names[index]] = "test" if position < held[0] else "val"
    return split


def _held_out(fraction: float, count: int) -> int:
    return 0 if fraction == 0 else max(1, round(fraction * count))


def write_split_file(split: dict[str, str], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["video", "split"])
    writer.writerows(sorted(split.items()))
    atomic_write_text(path, buffer.getvalue())


def read_split_file(path: str | Path) -> dict[str, str]:
    """video -> split, as ``write_split_file`` wrote it."""
    from .table_files import read_table

    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise DataError(f"split file {path}: expected a .csv file with columns video, split")
    table = read_table(path, ["video", "split"])
    split: dict[str, str] = {}
    for i, (video, name) in enumerate(zip(table.columns["video"], table.columns["split"])):
        if name not in SPLITS:
            raise DataError(f"{table.where(i)}: split {name!r} is not one of {', '.join(SPLITS)}")
        if video in split:
            raise DataError(f"{table.where(i)}: video {video!r} is listed twice")
        split[video] = name
    return split


def apply_split_file(videos: Iterable[str], split: dict[str, str], source: str) -> dict[str, str]:
    """The split of each of ``videos`` by a split file; videos it does not list are left out, and said so."""
    videos = list(dict.fromkeys(videos))
    unknown = [v for v in videos if v not in split]
    if unknown:
        log.warning(
            "%s lists no split for %d of %d videos (added since it was written?), e.g. %r: leaving them out",
            source,
            len(unknown),
            len(videos),
            unknown[0],
        )
    return {v: split[v] for v in videos if v in split}
