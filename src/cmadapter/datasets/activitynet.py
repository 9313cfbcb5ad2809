"""ActivityNet Captions, paragraph-to-video retrieval (``val_1`` is the test set, as in the paper).

- ``train.json``, ``val_1.json`` (and ``val_2.json``): ``{"v_<id>": {"duration": s, "timestamps":
  [[s, e], ...], "sentences": [...]}}``
- ``train_ids.json``, ``val_ids.json`` (optional): JSON lists of ids; when present, only those
  videos are kept, in that order (CLIP4Clip's files); otherwise every video of the captions file.

One record per video: its sentences joined into one paragraph, over the whole video. Ids keep their
``v_`` prefix; video files are found with or without it (``file_aliases``).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .annotations import caption_text, optional_file, read_json, require
from .records import Record

SPLITS = ("train", "val_1", "val_2", "test")
CAPTION_FILES = {"train": "train.json", "val_1": "val_1.json", "val_2": "val_2.json", "test": "val_1.json"}
ID_FILES = {"train": "train_ids.json", "val_1": "val_ids.json", "test": "val_ids.json"}


def read(annotations: Path, split: str) -> list[Record]:
    path = require(annotations, CAPTION_FILES[split])
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object of video id -> {{duration, timestamps, sentences}}")
    paragraphs = {}
    for video_id, entry in data.items():
        where = f"{path}: {video_id!r}"
        sentences = entry.get("sentences") if isinstance(entry, dict) else None
        if not isinstance(sentences, list) or not sentences:
            raise DataError(f"{where}: expected an object with a non-empty 'sentences' list")
        paragraphs[video_id] = " ".join(caption_text(s, f"{where} sentences[{j}]") for j, s in enumerate(sentences))
    video_ids = list(paragraphs)
    ids_path = optional_file(annotations, ID_FILES[split]) if split in ID_FILES else None
    if ids_path is not None:
        video_ids = read_json(ids_path)
        if not isinstance(video_ids, list) or not all(isinstance(v, str) for v in video_ids):
            raise DataError(f"{ids_path}: expected a JSON list of video ids")
        absent = [v for v in video_ids if v not in paragraphs]
        if absent:
            raise DataError(f"{ids_path}: video {absent[0]!r} has no sentences in {path.name}")
        video_ids = list(dict.fromkeys(video_ids))
    return [Record(v, paragraphs[v], split) for v in video_ids]


def file_aliases(video_id: str) -> list[str]:
    """ActivityNet files are named with or without the ``v_`` of the ids."""
    return [video_id[2:]] if video_id.startswith("v_") else ["v_" + video_id]
