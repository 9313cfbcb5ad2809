"""Karpathy's image-text splits (``dataset_flickr30k.json``, ``dataset_coco.json``), as everyone distributes them.

The file is ``{"images": [{"filename", "split", "sentences": [{"raw", ...}, ...], "filepath"?, ...}], ...}``
with ``split`` one of ``train``, ``restval``, ``val``, ``test``. As in the usual protocol ``restval`` joins
``train`` (``restval=False`` leaves it out). An image is a one-frame clip: its id is its ``filename``, found
under the images folder as distributed (``flickr30k-images/``; COCO's ``train2014/`` and ``val2014/``, whose
file names carry their folder, so one walk of the parent folder finds both). Every sentence of a training
image is a record; ``val`` and ``test`` keep the first ``eval_captions`` (5) sentences of each image, the
field's 5 captions per image (a few COCO images have 6 or 7); ``eval_captions=None`` keeps them all.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .annotations import caption_text, read_json
from .records import Record

SPLITS = ("train", "val", "test")
MEDIA = "image"
FILE_SPLITS = ("train", "restval", "val", "test")
EVAL_CAPTIONS = 5


def read_karpathy(
    path: Path, split: str, *, restval: bool = True, eval_captions: int | None = EVAL_CAPTIONS
) -> list[Record]:
    """One record per (image, sentence) of ``split``, in the file's order."""
    if eval_captions is not None and eval_captions < 1:
        raise DataError(f"eval_captions must be at least 1 or null (all), got {eval_captions}")
    wanted = {"train": {"train", "restval"} if restval else {"train"}, "val": {"val"}, "test": {"test"}}[split]
    data = read_json(path)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise DataError(f"{path}: expected an object with an 'images' list (Karpathy's split file)")
    seen: dict[str, int] = {}
    records = []
    for i, entry in enumerate(images):
        where = f"{path}: images[{i}]"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: expected an object, got {entry!r}"[:300])
        filename = entry.get("filename")
        if not isinstance(filename, str) or not filename.strip() or "/" in filename:
            raise DataError(f"{where}: 'filename' must be an image file name, got {filename!r}")
        where = f"{where} ({filename!r})"
        if entry.get("split") not in FILE_SPLITS:
            raise DataError(f"{where}: 'split' must be one of {', '.join(FILE_SPLITS)}, got {entry.get('split')!r}")
        if filename in seen:
            raise DataError(f"{where}: the image repeats images[{seen[filename]}]")
        seen[filename] = i
        sentences = entry.get("sentences")
        if not isinstance(sentences, list) or not sentences:
            raise DataError(f"{where}: 'sentences' must be a non-empty list")
        if entry["split"] not in wanted:
            continue
        if split != "train" and eval_captions is not None:
            sentences = sentences[:eval_captions]
        for j, sentence in enumerate(sentences):
            raw = sentence.get("raw") if isinstance(sentence, dict) else None
            records.append(Record(filename, caption_text(raw, f"{where} sentences[{j}] 'raw'"), split))
    return records
