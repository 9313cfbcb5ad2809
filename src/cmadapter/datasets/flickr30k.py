"""Flickr30K on Karpathy's split (``dataset_flickr30k.json``; see ``karpathy``): 29,000 training images
(145,000 captions), 1,014 val and the 1k test (1,000 images, 5,000 captions). Images: ``flickr30k-images/``."""

from __future__ import annotations

from pathlib import Path

from .annotations import require
from .karpathy import EVAL_CAPTIONS, MEDIA, SPLITS, read_karpathy
from .records import Record

__all__ = ["MEDIA", "SPLITS", "read"]
FILE = "dataset_flickr30k.json"


def read(
    annotations: Path, split: str, *, restval: bool = True, eval_captions: int | None = EVAL_CAPTIONS
) -> list[Record]:
    path = require(annotations, FILE, "Karpathy's Flickr30K split")
    return read_karpathy(path, split, restval=restval, eval_captions=eval_captions)
