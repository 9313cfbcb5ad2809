"""Stage 1 of one adapter as a reader sees it: the saved FAISS index, plus what was written after it.

An ``index`` run saves the FAISS index once, at its end, while it commits file by file; a server keeps
answering meanwhile. So stage 1 never has to match the database exactly:

- segments whose features were written after the saved index (feature ``seq`` above the one it was built
  from) go into an exact inner-product index beside it, read incrementally as the snapshot moves on;
- segments that are gone (a file deleted, changed or turned unreadable) may still come back from the saved
  index; stage 2 looks every candidate up in its snapshot and drops those (``query.two_stage`` asks for
  more until it has enough).

The answer is therefore that of the snapshot's own data. A saved index built with other adapter weights (a
replaced adapter) is never used; a newer saved index replaces the old one as soon as it appears.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .faiss_index import AnnIndex, SearchParams, default_factory, describe_saved
from .store import IndexStore

log = logging.getLogger(__name__)


class Stage1:
    def __init__(self, folder: Path, adapter: str, sha256: str | None, factory: str | None, dim: int):
        import faiss

        self.folder, self.adapter, self.sha256, self.factory, self.dim = Path(folder), adapter, sha256, factory, dim
        self.base: AnnIndex | None = None
        self.base_seq = 0  # the newest feature seq the base index holds
        self.base_data: str | None = None  # which saved files it came from (None: built in memory)
        self.delta = faiss.IndexFlatIP(dim)
        self.delta_ids = np.zeros(0, np.int64)
        self.seen_seq = 0  # the newest feature seq read into base or delta
        self.generation: int | None = None  # the snapshot generation it last caught up with

    def refresh(self, store: IndexStore, generation: int) -> None:
        """Catch up with a snapshot at ``generation``: adopt a newer saved index, add newer features."""
        described = describe_saved(self.folder, self.adapter)
        if self._usable(described, generation) and described["data"] != self.base_data:
            loaded = AnnIndex.load(self.folder, self.adapter)
            if loaded is not None and loaded[1]["data"] == described["data"]:
                self._set_base(loaded[0], int(described["max_seq"]), described["data"])
        if self.base is None:
            # No saved index for these weights yet (a new adapter, a replaced one, an index still being
            # built): build one in memory from what the snapshot holds.
            ids, vectors, seq = store.segment_vectors(self.adapter, self.dim)
            if len(ids):
                log.warning(
                    "%s: no saved FAISS index of %r for this state; building it in memory", self.folder, self.adapter
                )
                self._set_base(AnnIndex.build(vectors, ids, self.factory or default_factory(len(ids))), seq, None)
            return
        ids, vectors, seq = store.segment_vectors(self.adapter, self.dim, after_seq=self.seen_seq)
        if len(ids):
            self.delta.add(np.ascontiguousarray(vectors, np.float32))
            self.delta_ids = np.concatenate([self.delta_ids, ids])
            self.seen_seq = seq

    def _usable(self, described: dict | None, generation: int) -> bool:
        return (
            described is not None
            and "data" in described
            and described.get("adapter_sha") == self.sha256
            and (self.factory is None or described.get("factory") == self.factory)
            and int(described.get("generation", -1)) <= generation  # not built from commits this snapshot lacks
            and int(described.get("max_seq", -1)) >= self.base_seq
        )

    def _set_base(self, base: AnnIndex, seq: int, data: str | None) -> None:
        self.base, self.base_seq, self.base_data = base, seq, data
        self.delta.reset()
        self.delta_ids = np.zeros(0, np.int64)
        self.seen_seq = seq

    def __len__(self) -> int:
        return (len(self.base) if self.base is not None else 0) + len(self.delta_ids)

    def search(
        self, queries: np.ndarray, count: int, params: SearchParams | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(segment ids [Q, n], inner products [Q, n]) of the ``count`` best of base and delta together."""
        parts_ids, parts_scores = [], []
        if self.base is not None and len(self.base):
            ids, scores = self.base.search(queries, count, params)
            parts_ids.append(ids)
            parts_scores.append(np.where(ids >= 0, scores, -np.inf))
        if len(self.delta_ids):
            scores, rows = self.delta.search(np.ascontiguousarray(queries, np.float32), min(count, len(self.delta_ids)))
            parts_ids.append(np.where(rows >= 0, self.delta_ids[np.clip(rows, 0, None)], -1))
            parts_scores.append(np.where(rows >= 0, scores, -np.inf))
        if not parts_ids:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        ids, scores = np.concatenate(parts_ids, axis=1), np.concatenate(parts_scores, axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :count]
        ids, scores = np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)
        return np.where(np.isfinite(scores), ids, -1), scores
