"""`index --ray`: decoding as Ray tasks, encoding in a pool of model actors, committing on the driver.

The driver plans exactly as the local path does (which files are new, changed, or miss an adapter) and
commits each file in one transaction of the same index; in between, Ray Data runs the local path's own
``decode_item`` as one CPU task per file and ``encode_frames`` in actors that each hold one model (one GPU
each when the cluster has GPUs), several files per actor call. Files and adapters must be readable at the
same paths on every node. A file that cannot be decoded comes back as a problem, never retried; a worker or
actor that dies is restarted by Ray and its files run again, and since only the driver writes, nothing is
written twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import CmadapterError, DataError
from ..search.build import BuildReport, Work, build_index
from ..search.encoder import Encoded, decode_item, encode_with_adapters, load_model
from .ray_session import LOCAL, cluster_gpus, ray_session


def index_on_ray(
    sources, out: str | Path, *, address: str | None = LOCAL, actors: int | None = None, decode=decode_item, **kwargs
) -> BuildReport:
    """``build_index`` with decoding and encoding on Ray; ``actors``: model copies (default: one per GPU, else
    1); ``decode`` is ``decode_item`` (tests wrap it to kill workers)."""
    with ray_session(address) as ray:
        runner = _RayRunner(ray, Path(out), actors, decode)
        return build_index(sources, out, runner=runner, **kwargs)


class _RayRunner:
    def __init__(self, ray, out: Path, actors: int | None, decode):
        self.ray, self.out, self.actors, self.decode = ray, out, actors, decode

    def __call__(self, works: list[Work], context: dict) -> Iterator[tuple[Work, Encoded | Exception]]:
        if not works:
            return
        settings, options = context["settings"], context["options"]
        rate = str(context["rate"])
        adapters = {n: str(p) for n, p in context["adapter_files"].items() if p is not None}
        gpus = cluster_gpus(self.ray)
        rows = [
            {
                "work": i,
                "path": w.item.path,
                "kind": w.item.kind,
                "missing": ",".join(w.missing),
                "stored_frames": -1 if w.row is None else w.row.frame_count,
            }
            for i, w in enumerate(works)
        ]
        image_size = context["image_size"]()
        dataset = (
            self.ray.data.from_items(rows, override_num_blocks=len(rows))
            .map(_decoder(self.decode, rate, image_size), num_cpus=1)
            .map_batches(
                _Encoder,
                batch_size=4,  # files per actor call
                concurrency=self.actors or max(1, gpus),
                num_gpus=1 if gpus else 0,
                fn_constructor_kwargs={
                    "backbone": settings["backbone"],
                    "pretrained": settings["pretrained"],
                    "adapters": adapters,
                    "all_adapters": list(context["names"]),
                    "batch_size": options.batch_size,
                    "precision": settings["precision"],
                    "device": "cuda" if gpus else options.device,
                },
            )
        )
        for row in dataset.iter_rows():
            work = works[int(row["work"])]
            if row["error"]:
                yield work, DataError(row["error"])
                continue
            names = [n for n in str(row["encoded"]).split(",") if n]
            features = {name: np.asarray(row["features"][k]) for k, name in enumerate(names)}
            yield (
                work,
                Encoded(np.asarray(row["times"]), features, float(row["decode_seconds"]), float(row["encode_seconds"])),
            )


def _decoder(decode_file, rate: str, image_size: int):
    from fractions import Fraction

    def decode(row: dict) -> dict:
        import time

        began = time.perf_counter()
        try:
            decoded = decode_file(row["path"], row["kind"], Fraction(rate), image_size)
        except (CmadapterError, OSError) as exc:
            empty = np.zeros((0, image_size, image_size, 3), np.uint8)
            return {**row, "frames": empty, "times": np.zeros(0), "error": str(exc), "decode_seconds": 0.0}
        return {
            **row,
            "frames": decoded.frames,
            "times": np.asarray(decoded.times, dtype=np.float64),
            "error": "",
            "decode_seconds": time.perf_counter() - began,
        }

    return decode


class _Encoder:
    """One model per actor (loaded once), every adapter on it; encodes each file's frames with what it misses."""

    def __init__(self, backbone, pretrained, adapters, all_adapters, batch_size, precision, device):
        self.model = load_model(backbone, pretrained, {n: Path(p) for n, p in adapters.items()}, device)
        self.all_adapters, self.batch_size, self.precision = all_adapters, batch_size, precision

    def __call__(self, batch: dict) -> dict:
        import time

        encoded, features, seconds = [], [], []
        for i in range(len(batch["work"])):
            if batch["error"][i]:
                encoded.append("")
                features.append(np.zeros((0, 0, 0), np.float16))
                seconds.append(0.0)
                continue
            frames, times = batch["frames"][i], batch["times"][i]
            names = [n for n in str(batch["missing"][i]).split(",") if n]
            stored = int(batch["stored_frames"][i])
            if stored >= 0 and stored != len(times):
                names = self.all_adapters  # decodes differently than before: every adapter again
            began = time.perf_counter()
            per_adapter = list(
                encode_with_adapters(self.model, frames, names, self.batch_size, self.precision).values()
            )
            seconds.append(time.perf_counter() - began)
            encoded.append(",".join(names))
            features.append(np.stack(per_adapter))
        return {
            "work": batch["work"],
            "times": _ragged(list(batch["times"])),
            "error": batch["error"],
            "decode_seconds": batch["decode_seconds"],
            "encoded": np.array(encoded, dtype=object),
            "features": _ragged(features),
            "encode_seconds": np.array(seconds),
        }


def _ragged(arrays: list[np.ndarray]) -> np.ndarray:
    """An object array of arrays of different shapes (one per file), as Ray Data takes a ragged column."""
    out = np.empty(len(arrays), dtype=object)
    out[:] = arrays
    return out
