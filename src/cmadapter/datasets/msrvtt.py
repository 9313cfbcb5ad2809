"""MSR-VTT, with the files CLIP4Clip distributes (``msrvtt_data.zip``).

- ``MSRVTT_data.json``: ``{"videos": [...], "sentences": [{"caption", "video_id", "sen_id"}, ...]}``
- ``MSRVTT_train.9k.csv`` / ``MSRVTT_train.7k.csv``: header ``video_id``, one training video per line
- ``MSRVTT_JSFUSION_test.csv``: header ``,key,vid_key,video_id,sentence``: the 1k-A test set

Splits: ``train`` (the 9k list by default, ``train_list="7k"`` for the 7k one; every caption of a
training video is a record, ~20 per video, in the order of ``MSRVTT_data.json``) and ``test`` (1k-A:
1,000 videos, one caption each, in the order of the csv).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .annotations import caption_text, read_csv, read_json, require
from .records import Record

SPLITS = ("train", "test")
TRAIN_LISTS = {"9k": "MSRVTT_train.9k.csv", "7k": "MSRVTT_train.7k.csv"}
DATA_FILE = "MSRVTT_data.json"
TEST_FILE = "MSRVTT_JSFUSION_test.csv"


def read(annotations: Path, split: str, *, train_list: str = "9k") -> list[Record]:
    if split == "test":
        return _test_records(require(annotations, TEST_FILE, "the 1k-A test split"))
    if train_list not in TRAIN_LISTS:
        raise DataError(f"msrvtt: train_list must be one of {', '.join(TRAIN_LISTS)}, got {train_list!r}")
    list_path = require(annotations, TRAIN_LISTS[train_list], f"the {train_list} training list")
    video_lines = {}
    for number, row in read_csv(list_path, ["video_id"]):
        if row["video_id"] in video_lines:
            raise DataError(
                f"{list_path} line {number}: video {row['video_id']!r} repeats line {video_lines[row['video_id']]}"
            )
        video_lines[row["video_id"]] = number
    records = [r for r in _sentences(require(annotations, DATA_FILE), split) if r.video_id in video_lines]
    captioned = {r.video_id for r in records}
    uncaptioned = [v for v in video_lines if v not in captioned]
    if uncaptioned:
        raise DataError(
            f"{list_path} line {video_lines[uncaptioned[0]]}: video {uncaptioned[0]!r} has no caption in {DATA_FILE}"
            + (f" (nor do {len(uncaptioned) - 1} other training videos)" if len(uncaptioned) > 1 else "")
        )
    return records


def _test_records(path: Path) -> list[Record]:
    """1k-A has one caption per video: a repeated video would silently change the number of queries."""
    lines: dict[str, int] = {}
    records = []
    for number, row in read_csv(path, ["video_id", "sentence"]):
        if row["video_id"] in lines:
            raise DataError(
                f"{path} line {number}: video {row['video_id']!r} repeats line {lines[row['video_id']]} "
                "(the 1k-A test set has one caption per video)"
            )
        lines[row["video_id"]] = number
        records.append(Record(row["video_id"], row["sentence"], "test"))
    return records


def _sentences(path: Path, split: str) -> list[Record]:
    data = read_json(path)
    sentences = data.get("sentences") if isinstance(data, dict) else None
    if not isinstance(sentences, list):
        raise DataError(f"{path}: expected an object with a 'sentences' list")
    records = []
    for i, entry in enumerate(sentences):
        where = f"{path}: sentences[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("video_id"), str) or not entry["video_id"]:
            raise DataError(f"{where}: expected an object with a 'video_id' string, got {entry!r}"[:300])
        records.append(Record(entry["video_id"], caption_text(entry.get("caption"), f"{where} 'caption'"), split))
    return records
