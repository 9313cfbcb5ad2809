"""WebM/VP9 videos for the server and browser tests (Chromium builds may not play H.264)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from media import picture


def webm_video(path: Path, seconds: int, shift: int = 0, rate: int = 4, size: tuple[int, int] = (64, 48)) -> Path:
    """A ``seconds``-long VP9 video whose flat greys (with a white corner) start at level ``shift``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"deadline": "realtime", "cpu-used": "8", "g": str(rate)}  # a keyframe every second
        for i in range(seconds * rate):
            frame = av.VideoFrame.from_ndarray(picture(i + shift, width, height, marker=True), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
