"""DiDeMo, paragraph-to-video retrieval (as CLIP4Clip and the paper evaluate it).

- ``train_data.json``, ``val_data.json``, ``test_data.json``: LocalizingMoments' lists of
  ``{"video": ..., "description": ..., "times": [[s, e], ...], ...}``
- ``train_list.txt`` … (optional): the split's video ids, one per line; when present, only those
  videos are kept, in that order (CLIP4Clip's files); otherwise every video of the JSON, in order.

One record per video: all its descriptions joined in file order into one paragraph. The clip covers
the first 30 seconds, the part of each video the annotators saw (longer videos were cut to 30 s for
annotation); video ids are file names with their extension, which the video lookup handles.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .annotations import caption_text, optional_file, read_id_list, read_json, require
from .records import Record

SPLITS = ("train", "val", "test")
ANNOTATED_SECONDS = 30.0


def read(annotations: Path, split: str) -> list[Record]:
    path = require(annotations, f"{split}_data.json")
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of {{'video', 'description', 'times'}} objects")
    paragraphs: dict[str, list[str]] = {}
    for i, entry in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("video"), str) or not entry["video"]:
            raise DataError(f"{where}: expected an object with a 'video' string"[:300])
        text = caption_text(entry.get("description"), f"{where} ({entry['video']!r}) 'description'")
        paragraphs.setdefault(entry["video"], []).append(text)
    list_path = optional_file(annotations, f"{split}_list.txt")
    if list_path is not None:
        video_ids = read_id_list(list_path)
        absent = [v for v in video_ids if v not in paragraphs]
        if absent:
            raise DataError(f"{list_path}: video {absent[0]!r} has no description in {path.name}")
    else:
        video_ids = list(paragraphs)
    return [Record(v, " ".join(paragraphs[v]), split, 0.0, ANNOTATED_SECONDS) for v in video_ids]
