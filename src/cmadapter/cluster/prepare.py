"""`prepare --ray`: the frame cache written by Ray tasks, one video per task, with the local path's function.

The driver lists the videos and what is already cached (exactly as locally), Ray runs ``cache_video`` on
each remaining one wherever it has a CPU, and the driver collects the results into the same report. Each
task writes its video's frame file atomically into the cache folder, so the cache must be on storage every
node sees; a task whose worker dies is run again by Ray (it rewrites the same file), and a video that cannot
be decoded comes back as a reported problem, never retried.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

from ..video.cache import CacheSpec, PrepareOptions, PrepareReport, cache_video, prepare_cache
from .ray_session import LOCAL, ray_session


def prepare_on_ray(
    video_ids: Sequence[str],
    videos,
    out: str | Path,
    options: PrepareOptions | None = None,
    *,
    address: str | None = LOCAL,
    job: Callable = cache_video,
) -> PrepareReport:
    """``prepare_cache`` with the decoding on Ray; ``job`` is ``cache_video`` (tests wrap it to kill workers)."""
    with ray_session(address) as ray:
        return prepare_cache(
            video_ids, videos, out, options or PrepareOptions(), runner=lambda jobs: _run_on_ray(ray, jobs, job)
        )


def _run_on_ray(ray, jobs: list[tuple], job: Callable) -> Iterator[tuple]:
    if not jobs:
        return
    rows = [_to_row(j) for j in jobs]

    def run(row: dict) -> dict:
        video_id, path, status, reason, written = job(*_from_row(row))
        return {"video_id": video_id, "path": path, "status": status or "", "reason": reason or "", "written": written}

    # One video per task (decoding is CPU-bound and videos differ wildly in length); results stream back.
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map(run, num_cpus=1)
    for row in dataset.iter_rows():
        yield row["video_id"], row["path"], row["status"] or None, row["reason"] or None, bool(row["written"])


def _to_row(job: tuple) -> dict:
    video_id, path, target, spec, folder_fps, allow_truncated = job
    return {
        "allow_truncated": allow_truncated,
        "video_id": video_id,
        "path": path,
        "target": target,
        "fps": str(spec.fps),
        "short_side": spec.short_side,
        "folder_fps": "" if folder_fps is None else str(folder_fps),
    }


def _from_row(row: dict) -> tuple:
    spec = CacheSpec(fps=Fraction(row["fps"]), short_side=int(row["short_side"]))
    folder_fps = Fraction(row["folder_fps"]) if row["folder_fps"] else None
    return row["video_id"], row["path"], row["target"], spec, folder_fps, bool(row["allow_truncated"])
