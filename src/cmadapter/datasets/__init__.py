"""Dataset readers: annotation files -> plain ``Record`` lists, one small module per dataset.

    records = load_split("msrvtt", Path("data/msrvtt"), "train", train_list="7k")
    test = retrieval_split(load_split("msvd", Path("data/msvd"), "test"), "msvd/test")

Adding a dataset is one module with ``SPLITS`` and ``read(annotations, split, **options)`` (and
``file_aliases`` if its files are not named by its ids, ``MEDIA = "image"`` if its items are stills),
plus one line in ``DATASETS``. Your own data: ``captions`` (a captions table, ``data.annotations`` is the
table, its video ids are paths under ``data.videos``) and ``webdataset`` (``data.annotations`` names shards).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..errors import CmadapterError, DataError
from . import activitynet, captions, didemo, flickr30k, mscoco, msrvtt, msvd, vatex, webdataset
from .annotations import EmptySplit
from .records import Record, RetrievalSplit, retrieval_split


def _no_aliases(video_id: str) -> list[str]:
    return []


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    splits: tuple[str, ...]
    read: Callable[..., list[Record]]  # (annotations: Path, split: str, **options)
    file_aliases: Callable[[str], list[str]] = _no_aliases
    media: str = "video"  # "image": every item is a still (a one-frame clip)
    annotations: str = "folder"  # what data.annotations is: "folder", "file" (a table) or "shards" (a pattern)
    moments: bool = False  # evaluation: each (video, window) is an item of its own
    ids_are_paths: bool = False  # video ids are paths relative to data.videos (nothing is searched for)

    @property
    def options(self) -> list[str]:
        parameters = inspect.signature(self.read).parameters.values()
        return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]


def _spec(name: str, module: ModuleType) -> DatasetSpec:
    aliases = getattr(module, "file_aliases", _no_aliases)
    annotations = getattr(module, "ANNOTATIONS", "folder")
    return DatasetSpec(
        name,
        module.SPLITS,
        module.read,
        aliases,
        getattr(module, "MEDIA", "video"),
        annotations=annotations,
        moments=getattr(module, "MOMENTS", False),
        ids_are_paths=annotations == "file",
    )


DATASETS: dict[str, DatasetSpec] = {
    "msrvtt": _spec("msrvtt", msrvtt),
    "msvd": _spec("msvd", msvd),
    "vatex": _spec("vatex", vatex),
    "didemo": _spec("didemo", didemo),
    "activitynet": _spec("activitynet", activitynet),
    "flickr30k": _spec("flickr30k", flickr30k),
    "mscoco": _spec("mscoco", mscoco),
    "captions": _spec("captions", captions),
    "webdataset": _spec("webdataset", webdataset),
}


def get_dataset(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise CmadapterError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def load_split(
    dataset: str, annotations: str | Path, split: str, *, allow_empty: bool = False, **options
) -> list[Record]:
    """The records of one split of ``dataset``, read from the annotation folder ``annotations``; a split
    without records is an error unless ``allow_empty`` (``prepare`` of every split of a file that lacks one)."""
    spec = get_dataset(dataset)
    if split not in spec.splits:
        raise CmadapterError(f"{dataset} has no split {split!r}; its splits: {', '.join(spec.splits)}")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        known = ", ".join(spec.options) or "none"
        raise CmadapterError(f"{dataset} has no option {unknown[0]!r}; its options: {known}")
    if spec.annotations == "shards":
        annotations = str(annotations)
    else:
        annotations = Path(annotations)
        if spec.annotations == "folder" and not annotations.is_dir():
            raise DataError(f"annotation folder not found: {annotations}")
        if spec.annotations == "file" and not annotations.is_file():
            raise DataError(f"annotation file not found: {annotations}")
    try:
        records = spec.read(annotations, split, **options)
    except EmptySplit:
        if allow_empty:
            return []
        raise
    if not records and not allow_empty:
        raise DataError(f"{dataset}/{split}: the annotation files in {annotations} give no records")
    return records


__all__ = ["DATASETS", "DatasetSpec", "Record", "RetrievalSplit", "get_dataset", "load_split", "retrieval_split"]
