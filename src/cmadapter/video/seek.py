"""Decode a few nearby grid points of a video file by seeking to them, without reading the rest of the file.

``decode_grid`` (decode.py) demuxes every packet of a file first, for an exact timeline: right for the
index, which wants frames from the whole video, and wasteful for a server that wants one segment of a long
one (a thumbnail miss). Here the container's own index (MP4 ``stss``/``stts``, Matroska cues) finds the
keyframe before the first wanted time, and the decoder runs forward from it to the last wanted point.

The frame kept for grid point ``k`` is the one on screen at ``k / rate`` seconds after the video's first
frame (the last frame whose timestamp is at or before that time), as ``decode_grid`` chooses it, so each
frame is bit-identical to the one the index encoded. A container that does not behave (no timestamps, a
seek that lands after the target, timestamps that do not increase, a decoding error) falls back to
``decode_path_grid``'s decode from the start.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import DataError
from .decode import _upright_resized
from .grid import decode_path_grid

log = logging.getLogger(__name__)


@dataclass
class PointFrames:
    """Resized (short side, not cropped) frames of chosen grid points."""

    frames: dict[int, np.ndarray]  # grid point -> uint8 [H, W, 3]
    decoded: int | None  # frames the decoder produced while seeking; None: it fell back to the full decode


class _Misbehaves(Exception):
    """The container did not do what seeking relies on: decode from the start instead."""


def first_frame_pts(container, stream) -> int | None:
    """Timestamp of the video's first frame (its time 0), from a container still at its start; None when the
    stream has no decodable frame with a timestamp.

    The first frame the decoder gives is the first one on screen (decoders emit frames in presentation
    order, and drop the ones an edit list discards), so this is the origin ``decode_grid`` times from."""
    for frame in _frames(container, stream):
        return frame.pts
    return None


def decode_points(
    path: str | Path, rate: Fraction, short_side: int, points: list[int], *, threads: int = 1
) -> PointFrames:
    """Frames of the grid points ``points`` (``rate`` points per second) of a video file.

    Meant for points close together (one segment): one seek to the keyframe before the first, then
    decoding forward to the last. A point past the video's end gets its last frame (the one on screen).
    Raises ``DataError`` naming the file when even the full decode cannot read it.
    """
    wanted = sorted(set(points))
    if not wanted or wanted[0] < 0:
        raise ValueError(f"grid points must be a non-empty list of indices >= 0, got {points!r}")
    try:
        try:
            return _seeking(Path(path), rate, short_side, wanted, threads, skip=True)
        except _SkippedOne as reason:
            log.debug("%s: %s; decoding every frame", path, reason)
            return _seeking(Path(path), rate, short_side, wanted, threads, skip=False)
    except (_Misbehaves, av.FFmpegError, OSError) as reason:
        log.debug("%s: %s; decoding from the start", path, reason)
    grid = decode_path_grid(
        Path(path),
        rate,
        short_side,
        lambda count: sorted({min(p, count - 1) for p in wanted}),
        threads=threads,
        allow_truncated=True,
    )
    by_point = dict(zip(grid.points, grid.frames))
    return PointFrames({p: by_point[min(p, grid.count - 1)] for p in wanted}, decoded=None)


def _seeking(path: Path, rate: Fraction, short_side: int, points: list[int], threads: int, skip: bool) -> PointFrames:
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise DataError(f"{path}: no video stream in the file")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = threads
        if stream.time_base is None:
            raise _Misbehaves("the stream has no time base")
        origin = first_frame_pts(container, stream)
        if origin is None:
            raise _Misbehaves("the first frame has no timestamp, or none decodes")
        limits = [origin + math.floor(Fraction(p) / rate / stream.time_base) for p in points]
        # Lands on the keyframe at or before the first wanted time, and flushes the decoder.
        container.seek(limits[0], stream=stream, backward=True)
        skipped: set[int] = set()
        candidate = _near_limits(limits, stream) if skip else None
        frames = _frames(container, stream, candidate, skipped)
        decoded = 1  # the first frame, for the origin
        on_screen = pending = None  # the last frame at or before the limit; the first one after it
        kept: dict[int, np.ndarray] = {}
        resized: tuple[int, np.ndarray] | None = None  # consecutive points often show the same frame
        for point, limit in zip(points, limits):
            while True:
                if pending is None:
                    pending = next(frames, None)
                    if pending is None:
                        break  # the end: the last frame stays on screen
                    decoded += 1
                    if pending.pts is None:
                        raise _Misbehaves("a decoded frame has no timestamp")
                    if on_screen is not None and pending.pts <= on_screen.pts:
                        raise _Misbehaves("frame timestamps do not increase")
                    skipped.discard(pending.pts)
                if pending.pts > limit:
                    break
                on_screen, pending = pending, None
            if on_screen is None:
                raise _Misbehaves(f"the seek landed after timestamp {limit}")
            # Decoders emit frames in presentation order: every frame up to the limit was demuxed by now.
            if any(on_screen.pts < pts <= limit for pts in skipped):
                raise _SkippedOne(f"the frame on screen at timestamp {limit} was not decoded")
            if resized is None or resized[0] != on_screen.pts:
                resized = (on_screen.pts, _upright_resized(on_screen, short_side))
            kept[point] = resized[1]
        return PointFrames(kept, decoded=decoded)


class _SkippedOne(Exception):
    """A frame left undecoded (a guess from the frame rate) turned out to be one on screen: decode them all."""


def _near_limits(limits: list[int], stream) -> Callable[[int], bool] | None:
    """Whether a timestamp lies within two frame intervals before a limit: the frames worth decoding when
    nothing refers to them; None (decode all) when the stream gives no frame rate."""
    frame_rate = stream.average_rate or stream.guessed_rate
    if not frame_rate:
        return None
    reach = math.ceil(2 / Fraction(frame_rate) / stream.time_base)
    return lambda pts: any(limit - reach < pts <= limit for limit in limits)


def _frames(container, stream, candidate=None, skipped: set[int] | None = None) -> Iterator[av.VideoFrame]:
    """Decode from the container's position on (the last, empty packet flushes the decoder).

    With ``candidate``, a packet whose timestamp is not one is decoded only if other frames refer to it
    (FFmpeg's ``skip_frame=NONREF``, as decode.py does; the frames decoded come out bit-identical); its
    timestamp goes to ``skipped`` until a frame with it comes out."""
    codec = stream.codec_context
    for packet in container.demux(stream):
        if candidate is not None:
            wanted = packet.pts is None or candidate(packet.pts)
            codec.skip_frame = "DEFAULT" if wanted else "NONREF"
            if not wanted and packet.size:
                skipped.add(packet.pts)
        yield from codec.decode(packet)
