"""Stage 1: a FAISS index over one vector per segment (the normalised mean of its frames), inner product.

The index type is a FAISS factory string, the vocabulary FAISS users know: ``Flat`` (exact, 4 bytes per
dimension), ``SQfp16`` / ``SQ8`` (exact scan of 2- or 1-byte scalar-quantized vectors: half or a quarter of
the memory traffic), ``IVF<lists>,PQ<bytes>`` (inverted lists of product-quantized codes: a fraction of
the memory, approximate), ``HNSW<links>`` (a graph: fast, approximate, more memory than Flat). Stage 2
re-ranks the candidates exactly, so stage 1 only has to put the right segments among them.
``default_factory`` picks by collection size, from the figures in docs/BENCHMARKS.md.

Saved as ``ann/<adapter>.g<generation>.faiss`` with ``.ids.npy`` (row -> segment id) and ``ann/<adapter>.json``
(factory, and what it was built from: the store's generation, the newest feature ``seq``, the adapter's
checksum). A saved index older than the database is still used: ``stage1.Stage1`` adds what came after it
and stage 2 drops what is gone (see there).
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import atomic_path, atomic_write_text
from .errors import SearchError

log = logging.getLogger(__name__)

# Above this many segments an exhaustive fp32 scan gets slow (memory bandwidth), see default_factory.
FLAT_LIMIT = 200_000
TRAIN_LIMIT = 65_536  # vectors to train IVF / PQ quantizers on (64 per list for 1024 lists)


def default_factory(count: int) -> str:
    """``Flat`` (exact) for up to ``FLAT_LIMIT`` segments; beyond, ``SQ8``: still an exhaustive scan, over a
    quarter of Flat's bytes, with the same two-stage recall in ``bench search`` (docs/BENCHMARKS.md)."""
    return "Flat" if count <= FLAT_LIMIT else "SQ8"


@dataclass
class SearchParams:
    nprobe: int = 32  # IVF lists visited
    ef_search: int = 128  # HNSW candidate-list length


class AnnIndex:
    """A FAISS index over segment vectors, with the row -> segment id map."""

    def __init__(self, index, ids: np.ndarray, factory: str):
        self.index = index
        self.ids = np.asarray(ids, np.int64)
        self.factory = factory

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, factory: str) -> AnnIndex:
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(vectors) != len(ids):
            raise ValueError(f"{len(vectors)} vectors for {len(ids)} ids")
        try:
            index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise SearchError(f"FAISS cannot build index type {factory!r}: {_first_line(exc)}") from exc
        if not index.is_trained:
            needed = _training_minimum(index, factory)
            if len(vectors) < needed:
                raise SearchError(
                    f"index type {factory!r} needs at least {needed} segments to train, the index has "
                    f"{len(vectors)}; use Flat or SQ8 for a collection this size"
                )
            sample = vectors
            if len(vectors) > TRAIN_LIMIT:  # k-means on a sample: minutes saved, the same quality
                rows = np.random.default_rng(0).choice(len(vectors), TRAIN_LIMIT, replace=False)
                sample = vectors[np.sort(rows)]
            log.info("training FAISS %s on %d vectors", factory, len(sample))
            index.train(sample)
        index.add(vectors)
        return cls(index, ids, factory)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def nbytes(self) -> int:
        import faiss

        return int(faiss.serialize_index(self.index).nbytes)

    def search(
        self, queries: np.ndarray, count: int, params: SearchParams | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(segment ids [Q, n], inner products [Q, n]) of the ``count`` best rows; n <= count (fewer rows)."""
        self.configure(params or SearchParams())
        count = min(count, len(self))
        if count == 0:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), count)
        valid = rows >= 0
        ids = np.where(valid, self.ids[np.clip(rows, 0, None)], -1)
        return ids, scores

    def configure(self, params: SearchParams) -> None:
        import faiss

        space = faiss.ParameterSpace()
        for key, value in (("nprobe", params.nprobe), ("efSearch", params.ef_search)):
            with contextlib.suppress(RuntimeError):  # the index type has no such knob
                space.set_index_parameter(self.index, key, value)

    # ---- files -------------------------------------------------------------------------------------------

    def save(self, folder: Path, adapter: str, description: dict) -> None:
        """Write ``ann/<adapter>.<token>.faiss`` and ``.ids.npy``, then ``ann/<adapter>.json`` naming them with
        ``description`` (what the index was built from: generation, feature ``seq``, adapter checksum).

        Data files are never overwritten: a reader holding the old description still finds its files (the
        previous pair is kept; older ones are removed)."""
        import faiss

        folder = Path(folder)
        data = f"{adapter}.g{int(description['generation'])}"
        with atomic_path(folder / f"{data}.faiss") as temporary:
            faiss.write_index(self.index, str(temporary))
        with atomic_path(folder / f"{data}.ids.npy") as temporary, open(temporary, "wb") as f:
            np.save(f, self.ids)  # through a handle: on a bare path np.save would append ".npy"
        previous = (describe_saved(folder, adapter) or {}).get("data")
        # The description goes last: it vouches for the two files before it.
        described = {**description, "factory": self.factory, "count": len(self), "data": data}
        atomic_write_text(folder / f"{adapter}.json", json.dumps(described))
        for path in [*folder.glob(f"{adapter}.*.faiss"), *folder.glob(f"{adapter}.*.ids.npy")]:
            if path.name.split(".")[1] not in {data.split(".")[1], (previous or "").partition(".")[2]}:
                path.unlink(missing_ok=True)
        for old in (folder / f"{adapter}.faiss", folder / f"{adapter}.ids.npy"):  # an index of version 1
            old.unlink(missing_ok=True)

    @classmethod
    def load(cls, folder: Path, adapter: str) -> tuple[AnnIndex, dict] | None:
        """The saved index of ``adapter`` and its description, or None when there is none (or it is unreadable
        or was replaced while being read)."""
        import faiss

        described = describe_saved(folder, adapter)
        if described is None or "data" not in described:
            return None
        stem = Path(folder) / described["data"]
        try:
            index = faiss.read_index(f"{stem}.faiss")
            ids = np.load(f"{stem}.ids.npy", allow_pickle=False)
        except (OSError, RuntimeError, ValueError):
            return None
        if index.ntotal != len(ids) or len(ids) != described.get("count"):
            return None
        return cls(index, ids, described["factory"]), described


def describe_saved(folder: Path, adapter: str) -> dict | None:
    """The description of ``adapter``'s saved index (a small JSON file), or None."""
    try:
        described = json.loads((Path(folder) / f"{adapter}.json").read_text())
    except (OSError, ValueError):
        return None
    return described if isinstance(described, dict) else None


def _training_minimum(index, factory: str) -> int:
    """Vectors FAISS needs to train: one per IVF list, 256 for a product quantizer's codebooks."""
    import faiss

    needed = 1
    with contextlib.suppress(RuntimeError):  # not an IVF index
        needed = int(faiss.extract_index_ivf(index).nlist)
    return max(needed, 256) if "PQ" in factory.upper() else needed


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
