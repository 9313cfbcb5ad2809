"""MSVD, with the files CLIP4Clip distributes (``msvd_data.zip``).

- ``raw-captions.pkl``: ``{video_id: [[token, token, ...], ...]}``, about 40 captions per video
- ``train_list.txt``, ``val_list.txt``, ``test_list.txt``: one video id per line (1200 / 100 / 670)

Every caption is a record, in list order then caption order; the test split is multi-caption (the
evaluator ranks every caption, see ``RetrievalSplit.caption_video``).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .annotations import caption_text, read_id_list, read_plain_pickle, require
from .records import Record

SPLITS = ("train", "val", "test")
CAPTIONS_FILE = "raw-captions.pkl"


def read(annotations: Path, split: str) -> list[Record]:
    list_path = require(annotations, f"{split}_list.txt")
    video_ids = read_id_list(list_path)
    captions_path = require(annotations, CAPTIONS_FILE)
    captions = read_plain_pickle(captions_path)
    if not isinstance(captions, dict):
        raise DataError(f"{captions_path}: expected a dict of video id -> captions, got {type(captions).__name__}")
    records = []
    for number, video_id in enumerate(video_ids, start=1):
        entries = captions.get(video_id)
        if not isinstance(entries, list) or not entries:
            raise DataError(f"{list_path}: video {video_id!r} (entry {number}) has no captions in {CAPTIONS_FILE}")
        for i, entry in enumerate(entries):
            records.append(Record(video_id, caption_text(entry, f"{captions_path}: [{video_id!r}][{i}]"), split))
    return records
