"""VATEX (English captions), on the common 25,991 / 1,500 / 1,500 split.

- captions: VATEX's own JSON files, lists of ``{"videoID": ..., "enCap": [10 captions], ...}``:
  ``vatex_training_v1.0.json`` and ``vatex_validation_v1.0.json`` (the 1,500 val and 1,500 test videos
  of the common split both come from VATEX's validation set); any of them may be missing if the
  split's videos are in the others. ``captions=[...]`` names other files of the same format.
- ``train_list.txt``, ``val_list.txt``, ``test_list.txt``: the split's video ids, one per line.

Every English caption is a record (10 per video), in list order; val and test are multi-caption.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .annotations import caption_text, optional_file, read_id_list, read_json, require
from .records import Record

SPLITS = ("train", "val", "test")
CAPTION_FILES = ("vatex_training_v1.0.json", "vatex_validation_v1.0.json")


def read(annotations: Path, split: str, *, captions: list[str] | None = None) -> list[Record]:
    list_path = require(annotations, f"{split}_list.txt")
    video_ids = read_id_list(list_path)
    names = captions or [name for name in CAPTION_FILES if optional_file(annotations, name) is not None]
    if not names:
        raise DataError(f"no VATEX caption file in {annotations} (expected {' or '.join(CAPTION_FILES)})")
    by_video: dict[str, list[str]] = {}
    for name in names:
        by_video.update(_captions(require(annotations, name)))
    records = []
    for number, video_id in enumerate(video_ids, start=1):
        if video_id not in by_video:
            raise DataError(f"{list_path} line {number}: video {video_id!r} has no captions in {', '.join(names)}")
        records += [Record(video_id, caption, split) for caption in by_video[video_id]]
    return records


def _captions(path: Path) -> dict[str, list[str]]:
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of {{'videoID', 'enCap'}} objects")
    by_video = {}
    for i, entry in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("videoID"), str) or not entry["videoID"]:
            raise DataError(f"{where}: expected an object with a 'videoID' string"[:300])
        english = entry.get("enCap")
        if not isinstance(english, list) or not english:
            raise DataError(f"{where} ({entry['videoID']!r}): 'enCap' must be a non-empty list of captions")
        by_video[entry["videoID"]] = [
            caption_text(c, f"{where} ({entry['videoID']!r}) enCap[{j}]") for j, c in enumerate(english)
        ]
    return by_video
