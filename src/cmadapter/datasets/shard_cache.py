"""`cmadapter prepare webdataset`: the videos of WebDataset shards decoded once into a frame cache.

One job per shard: it streams the shard once (``shards.iter_shard_members``) and writes each sample's grid
frames as ``frames/<key>.npy``, exactly as ``prepare`` does for a videos folder (same layout, same
``report.tsv``: the samples the scan refused are ``missing``, those that do not decode ``undecodable``,
``truncated`` as there). Keys already cached are skipped, so an interrupted run resumes. A config then trains
and evaluates from the cache with ``data.cache``: its keys are the video ids.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from ..errors import DataError
from ..video.cache import (
    CacheSpec,
    PrepareOptions,
    PrepareReport,
    Problem,
    frame_file_name,
    start_cache,
    store_frames,
    write_report,
)
from ..video.sampling import exact
from .shards import ShardSample
from .webdataset import ShardSet

log = logging.getLogger(__name__)


def prepare_shard_cache(shards: ShardSet, keys: list[str], out: str | Path, options: PrepareOptions) -> PrepareReport:
    """Decode the samples ``keys`` of ``shards`` into the cache ``out``; problems go to ``out/report.tsv``."""
    from tqdm.auto import tqdm

    out = Path(out)
    spec = CacheSpec(fps=exact(options.fps), short_side=options.short_side)
    start_cache(out, spec)
    frames_dir = out / "frames"
    report = PrepareReport(cache=out)
    for problem in shards.problems:
        report.problems.append(Problem(problem.key or "", "missing", problem.url, problem.reason))
    by_shard: dict[str, list[ShardSample]] = {}
    for key in dict.fromkeys(keys):
        url, sample = shards.samples[key]
        if (frames_dir / frame_file_name(key)).exists():
            report.skipped += 1
        else:
            by_shard.setdefault(url, []).append(sample)
    jobs = [(url, samples, str(frames_dir), spec, options.allow_truncated) for url, samples in by_shard.items()]
    total = sum(len(samples) for samples in by_shard.values())
    log.info("%d samples: %d already cached, %d to decode from %d shards", len(keys), report.skipped, total, len(jobs))
    try:
        with tqdm(total=total, desc="decoding", unit="video", disable=not options.progress) as bar:
            for results in _run(jobs, options.workers):
                for key, url, status, reason, written in results:
                    report.written += written
                    if status is not None:
                        report.problems.append(Problem(key, status, url, reason))
                    bar.update()
    finally:
        write_report(out, report.problems)
    return report


def _run(jobs: list[tuple], workers: int) -> Iterator[list[tuple]]:
    if workers <= 0 or len(jobs) <= 1:
        for job in jobs:
            yield cache_shard(*job)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        pending = {pool.submit(cache_shard, *job) for job in jobs}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()


def cache_shard(url: str, samples: list[ShardSample], frames_dir: str, spec: CacheSpec, allow_truncated: bool):
    """Decode the ``samples`` of one shard into ``frames_dir`` (runs in a worker process). Returns, per sample,
    (key, url, status, reason, written) as ``cache.cache_video`` does."""
    from ..video.member import decode_member_grid
    from ..video.truncation import TruncatedVideo
    from .shards import iter_shard_members

    results = []
    wanted = {s.key: s for s in samples}
    try:
        for key, data in iter_shard_members(url, {k: s.member for k, s in wanted.items()}):
            sample = wanted.pop(key)
            what = f"shard {url} key {key!r}"
            try:
                grid = decode_member_grid(
                    data,
                    sample.extension,
                    what,
                    spec.fps,
                    spec.short_side,
                    lambda count: list(range(count)),
                    allow_truncated=allow_truncated,
                )
                store_frames(grid.frames, Path(frames_dir) / frame_file_name(key))
            except TruncatedVideo as exc:
                results.append(
                    (key, url, "truncated", f"{exc}; not cached (--allow-truncated caches what decoded)", False)
                )
                continue
            except DataError as exc:
                results.append((key, url, "undecodable", str(exc), False))
                continue
            if grid.truncation is not None:
                results.append(
                    (key, url, "truncated", f"{grid.truncation}; cached what decoded (--allow-truncated)", True)
                )
            else:
                results.append((key, url, None, None, True))
    except DataError as exc:  # the shard changed since it was scanned
        results += [(key, url, "missing", str(exc), False) for key in wanted]
    return results
