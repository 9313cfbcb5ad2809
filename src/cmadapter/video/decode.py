"""Decoding the grid frames of a video file with PyAV (FFmpeg), seeking where that saves work.

Reading a clip takes three steps:

1. **Timeline.** Demux the video stream's packets without decoding them: every frame's presentation
   timestamp and which frames are keyframes. Exact for variable frame rate, and cheap next to decoding.
2. **Plan.** ``sampling.py`` turns the timeline into grid points and the caller picks the ones it
   needs (a clip: at most ``max_frames`` of the window; the frame cache: all of them). Each point maps
   to the timestamp of the frame on screen at that time.
3. **Decode.** Walk the wanted frames in order. When the keyframe before the next wanted frame lies
   beyond the decoder's position, seek to it; otherwise decode forward (never re-decoding a group of
   pictures twice). If the container does not behave (no timestamps, a seek that lands after the
   target, a frame that never comes), fall back to decoding from the start, timing frames as they come.

A video that ends early is **truncated**: the decoded frames end (or decoding fails) well before the
duration its container declares for the stream (cut-off downloads, damaged files). ``decode_grid``
refuses such a video with ``TruncatedVideo`` (naming what decoded: "truncated: decoded 1.5 s of 3.0 s")
unless ``allow_truncated``, which returns what decoded with ``GridFrames.truncation`` set. Every reader of
videos (``prepare``, training and evaluation reading videos directly) applies this one rule.

Frames are converted to RGB, turned upright when the stream carries rotation metadata, and resized
(short side, bicubic, uint8) right after decoding; only the wanted ones are converted. Odd sizes and
any pixel format FFmpeg decodes are fine. Sample aspect ratio is ignored, as in CLIP4Clip.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from ..errors import DataError
from .preprocess import resize_short_side
from .sampling import grid_count
from .truncation import TruncatedVideo, Truncation, declared_duration, truncation_of

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v")

# Display rotation (degrees counter-clockwise, as FFmpeg's display matrix and PyAV's VideoFrame.rotation
# give it) -> the PIL transpose that applies it.
_UPRIGHT = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


@dataclass(frozen=True)
class Timeline:
    """Presentation timestamps of a video stream's frames, in stream ``time_base`` units."""

    pts: np.ndarray  # int64, ascending, unique: every frame
    keyframes: np.ndarray  # int64, ascending: the frames decoding can start from
    time_base: Fraction
    last_duration: Fraction | None = None  # seconds the last frame lasts, when its packet says
    damage: str | None = None  # the demuxing error the stream ended on

    @property
    def last_time(self) -> Fraction:
        """Seconds from the first frame to the last one."""
        return (int(self.pts[-1]) - int(self.pts[0])) * self.time_base

    def frame_at(self, seconds: Fraction) -> int:
        """Timestamp of the frame on screen ``seconds`` after the first one."""
        limit = int(self.pts[0]) + math.floor(seconds / self.time_base)
        index = int(np.searchsorted(self.pts, limit, side="right")) - 1
        return int(self.pts[max(index, 0)])

    def keyframe_before(self, pts: int) -> int:
        """The last keyframe at or before ``pts`` (the first frame when the stream flags none)."""
        index = int(np.searchsorted(self.keyframes, pts, side="right")) - 1
        return int(self.keyframes[index]) if index >= 0 else int(self.pts[0])


@dataclass
class GridFrames:
    """Frames decoded at chosen grid points, resized (short side) but not cropped."""

    frames: list[np.ndarray]  # uint8 [H, W, 3], one per point
    points: list[int]  # grid indices
    count: int  # grid points in the whole video
    truncation: Truncation | None = None  # set when the video ended early (and that was allowed)


class _FallBack(Exception):
    """The container did not behave as its timeline promised: decode from the start instead."""


def describe(path: Path, video_id: str | None) -> str:
    return f"video {video_id!r} ({path})" if video_id is not None else str(path)


def decode_grid(
    path: str | Path,
    rate: Fraction,
    short_side: int,
    choose: Callable[[int], list[int]],
    *,
    video_id: str | None = None,
    threads: int = 1,
    allow_truncated: bool = False,
) -> GridFrames:
    """Decode the grid points ``choose(count)`` of a video sampled at ``rate`` points per second.

    ``threads`` is FFmpeg's decoding threads; 1 suits data-loader workers (they are the parallelism).
    Raises ``DataError`` naming the file (and ``video_id``) if it is missing, empty or undecodable, and
    ``TruncatedVideo`` if it ends early, unless ``allow_truncated`` (then ``truncation`` says how).
    """
    grid = _decode_grid(Path(path), rate, short_side, choose, video_id, threads)
    if grid.truncation is not None and not allow_truncated:
        raise TruncatedVideo(f"{describe(Path(path), video_id)}: {grid.truncation}")
    return grid


def decode_bytes_grid(
    data: bytes,
    what: str,
    rate: Fraction,
    short_side: int,
    choose: Callable[[int], list[int]],
    *,
    threads: int = 1,
    allow_truncated: bool = False,
) -> GridFrames:
    """``decode_grid`` of a video held in memory (a member of a WebDataset shard); ``what`` names it in errors."""
    if not data:
        raise DataError(f"{what}: the video is empty")
    grid = _decode_source(data, what, rate, short_side, choose, threads)
    if grid.truncation is not None and not allow_truncated:
        raise TruncatedVideo(f"{what}: {grid.truncation}")
    return grid


def _decode_grid(path: Path, rate, short_side, choose, video_id, threads) -> GridFrames:
    what = describe(path, video_id)
    if not path.is_file():
        raise DataError(f"{what}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{what}: the file is empty")
    return _decode_source(path, what, rate, short_side, choose, threads)


def _decode_source(path: Path | bytes, what: str, rate, short_side, choose, threads) -> GridFrames:
    """The three ways of decoding (seeking, scanning by timestamps, by frame index), from a file or bytes."""
    try:
        with _opened(path, what, threads) as (container, stream):
            timeline = _probe(container, stream, what)
            if timeline is not None:
                try:
                    grid = _decode_seeking(container, stream, timeline, rate, short_side, choose)
                    span = timeline.last_time + (timeline.last_duration or _interval(stream))
                    return _judged(grid, span, timeline.damage, container, stream)
                except _FallBack as reason:
                    log.debug("%s: %s; decoding from the start", what, reason)
        try:
            with _opened(path, what, threads) as (container, stream):
                grid, span, damage = _decode_scanning(container, stream, rate, short_side, choose, what, False)
                return _judged(grid, span, damage, container, stream)
        except _FallBack as reason:
            log.debug("%s: %s; timing frames by their index and the frame rate", what, reason)
        with _opened(path, what, threads) as (container, stream):
            grid, span, damage = _decode_scanning(container, stream, rate, short_side, choose, what, True)
            return _judged(grid, span, damage, container, stream)
    except (av.FFmpegError, OSError) as exc:
        raise DataError(f"{what}: cannot decode: {exc}") from exc


# ---- internals --------------------------------------------------------------------------------------------


def _judged(grid: GridFrames, span: Fraction, damage: str | None, container, stream) -> GridFrames:
    grid.truncation = truncation_of(span, declared_duration(container, stream), _interval(stream), damage)
    return grid


def _interval(stream) -> Fraction:
    """Seconds between frames by the stream's frame rate (0 when it has none)."""
    frame_rate = stream.guessed_rate or stream.average_rate
    return 1 / Fraction(frame_rate) if frame_rate else Fraction(0)


@contextmanager
def _opened(path: Path | bytes, what: str, threads: int):
    """The container and its first video stream, configured for decoding."""
    container = av.open(io.BytesIO(path) if isinstance(path, bytes) else str(path))
    try:
        if not container.streams.video:
            raise DataError(f"{what}: no video stream in the file")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = threads
        if threads != 1:
            stream.thread_type = "AUTO"
        yield container, stream
    finally:
        container.close()


def _probe(container, stream, what: str) -> Timeline | None:
    """The stream's timeline from its packets, or None when the packets carry no usable timestamps."""
    if stream.time_base is None:
        return None
    stamps: list[int] = []
    keyframes: list[int] = []
    last_stamp = last_duration = damage = None
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or getattr(
                packet, "is_discard", False
            ):  # the end-of-stream marker; frames an edit list drops
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None:
                return None
            if last_stamp is None or stamp > last_stamp:  # the frame shown last so far, and how long it lasts
                last_stamp = stamp
                last_duration = packet.duration * stream.time_base if packet.duration else None
            stamps.append(stamp)
            if packet.is_keyframe:
                keyframes.append(stamp)
    except av.FFmpegError as exc:
        if not stamps:
            raise
        damage = f"damaged after {len(stamps)} packets ({exc})"
        log.debug("%s: %s", what, damage)
    if not stamps:
        raise DataError(f"{what}: the video stream has no frames")
    pts = np.unique(np.asarray(stamps, dtype=np.int64))
    if len(pts) < len(stamps):
        log.debug("%s: %d packets share timestamps; not trusting them", what, len(stamps) - len(pts))
        return None
    keyframes = np.unique(np.asarray(keyframes, dtype=np.int64))
    return Timeline(pts, keyframes, stream.time_base, last_duration=last_duration, damage=damage)


def _decode_seeking(container, stream, timeline: Timeline, rate, short_side, choose) -> GridFrames:
    count = grid_count(timeline.last_time, rate)
    points = list(choose(count))
    wanted_of_point = [timeline.frame_at(Fraction(k) / rate) for k in points]
    decoded = dict(_seek_decode(container, stream, timeline, sorted(set(wanted_of_point)), short_side))
    return GridFrames(frames=[decoded[w] for w in wanted_of_point], points=points, count=count)


def _seek_decode(
    container, stream, timeline: Timeline, wanted: list[int], short_side
) -> Iterator[tuple[int, np.ndarray]]:
    """(timestamp, resized frame) of each of the ``wanted`` timestamps (ascending), in order.

    Seeks when the keyframe before the next wanted frame lies beyond the decoder's position, else decodes
    forward; raises ``_FallBack`` when the container does not behave as its timeline promised."""
    wanted_set = set(wanted)
    frames: Iterator | None = None
    position = None  # timestamp of the last frame the decoder gave
    try:
        for target in wanted:
            keyframe = timeline.keyframe_before(target)
            if frames is None or keyframe > position:
                # Flushes the decoder and lands on a keyframe at or before the target (probing left the
                # container at its end, so the first wanted frame needs a seek too).
                container.seek(keyframe, stream=stream)
                frames = _decode_packets(container, stream, wanted_set)
                position = None
            for frame in frames:
                if frame.pts is None:
                    raise _FallBack("a decoded frame has no timestamp")
                position = frame.pts
                if frame.pts >= target:
                    break
            else:
                raise _FallBack(f"the stream ended before timestamp {target}")
            if frame.pts != target:
                raise _FallBack(f"wanted the frame at {target}, the decoder gave {frame.pts}")
            yield target, _upright_resized(frame, short_side)
    except av.FFmpegError as exc:
        raise _FallBack(f"decoding error: {exc}") from exc


def _decode_packets(container, stream, wanted: set[int]) -> Iterator[av.VideoFrame]:
    """Decode from the container's position on, skipping the frames no wanted frame depends on.

    A frame that is neither wanted nor a reference for other frames (most B-frames) is not decoded at
    all (FFmpeg's ``skip_frame=NONREF``); the frames that are decoded come out bit-identical.
    """
    codec = stream.codec_context
    for packet in container.demux(stream):
        codec.skip_frame = "DEFAULT" if packet.pts is None or packet.pts in wanted else "NONREF"
        yield from codec.decode(packet)


def _decode_scanning(container, stream, rate, short_side, choose, what: str, by_index: bool):
    """Decode every frame from the start; keep (resized) the one on screen at each grid point.

    Returns the grid, the seconds decoded and the decoding error that ended the stream (or None).
    """
    scan = _Scan(container, stream, rate, short_side, what, by_index)
    at_points = list(scan)  # resized frame of grid point 0, 1, 2, …
    points = list(choose(len(at_points)))
    grid = GridFrames(frames=[at_points[k] for k in points], points=points, count=len(at_points))
    return grid, scan.span, scan.damage


class _Scan:
    """Iterates the resized frame on screen at grid point 0, 1, 2, … of a stream decoded from the start;
    afterwards ``span`` (seconds decoded, with the last frame's duration) and ``damage`` are set.

    Frames are timed by their timestamps, or (``by_index``, when those are missing or not increasing)
    by their position and the stream's frame rate; ``_FallBack`` says the timestamps cannot be used."""

    def __init__(self, container, stream, rate, short_side, what: str, by_index: bool):
        self.container, self.stream, self.rate, self.short_side = container, stream, rate, short_side
        self.what, self.by_index = what, by_index
        self.span: Fraction | None = None
        self.damage: str | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        stream, rate, short_side, by_index = self.stream, self.rate, self.short_side, self.by_index
        frame_rate = (
            stream.guessed_rate or stream.average_rate
        )  # FFmpeg's best guess; the average suffers from bad stamps
        if by_index and not frame_rate:
            raise DataError(f"{self.what}: frames have neither usable timestamps nor a frame rate")
        emitted = 0  # grid points given so far
        previous = None  # (frame, its time, its resized array or None)
        first_pts = None
        try:
            for index, frame in enumerate(self.container.decode(stream)):
                if by_index:
                    time = Fraction(index) / Fraction(frame_rate)
                elif frame.pts is None or frame.time_base is None:
                    raise _FallBack("a frame has no timestamp")
                else:
                    first_pts = frame.pts if first_pts is None else first_pts
                    time = (frame.pts - first_pts) * Fraction(frame.time_base)
                    if previous is not None and time <= previous[1]:
                        raise _FallBack("frame timestamps do not increase")
                # Every grid point before this frame's time shows the previous frame.
                while previous is not None and Fraction(emitted) / rate < time:
                    previous = _resized_once(previous, short_side)
                    emitted += 1
                    yield previous[2]
                previous = (frame, time, None)
        except av.FFmpegError as exc:
            if previous is None:
                raise
            self.damage = f"damaged after {float(previous[1]):.2f} s ({exc})"
            log.debug("%s: %s", self.what, self.damage)
        if previous is None:
            raise DataError(f"{self.what}: no decodable video frames")
        while Fraction(emitted) / rate <= previous[1]:
            previous = _resized_once(previous, short_side)
            emitted += 1
            yield previous[2]
        last = previous[0]
        lasts = (
            last.duration * last.time_base if last.duration and last.time_base and not by_index else _interval(stream)
        )
        self.span = previous[1] + lasts


def _resized_once(entry, short_side):
    frame, time, resized = entry
    return entry if resized is not None else (frame, time, _upright_resized(frame, short_side))


def _upright_resized(frame: av.VideoFrame, short_side: int) -> np.ndarray:
    image = Image.fromarray(frame.to_ndarray(format="rgb24"))  # much faster than frame.to_image()
    rotation = round(getattr(frame, "rotation", 0) or 0) % 360  # VideoFrame.rotation: PyAV >= 14
    if rotation in _UPRIGHT:
        image = image.transpose(_UPRIGHT[rotation])
    elif rotation:
        log.debug("ignoring a display rotation of %s degrees (not a multiple of 90)", frame.rotation)
    return resize_short_side(image, short_side)
