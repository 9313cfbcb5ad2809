"""The frame cache: every needed video decoded once, its grid frames kept as uint8 at a fixed short side.

Layout of a cache folder::

    cache.json               {"format": "cmadapter-frame-cache", "version": 1, "fps": "1", "short_side": 224}
    frames/<video_id>.npy    uint8 [count, H, W, 3]: grid point k (time k / fps) is row k
    report.tsv               the videos the last `prepare` could not cache, or cached truncated: id, status, path, reason

Each file holds *all* grid points of its video (resized, not cropped), so windows and ``max_frames``
are applied when reading, by the same ``sampling.py`` rules the decoder uses. With ``short_side``
equal to the model's input size, a clip read here is bitwise-identical to one decoded from the video.
A cache prepared at ``fps`` also serves any rate that divides it (2 fps -> 1 fps: every other row).

A truncated video (``truncation.py``: it ends well before its declared duration) is not cached: it is
listed as ``truncated`` with what decoded ("truncated: decoded 1.5 s of 3.0 s"). With
``allow_truncated`` its decoded frames are cached and the report still lists it, saying so.

``prepare_cache`` is resumable (videos with a file are skipped) and atomic per video (``files.atomic_path``):
an interrupted run leaves no half-written file behind. Run one ``prepare`` at a time per cache folder.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from fractions import Fraction
from multiprocessing import get_context
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image

from ..errors import DataError
from ..files import atomic_path, atomic_write_text, leftover_temporaries
from .preprocess import fit_frame
from .sampling import Clip, Sampling, Window, clip_points, exact, grid_times

log = logging.getLogger(__name__)

CACHE_FORMAT = "cmadapter-frame-cache"
CACHE_VERSION = 1
SPEC_FILE = "cache.json"
REPORT_FILE = "report.tsv"


@dataclass(frozen=True)
class CacheSpec:
    fps: Fraction
    short_side: int

    def to_json(self) -> dict:
        return {"format": CACHE_FORMAT, "version": CACHE_VERSION, "fps": str(self.fps), "short_side": self.short_side}


def frame_file_name(video_id: str) -> str:
    """A file name for any id (``/`` and other odd characters escaped, reversibly)."""
    return quote(video_id, safe="@+,=-_.") + ".npy"


class FrameCache:
    """Reads clips from a cache folder written by ``prepare_cache``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.spec = read_spec(self.root)
        if self.spec is None:
            raise DataError(f"{self.root} is not a frame cache (no {SPEC_FILE}); write one with `cmadapter prepare`")
        self.frames_dir = self.root / "frames"
        self.description = f"frame cache {self.root} ({self.spec.fps} fps, short side {self.spec.short_side})"

    @staticmethod
    def holds_cache(path: str | Path) -> bool:
        return (Path(path) / SPEC_FILE).is_file()

    def file(self, video_id: str) -> Path:
        return self.frames_dir / frame_file_name(video_id)

    def missing(self, video_ids: Iterable[str]) -> dict[str, str]:
        present = set(os.listdir(self.frames_dir)) if self.frames_dir.is_dir() else set()
        absent = [i for i in video_ids if frame_file_name(i) not in present]
        if not absent:
            return {}
        reported = {p.video_id: p for p in read_report(self.root)}
        reasons = {}
        for video_id in absent:
            problem = reported.get(video_id)
            if problem is not None:
                reasons[video_id] = f"not in {self.root}: prepare found it {problem.status}: {problem.reason}"
            else:
                reasons[video_id] = f"not in {self.root}: run `cmadapter prepare` for it"
        return reasons

    def read(self, video_id: str, window: Window, sampling: Sampling, image_size: int) -> Clip:
        step = self.spec.fps / sampling.rate
        if step.denominator != 1:
            raise DataError(
                f"{self.description} cannot give {sampling.fps} fps (its rate must be a multiple); "
                f"prepare a cache at {sampling.fps} fps or read the videos"
            )
        if self.spec.short_side < image_size:
            raise DataError(
                f"{self.description} holds frames smaller than the model's {image_size}px input; "
                f"prepare it again with --short-side {image_size}"
            )
        path = self.file(video_id)
        try:
            frames = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise DataError(f"video {video_id!r}: not in {self.description}") from None
        except (OSError, ValueError) as exc:
            raise DataError(
                f"video {video_id!r}: damaged cache file {path} ({exc}); delete it and prepare again"
            ) from exc
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[0] < 1 or frames.shape[-1] != 3:
            raise DataError(f"video {video_id!r}: {path} is not a cache file (array {frames.dtype} {frames.shape})")
        step = int(step)
        count = (frames.shape[0] - 1) // step + 1
        points = clip_points(count, sampling, window, f"video {video_id!r}")
        clip = np.stack([fit_frame(np.asarray(frames[k * step]), image_size) for k in points])
        return Clip(frames=clip, times=grid_times(points, sampling.rate))


def read_spec(root: Path) -> CacheSpec | None:
    path = root / SPEC_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("format") != CACHE_FORMAT or data.get("version") != CACHE_VERSION:
            raise ValueError(f"format {data.get('format')!r} version {data.get('version')!r}")
        return CacheSpec(fps=Fraction(data["fps"]), short_side=int(data["short_side"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path} is not a cmadapter frame cache description: {exc}") from exc


# ---- preparing --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrepareOptions:
    fps: float = 1.0
    short_side: int = 224
    workers: int = 0  # worker processes; 0 decodes in this process
    progress: bool = True  # a tqdm bar on stderr
    allow_truncated: bool = False  # cache what decoded of a video that ends early (still reported)


@dataclass(frozen=True)
class Problem:
    video_id: str
    status: str  # "missing", "undecodable" or "truncated"
    path: str
    reason: str


@dataclass
class PrepareReport:
    cache: Path
    written: int = 0  # videos decoded and stored by this run
    skipped: int = 0  # already in the cache
    problems: list[Problem] = field(default_factory=list)

    @property
    def missing(self) -> list[Problem]:
        return [p for p in self.problems if p.status == "missing"]

    @property
    def undecodable(self) -> list[Problem]:
        return [p for p in self.problems if p.status == "undecodable"]

    @property
    def truncated(self) -> list[Problem]:
        return [p for p in self.problems if p.status == "truncated"]

    @property
    def report_file(self) -> Path:
        return self.cache / REPORT_FILE


def prepare_cache(
    video_ids: Sequence[str],
    videos,
    out: str | Path,
    options: PrepareOptions = PrepareOptions(),
    *,
    runner: Callable[[list[tuple]], Iterator[tuple]] | None = None,
):
    """Decode every id of ``video_ids`` found in ``videos`` (a ``VideoFolder``) once into the cache ``out``.

    ``runner`` runs ``cache_video`` over the jobs and yields its results in any order (default: this
    process or ``options.workers`` local processes; ``cluster.prepare`` passes a Ray Data pipeline).
    Returns a ``PrepareReport``; ``out/report.tsv`` lists the ids that are missing, undecodable or truncated.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    spec = CacheSpec(fps=exact(options.fps), short_side=options.short_side)
    start_cache(out, spec)
    frames_dir = out / "frames"
    report = PrepareReport(cache=out)
    # A truncated video an earlier run cached (allow_truncated) stays reported when it is skipped now.
    kept_truncated = {p.video_id: p for p in read_report(out) if p.status == "truncated"}
    video_ids = list(dict.fromkeys(video_ids))
    found = videos.locate(video_ids)
    jobs = []
    for video_id in video_ids:
        if video_id not in found:
            report.problems.append(Problem(video_id, "missing", str(videos.root), videos.missing([video_id])[video_id]))
        elif (frames_dir / frame_file_name(video_id)).exists():
            report.skipped += 1
            if video_id in kept_truncated:
                report.problems.append(kept_truncated[video_id])
        else:
            path, target = str(found[video_id]), str(frames_dir / frame_file_name(video_id))
            jobs.append((video_id, path, target, spec, videos.folder_fps, options.allow_truncated))
    log.info(
        "%d videos: %d already cached, %d to decode, %d missing",
        len(video_ids),
        report.skipped,
        len(jobs),
        len(report.missing),
    )
    try:
        with tqdm(total=len(jobs), desc="decoding", unit="video", disable=not options.progress) as bar:
            results = runner(jobs) if runner is not None else _run(jobs, options.workers)
            for video_id, path, status, reason, written in results:
                report.written += written
                if status is not None:
                    report.problems.append(Problem(video_id, status, path, reason))
                bar.update()
    finally:
        write_report(out, report.problems)
    return report


def start_cache(out: Path, spec: CacheSpec) -> None:
    """Create (or check, when it exists) the cache folder ``out`` for frames of ``spec``."""
    existing = read_spec(out) if out.is_dir() else None
    if existing is not None and existing != spec:
        raise DataError(
            f"{out} holds frames at {existing.fps} fps, short side {existing.short_side}; this run asks "
            f"{spec.fps} fps, short side {spec.short_side}: use another --out folder"
        )
    frames_dir = out / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    for leftover in leftover_temporaries(frames_dir):  # from an interrupted run
        leftover.unlink(missing_ok=True)
    if existing is None:
        atomic_write_text(out / SPEC_FILE, json.dumps(spec.to_json(), indent=1) + "\n")


def _run(jobs: list[tuple], workers: int):
    """Yield ``cache_video``'s answer for each job, decoding in ``workers`` processes."""
    if workers <= 0 or len(jobs) <= 1:
        for job in jobs:
            yield cache_video(*job)
        return
    # Spawned (not forked) workers: safe whatever threads the calling process runs.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        pending = set()
        queue = iter(jobs)
        try:
            while True:
                for job in queue:  # keep a bounded number in flight
                    pending.add(pool.submit(cache_video, *job))
                    if len(pending) >= 4 * workers:
                        break
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def cache_video(video_id: str, path: str, target: str, spec: CacheSpec, folder_fps, allow_truncated: bool = False):
    """Decode all grid frames of one video into ``target`` (atomically). Runs in a worker process.

    Returns (video_id, path, status, reason, written): status None for a complete video, else
    "undecodable" or "truncated" with the reason; written says whether ``target`` was written.
    """
    from .grid import decode_path_grid
    from .truncation import TruncatedVideo

    try:
        grid = decode_path_grid(
            Path(path),
            spec.fps,
            spec.short_side,
            lambda count: list(range(count)),
            video_id=video_id,
            folder_fps=folder_fps,
            allow_truncated=allow_truncated,
        )
        store_frames(grid.frames, target)
    except TruncatedVideo as exc:
        return video_id, path, "truncated", f"{exc}; not cached (--allow-truncated caches what decoded)", False
    except DataError as exc:
        return video_id, path, "undecodable", str(exc), False
    if grid.truncation is not None:
        return video_id, path, "truncated", f"{grid.truncation}; cached what decoded (--allow-truncated)", True
    return video_id, path, None, None, True


def store_frames(frames: list[np.ndarray], target: str | Path) -> None:
    """A video's grid frames as its cache file, written atomically."""
    array = np.stack(_same_size(frames))
    with atomic_path(target) as temporary, open(temporary, "wb") as f:
        np.save(f, array, allow_pickle=False)


def _same_size(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Frames of one array: a stream that changes resolution midway is resized to its first size."""
    height, width = frames[0].shape[:2]
    return [
        f
        if f.shape[:2] == (height, width)
        else np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.BICUBIC))
        for f in frames
    ]


def write_report(out: Path, problems: list[Problem]) -> None:
    rows = ["video_id\tstatus\tpath\treason"]
    for p in problems:
        rows.append("\t".join(_one_line(x) for x in (p.video_id, p.status, p.path, p.reason)))
    atomic_write_text(out / REPORT_FILE, "\n".join(rows) + "\n")


def read_report(root: Path) -> list[Problem]:
    path = root / REPORT_FILE
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [
            Problem(r["video_id"], r["status"], r["path"], r["reason"])
            for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        ]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
