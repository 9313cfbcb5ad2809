"""``VideoIndex``: build or update an index folder, open it, search it, while it changes.

    report = VideoIndex.build(["videos/"], "my_index", pretrained="ViT-B-32.pt", adapters={"msrvtt": "a.safetensors"})
    index = VideoIndex.open("my_index")
    for video in index.search("a dog catches a frisbee", k=10).results:
        print(video.best.video, video.best.start, video.best.end, video.best.score)
    index.search_image("photo.jpg")              # the videos most like a picture
    index.search_like("videos/dog.mp4", 12.5)    # ... like a moment of an indexed video

Searches may run from many threads at once: the model is used by one at a time (concurrent text queries share
one forward: ``batching.py``), stage 1 by one at a time, and stage 2 reads through the snapshot and scores in
the calling thread.

An open index follows the folder: every search first asks SQLite whether anything committed since
(``PRAGMA data_version``, microseconds) and, if so, moves to a new ``Snapshot`` (one read transaction).
Everything one search reads (stage 1, the candidates' frames, the files' rows, the adapter's weights) comes
from that one generation, even while an ``index`` run commits; the next search sees the new one. Opening
never writes to the folder: a saved FAISS index older than the database is completed in memory
(``stage1.py``), and a replaced adapter is loaded under its new checksum.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .batching import BatchOptions
from .build import ANN_FOLDER, BuildOptions, BuildReport, build_index
from .encoder import ZERO_SHOT
from .errors import NotInIndex, SearchError
from .faiss_index import SearchParams
from .files import display_path
from .pictures import PictureError, fit_picture, read_picture
from .queries import MomentQuery, PictureQuery, TextQuery, find_moment
from .query import VideoResult, group_by_video, pad_frames, two_stage
from .query_model import QueryModel, StaleAdapter
from .schema import SegmentRow
from .snapshot import Snapshot
from .stage1 import Stage1
from .store import IndexStore

log = logging.getLogger(__name__)

DEFAULT_CANDIDATES = 200  # segments re-ranked by the head (at least 10 x k); see docs/BENCHMARKS.md
MAX_CANDIDATES = 2000  # the most segments one search re-ranks unless asked for more: bounded work per query
_RANKED_CACHE = 32  # ranked lists kept for paging (query, adapter, candidates, generation)


@dataclass
class SearchResults:
    query: str
    adapter: str
    results: list[VideoResult]
    seconds: dict[str, float] = field(default_factory=dict)  # query (its vector), search (both stages), total
    generation: int = 0  # the index generation every result comes from
    files: int = 0  # files searchable in that generation
    kind: str = "text"  # what the query was: "text", "image" (a picture) or "like" (a moment of an indexed video)

    def to_dict(self) -> dict:
        return {
            "query": self.query,
            "kind": self.kind,
            "adapter": self.adapter,
            "generation": self.generation,
            "files": self.files,
            "results": [r.to_dict() for r in self.results],
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        }


class _Locked:
    """Stage 1 searched under a lock (a ``Stage1`` is refreshed in place; FAISS searches are fine in parallel,
    an index being added to is not)."""

    def __init__(self, stage1: Stage1, lock: threading.Lock):
        self._stage1, self._lock = stage1, lock

    def search(self, *args, **kwargs):
        with self._lock:
            return self._stage1.search(*args, **kwargs)


class VideoIndex:
    def __init__(
        self,
        root: str | Path,
        device: str = "cpu",
        params: SearchParams | None = None,
        batching: BatchOptions | None = None,
    ):
        self.root = Path(root)
        self._watch = IndexStore(self.root, readonly=True)  # checks the folder; tells when something committed
        self.settings = self._watch.get_meta("settings")
        self.dim = self._watch.get_meta("dim")
        if self.settings is None or self.dim is None:
            self._watch.close()
            raise SearchError(f"{self.root} holds no indexed files yet; run `cmadapter index` to completion once")
        self.device = device
        self.params = params or SearchParams()
        self._version = self._watch.data_version()
        self._snapshot = Snapshot(self.root)
        self._snapshot_lock = threading.Lock()
        self._stage1_lock = threading.Lock()  # stage-1 indexes: refreshed and searched one at a time
        self._ranked_lock = threading.Lock()
        self._stage1: dict[tuple, Stage1] = {}
        self._ranked: OrderedDict[tuple, list[VideoResult]] = OrderedDict()
        self._in_flight, self._in_flight_lock = 0, threading.Lock()
        self.models = QueryModel(self.root, self.settings, self.dim, device, batching, lambda: self._in_flight)

    @staticmethod
    def build(sources, out, **kwargs) -> BuildReport:
        """Create or update an index (see ``build.build_index`` for the arguments)."""
        return build_index(list(sources), out, **kwargs)

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        device: str = "cpu",
        params: SearchParams | None = None,
        batching: BatchOptions | None = None,
    ) -> VideoIndex:
        return cls(path, device=device, params=params, batching=batching)

    def close(self) -> None:
        with self._snapshot_lock:
            self._snapshot.retire()
            self._watch.close()

    def __enter__(self) -> VideoIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- following the folder ------------------------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """The newest committed generation, held (unchanging) for the block."""
        with self._snapshot_lock:
            version = self._watch.data_version()
            if version != self._version:
                self._version = version
                fresh = Snapshot(self.root)
                old, self._snapshot = self._snapshot, fresh
                old.retire()
            snapshot = self._snapshot.acquire()
        try:
            yield snapshot
        finally:
            snapshot.release()

    @property
    def adapters(self) -> list[str]:
        with self.snapshot() as snapshot:
            return list(snapshot.adapters)

    @property
    def default_adapter(self) -> str:
        with self.snapshot() as snapshot:
            return snapshot.default_adapter or next(iter(snapshot.adapters))

    @property
    def generation(self) -> int:
        with self.snapshot() as snapshot:
            return snapshot.generation

    # ---- the parts -----------------------------------------------------------------------------------------

    def check_adapter(self, adapter: str | None, snapshot: Snapshot | None = None) -> str:
        if snapshot is None:
            with self.snapshot() as snapshot:
                return self.check_adapter(adapter, snapshot)
        adapter = adapter or snapshot.default_adapter or next(iter(snapshot.adapters))
        if adapter not in snapshot.adapters:
            raise SearchError(f"{self.root} has no adapter {adapter!r}; it has: {', '.join(snapshot.adapters)}")
        return adapter

    def model(self, adapter: str, sha256: str | None = None):
        """The backbone with ``adapter`` active (the version with checksum ``sha256``; default: the newest)."""
        if sha256 is None and adapter != ZERO_SHOT:
            with self.snapshot() as snapshot:
                sha256 = snapshot.adapters.get(adapter)
        with self.models.lock:
            return self.models.model(adapter, sha256)

    @property
    def model_load_seconds(self) -> float | None:
        return self.models.load_seconds

    def stage1(self, adapter: str) -> Stage1:
        """Stage 1 of ``adapter`` as the newest snapshot sees it (the saved FAISS index and what came after)."""
        with self.snapshot() as snapshot, self._stage1_lock:
            return self._stage1_for(self.check_adapter(adapter, snapshot), snapshot)

    def _stage1_for(self, adapter: str, snapshot: Snapshot) -> Stage1:
        sha = snapshot.adapters[adapter]
        key = (adapter, sha, snapshot.factory)
        stage1 = self._stage1.get(key)
        if stage1 is None:
            for old in [k for k in self._stage1 if k[0] == adapter]:
                del self._stage1[old]  # another version of the adapter, or another FAISS type
            stage1 = self._stage1[key] = Stage1(self.root / ANN_FOLDER, adapter, sha, snapshot.factory, self.dim)
        if stage1.generation != snapshot.generation:
            with snapshot.reading() as store:
                stage1.refresh(store, snapshot.generation)
            stage1.generation = snapshot.generation
        if not len(stage1):
            raise SearchError(f"{self.root} has no features for adapter {adapter!r}; rerun `cmadapter index`")
        return stage1

    def _fetch(self, snapshot: Snapshot, adapter: str, rows_read: dict[int, SegmentRow]):
        """Stage 2's reads: the frame features of the first ``limit`` candidates this snapshot still holds."""

        def fetch(ids: np.ndarray, limit: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
            kept: list[SegmentRow] = []
            blocks: list[np.ndarray] = []
            with snapshot.reading() as store:
                rows = store.segments(ids)
                while rows and len(kept) < limit:
                    batch, rows = rows[: limit - len(kept)], rows[limit - len(kept) :]
                    for row, frames in zip(batch, store.segment_frames(batch, adapter, self.dim)):
                        if frames is not None:
                            kept.append(row)
                            blocks.append(frames)
            rows_read.update((r.id, r) for r in kept)
            if not kept:
                return np.zeros(0, np.int64), torch.zeros(0, 0, self.dim), torch.zeros(0, 0, dtype=torch.bool)
            return np.asarray([r.id for r in kept], np.int64), *pad_frames(blocks)

        return fetch

    # ---- search --------------------------------------------------------------------------------------------

    def search(
        self, query: str, k: int = 10, *, adapter: str | None = None, candidates: int | None = None
    ) -> SearchResults:
        """The ``k`` best videos for the words ``query``, each with its best segment and its other hits.

        Stage 2 re-ranks ``candidates`` segments (default ``max(200, 10 k)``, at most ``MAX_CANDIDATES``).
        Concurrent calls share text-encoder forwards (``BatchOptions``)."""
        return self._search(lambda snapshot: TextQuery(query), k, adapter, candidates)

    def search_image(
        self,
        picture: bytes | str | Path | np.ndarray,
        k: int = 10,
        *,
        adapter: str | None = None,
        candidates: int | None = None,
        name: str | None = None,
    ) -> SearchResults:
        """The videos most like a picture (its bytes, a file, or uint8 RGB [H, W, 3]): the image tower's feature
        of it is the query, and stage 2 pools each candidate's frames by their match with it, as for words."""
        if isinstance(picture, np.ndarray):
            if picture.dtype != np.uint8 or picture.ndim != 3 or picture.shape[-1] != 3 or 0 in picture.shape:
                raise PictureError(f"a picture array must be uint8 [H, W, 3], got {picture.dtype} {picture.shape}")
            pixels, name = picture, name or "picture"
        else:
            pixels = read_picture(picture, name=name)
            name = name or (display_path(str(picture)) if isinstance(picture, (str, Path)) else "picture")
        fitted = fit_picture(pixels, self.models.image_size())
        return self._search(lambda snapshot: PictureQuery(fitted, name), k, adapter, candidates)

    def search_like(
        self,
        video: int | str | Path,
        time: float,
        k: int = 10,
        *,
        adapter: str | None = None,
        candidates: int | None = None,
    ) -> SearchResults:
        """The videos most like a moment of an indexed video (its id, or its path as indexed) at ``time`` seconds:
        the stored feature of the grid frame nearest to it is the query. The video itself comes first."""
        return self._search(lambda snapshot: find_moment(snapshot, video, time, self.root), k, adapter, candidates)

    def search_like_segment(
        self, segment_id: int, time: float | None = None, k: int = 10, *, adapter=None, candidates=None
    ) -> SearchResults:
        """``search_like`` for the video of an indexed segment (as results name them), at ``time`` (default: the
        segment's start)."""

        def moment(snapshot: Snapshot) -> MomentQuery:
            with snapshot.reading() as store:
                rows = store.segments([segment_id]) if 0 <= segment_id < 2**63 else []
            if not rows:
                raise NotInIndex(f"no segment {segment_id} in {self.root}")
            return find_moment(snapshot, rows[0].file_id, rows[0].start if time is None else time, self.root)

        return self._search(moment, k, adapter, candidates)

    def query_vector(self, query: str, *, adapter: str | None = None) -> tuple[str, np.ndarray]:
        """(adapter, the normalised float32 [D] vector stage 1 searches with) for the words ``query``: what an
        exported index (``export.py``) is queried with in another engine."""
        with self.snapshot() as snapshot:
            name = self.check_adapter(adapter, snapshot)
            vector, _ = self.models.vector(TextQuery(query), name, snapshot.adapters[name], snapshot)
        return name, torch.nn.functional.normalize(vector.float(), dim=0).numpy()

    def _search(self, make_query, k: int, adapter: str | None, candidates: int | None) -> SearchResults:
        if k < 1:
            raise SearchError(f"k must be at least 1, got {k}")
        if candidates is not None and candidates < 1:
            raise SearchError(f"candidates must be at least 1, got {candidates}")
        count = candidates or min(max(DEFAULT_CANDIDATES, 10 * k), MAX_CANDIDATES)
        with self._counting():
            for attempt in range(3):
                try:
                    with self.snapshot() as snapshot:
                        query = make_query(snapshot)
                        adapter_name = self.check_adapter(adapter, snapshot)
                        ranked, seconds = self._ranked_videos(query, adapter_name, count, snapshot)
                        return SearchResults(
                            query=query.label,
                            adapter=adapter_name,
                            results=ranked[:k],
                            seconds=seconds,
                            generation=snapshot.generation,
                            files=snapshot.files,
                            kind=query.kind,
                        )
                except StaleAdapter as exc:
                    if attempt == 2:
                        raise SearchError(str(exc)) from exc
        raise AssertionError("unreachable")

    @contextmanager
    def _counting(self) -> Iterator[None]:
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def _ranked_videos(self, query, adapter: str, count: int, snapshot: Snapshot):
        """Every video among the ``count`` best candidates, best first (kept a while: the next page reuses it).

        Only the model is used one call at a time (the text queries of concurrent searches in one forward);
        stage 1 takes its own lock, and stage 2 reads through the snapshot and scores outside any lock."""
        sha = snapshot.adapters[adapter]
        key = (adapter, sha, query.key, count, snapshot.generation)
        with self._ranked_lock:
            if key in self._ranked:
                self._ranked.move_to_end(key)
                return self._ranked[key], {"query": 0.0, "search": 0.0, "total": 0.0}
        self.models.ready(adapter, sha)  # loads on first use: not part of the time
        began = time.perf_counter()
        vector, head = self.models.vector(query, adapter, sha, snapshot)
        seconds = {"query": time.perf_counter() - began}
        began = time.perf_counter()
        with self._stage1_lock:
            stage1 = _Locked(self._stage1_for(adapter, snapshot), self._stage1_lock)
        rows: dict[int, SegmentRow] = {}  # stage 2 reads every candidate's row; grouping reuses them
        ids, cosine, weights = two_stage(
            vector, stage1, self._fetch(snapshot, adapter, rows), head, candidates=count, params=self.params
        )
        with snapshot.reading() as store:
            ranked = group_by_video(store, ids, cosine, weights, rows)
        seconds["search"] = time.perf_counter() - began
        seconds["total"] = seconds["query"] + seconds["search"]
        with self._ranked_lock:
            self._ranked[key] = ranked
            while len(self._ranked) > _RANKED_CACHE:
                self._ranked.popitem(last=False)
        return ranked, seconds

    def report(self) -> dict[str, str]:
        """Files the index could not take, with the reason."""
        with self.snapshot() as snapshot, snapshot.reading() as store:
            return {path: reason for path, (_, _, reason) in sorted(store.problems().items())}

    def describe(self) -> dict:
        with self.snapshot() as snapshot, snapshot.reading() as store:
            counts = store.counts()
        return {"path": display_path(str(self.root)), **counts, "adapters": self.adapters, "settings": self.settings}


__all__ = ["BuildOptions", "BuildReport", "SearchResults", "VideoIndex"]
