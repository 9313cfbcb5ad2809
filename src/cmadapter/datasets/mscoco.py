"""MSCOCO on Karpathy's split (``dataset_coco.json``; see ``karpathy``): 82,783 train plus 30,504 restval
images for training, 5,000 val and the 5k test (5,000 images, 25,000 captions). Images: COCO 2014's
``train2014/`` and ``val2014/`` folders (give their parent; the file names say which folder)."""

from __future__ import annotations

from pathlib import Path

from .annotations import require
from .karpathy import EVAL_CAPTIONS, MEDIA, SPLITS, read_karpathy
from .records import Record

__all__ = ["MEDIA", "SPLITS", "read"]
FILE = "dataset_coco.json"


def read(
    annotations: Path, split: str, *, restval: bool = True, eval_captions: int | None = EVAL_CAPTIONS
) -> list[Record]:
    path = require(annotations, FILE, "Karpathy's MSCOCO split")
    return read_karpathy(path, split, restval=restval, eval_captions=eval_captions)
