"""Which frames a clip is made of: a time grid at ``fps``, cut to a window, thinned to ``max_frames``.

The rule, shared by the decoder, the frame cache and frame folders (so all three pick the same frames):

- A video's time 0 is its first frame. The grid has a point every ``1/fps`` seconds, ``k / fps`` for
  ``k = 0, 1, …``, up to the time of the last frame: ``count = floor(last_time · fps) + 1`` points, so
  a video shorter than one interval still has one (its first frame). Grid point ``k`` shows the frame
  on screen at ``k / fps``: the last frame whose timestamp is at or before it (variable frame rate is
  therefore handled by timestamps, never by frame counts).
- A window ``[start, end)`` (seconds; ``None`` = open) keeps the grid points whose interval
  ``[k/fps, (k+1)/fps)`` overlaps it. A window that overlaps no interval keeps the one holding ``start``;
  one that starts after the video keeps the last point. A clip is never empty.
- More than ``max_frames`` points: ``max_frames`` of them chosen uniformly (``linspace`` over the
  indices, truncated, as CLIP4Clip's ``slice_framepos=2``). Fewer: all of them, and the model input is
  left-aligned and padded, with a mask.
"""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import CmadapterError

log = logging.getLogger(__name__)

Window = tuple[float | None, float | None]
WHOLE_VIDEO: Window = (None, None)


@dataclass(frozen=True)
class Sampling:
    fps: float = 1.0  # grid points per second
    max_frames: int = 12

    def __post_init__(self) -> None:
        if isinstance(self.fps, bool) or not isinstance(self.fps, numbers.Real):
            raise CmadapterError(f"fps must be a positive number, got {self.fps!r}")
        if not self.fps > 0 or not math.isfinite(self.fps):
            raise CmadapterError(f"fps must be a positive number, got {self.fps}")
        if (
            isinstance(self.max_frames, bool)
            or not isinstance(self.max_frames, numbers.Integral)
            or self.max_frames < 1
        ):
            raise CmadapterError(f"max_frames must be at least 1, got {self.max_frames}")

    @property
    def rate(self) -> Fraction:
        return exact(self.fps)


def exact(value: float | int | Fraction | str) -> Fraction:
    """A decimal number as the fraction it was written as (0.3 -> 3/10, not the nearest binary float)."""
    if isinstance(value, Fraction):
        return value
    return Fraction(str(value))


def grid_count(last_time: Fraction, rate: Fraction) -> int:
    """Number of grid points of a video whose last frame is at ``last_time`` seconds (at least 1)."""
    return max(math.floor(last_time * rate), 0) + 1


def window_points(count: int, rate: Fraction, window: Window = WHOLE_VIDEO) -> range:
    """Indices of the grid points whose sampling intervals overlap ``window`` (never empty)."""
    if count < 1:
        raise CmadapterError("a video has at least one grid point")
    start, end = window
    if start is not None and end is not None and end < start:
        raise CmadapterError(f"window end {end} is before its start {start}")
    first = 0 if start is None else math.floor(exact(start) * rate)
    first = min(max(first, 0), count - 1)
    stop = count if end is None else min(math.ceil(exact(end) * rate), count)
    return range(first, max(stop, first + 1))


def window_after_video(count: int, rate: Fraction, window: Window) -> bool:
    """True when the window starts after the last grid point (the clip falls back to the last frame)."""
    start = window[0]
    return start is not None and math.floor(exact(start) * rate) >= count


def uniform_subset(points: range | list[int], max_frames: int) -> list[int]:
    """At most ``max_frames`` of ``points``, spread uniformly (first and last always kept)."""
    points = list(points)
    if len(points) <= max_frames:
        return points
    picks = np.linspace(0, len(points) - 1, num=max_frames, dtype=int)
    return [points[i] for i in picks]


def clip_points(count: int, sampling: Sampling, window: Window = WHOLE_VIDEO, name: str = "video") -> list[int]:
    """The grid points a clip is made of: those in the window, thinned to ``sampling.max_frames``."""
    if window_after_video(count, sampling.rate, window):
        last = float(Fraction(count - 1) / sampling.rate)
        log.warning(
            "%s: window %s starts after the video (last grid point %.2fs); using its last frame", name, window, last
        )
    return uniform_subset(window_points(count, sampling.rate, window), sampling.max_frames)


@dataclass
class Clip:
    """The frames of one clip, uint8 and CLIP-sized, with the grid time each one stands for."""

    frames: np.ndarray  # uint8 [T, S, S, 3], T >= 1
    times: np.ndarray  # float64 [T]: seconds from the first frame (k / fps of each grid point)

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[0] < 1 or self.frames.shape[0] != len(self.times):
            raise CmadapterError(
                f"a clip needs T >= 1 frames and T times, got {self.frames.shape} and {len(self.times)}"
            )


def grid_times(points: list[int], rate: Fraction) -> np.ndarray:
    return np.array([float(Fraction(k) / rate) for k in points], dtype=np.float64)
