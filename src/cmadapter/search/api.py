"""``VideoIndex``: build or update an index folder, open it, search it.

    report = VideoIndex.build(["videos/"], "my_index", pretrained="ViT-B-32.pt", adapters={"msrvtt": "a.safetensors"})
    index = VideoIndex.open("my_index")
    for video in index.search("a dog catches a frisbee", k=10).results:
        print(video.best.video, video.best.start, video.best.end, video.best.score)

Opening never writes to the folder: a FAISS file older than the database is rebuilt in memory (and
``cmadapter index`` on the same folder saves a fresh one).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .build import ADAPTER_FOLDER, ANN_FOLDER, BuildOptions, BuildReport, build_index
from .encoder import ZERO_SHOT, encode_query, load_model, use_adapter
from .errors import SearchError
from .faiss_index import AnnIndex, SearchParams, default_factory
from .query import SearchHit, VideoResult, pad_frames, two_stage
from .store import IndexStore, SegmentRow

log = logging.getLogger(__name__)

DEFAULT_CANDIDATES = 200  # segments re-ranked by the head (at least 10 x k); see docs/BENCHMARKS.md


@dataclass
class SearchResults:
    query: str
    adapter: str
    results: list[VideoResult]
    seconds: dict[str, float] = field(default_factory=dict)  # text, ann, rerank, total

    def to_dict(self) -> dict:
        return {
            "query": self.query,
            "adapter": self.adapter,
            "results": [r.to_dict() for r in self.results],
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        }


class VideoIndex:
    def __init__(self, store: IndexStore, device: str = "cpu", params: SearchParams | None = None):
        self.store = store
        self.root = store.root
        self.settings = store.get_meta("settings")
        self.dim = store.get_meta("dim")
        if self.settings is None or self.dim is None:
            raise SearchError(f"{self.root} holds no indexed files yet; run `cmadapter index` to completion once")
        self.device = device
        self.params = params or SearchParams()
        self.adapters = list(store.adapters())
        self.default_adapter = store.get_meta("default_adapter") or self.adapters[0]
        self._model = None
        self._loaded: set[str] = set()
        self._ann: dict[str, AnnIndex] = {}
        self._lock = threading.Lock()  # one query at a time through the model and the connection

    @staticmethod
    def build(sources, out, **kwargs) -> BuildReport:
        """Create or update an index (see ``build.build_index`` for the arguments)."""
        return build_index(list(sources), out, **kwargs)

    @classmethod
    def open(cls, path: str | Path, *, device: str = "cpu", params: SearchParams | None = None) -> VideoIndex:
        return cls(IndexStore(path, readonly=True), device=device, params=params)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> VideoIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the parts -----------------------------------------------------------------------------------------

    def check_adapter(self, adapter: str | None) -> str:
        adapter = adapter or self.default_adapter
        if adapter not in self.adapters:
            raise SearchError(f"{self.root} has no adapter {adapter!r}; it has: {', '.join(self.adapters)}")
        return adapter

    def model(self, adapter: str):
        """The backbone with ``adapter`` active (adapters load on first use)."""
        if self._model is None:
            self._model = load_model(self.settings["backbone"], self.settings["pretrained"], {}, self.device)
            if self._model.backbone.architecture.embed_dim != self.dim:
                raise SearchError(
                    f"{self.root} holds {self.dim}-d features but the backbone "
                    f"({self.settings['pretrained'] or self.settings['backbone']}) gives "
                    f"{self._model.backbone.architecture.embed_dim}-d ones"
                )
        if adapter != ZERO_SHOT and adapter not in self._loaded:
            path = self.root / ADAPTER_FOLDER / f"{adapter}.safetensors"
            if not path.is_file():
                raise SearchError(f"{self.root}: the checkpoint of adapter {adapter!r} is missing ({path})")
            self._model.load_adapter(path, name=adapter, activate=False)
            self._loaded.add(adapter)
        use_adapter(self._model, adapter)
        return self._model

    def ann(self, adapter: str) -> AnnIndex:
        if adapter not in self._ann:
            factory = self.store.get_meta("factory")
            generation = self.store.generation
            ann = AnnIndex.load(self.root / ANN_FOLDER, adapter, generation, factory)
            if ann is None:
                ids, vectors = self.store.segment_vectors(adapter, self.dim)
                if not len(ids):
                    raise SearchError(f"{self.root} has no features for adapter {adapter!r}; rerun `cmadapter index`")
                log.warning("%s: the FAISS index of %r is missing or stale; building it in memory", self.root, adapter)
                ann = AnnIndex.build(vectors, ids, factory or default_factory(len(ids)))
            self._ann[adapter] = ann
        return self._ann[adapter]

    def fetch(self, adapter: str, rows_read: dict[int, SegmentRow] | None = None):
        """Frame features of segment ids, for stage 2; the segment rows it reads land in ``rows_read``."""

        def frames_of(ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            rows = self.store.segments(ids)
            if rows_read is not None:
                rows_read.update((r.id, r) for r in rows)
            features = self.store.frame_features({r.file_id for r in rows}, adapter, self.dim)
            return pad_frames([features[r.file_id][r.first : r.stop] for r in rows])

        return frames_of

    # ---- search --------------------------------------------------------------------------------------------

    def search(
        self, query: str, k: int = 10, *, adapter: str | None = None, candidates: int | None = None
    ) -> SearchResults:
        """The ``k`` best videos for ``query``, each with its best segment and its other hits."""
        if k < 1:
            raise SearchError(f"k must be at least 1, got {k}")
        adapter = self.check_adapter(adapter)
        with self._lock:
            model = self.model(adapter)  # loads on first use: not part of a query's time
            ann = self.ann(adapter)
            began = time.perf_counter()
            text = encode_query(model, query, self.settings["precision"]).cpu()
            seconds = {"text": time.perf_counter() - began}
            count = candidates or max(DEFAULT_CANDIDATES, 10 * k)
            began = time.perf_counter()
            rows: dict[int, SegmentRow] = {}  # stage 2 reads every candidate's row; grouping reuses them
            ids, cosine, weights = two_stage(
                text, ann, self.fetch(adapter, rows), model.head, candidates=count, params=self.params
            )
            seconds["search"] = time.perf_counter() - began
            results = self._group(ids, cosine, weights, k, rows)
        seconds["total"] = seconds["text"] + seconds["search"]
        return SearchResults(query=query, adapter=adapter, results=results, seconds=seconds)

    def _group(self, ids, cosine, weights, k: int, rows: dict[int, SegmentRow]) -> list[VideoResult]:
        by_video: dict[int, VideoResult] = {}
        files = {}
        for segment_id, score, frame_weights in zip(ids.tolist(), cosine.tolist(), weights):
            row = rows[segment_id]
            if row.file_id not in by_video and len(by_video) == k:
                continue
            if row.file_id not in files:
                files[row.file_id] = self.store.file(row.file_id)
            hit = self._hit(row, files[row.file_id], score, frame_weights)
            if row.file_id in by_video:
                by_video[row.file_id].others.append(hit)
            else:
                by_video[row.file_id] = VideoResult(best=hit)
        return list(by_video.values())

    @staticmethod
    def _hit(row: SegmentRow, file, score: float, frame_weights: torch.Tensor) -> SearchHit:
        count = row.stop - row.first
        weights = frame_weights[:count].tolist()
        times = file.times[row.first : row.stop].tolist()
        return SearchHit(
            segment_id=row.id,
            video_id=row.file_id,
            video=file.path,
            start=row.start,
            end=row.end,
            score=score,
            best_frame_time=times[int(np.argmax(weights))],
            frame_times=times,
            frame_weights=weights,
            kind=file.kind,
        )

    def report(self) -> dict[str, str]:
        """Files the index could not take, with the reason."""
        return {path: reason for path, (_, _, reason) in sorted(self.store.problems().items())}

    def describe(self) -> dict:
        return {"path": str(self.root), **self.store.counts(), "adapters": self.adapters, "settings": self.settings}


__all__ = ["BuildOptions", "BuildReport", "SearchResults", "VideoIndex"]
