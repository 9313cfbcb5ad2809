"""Every grid frame of a video file, in order, one at a time: ``decode_grid``'s frames in bounded memory.

Indexing a two-hour recording must not hold its 7,200 frames at once. ``stream_grid`` walks the same
fallbacks as ``decode_grid`` (the timeline and seeking first, then decoding from the start by timestamps,
then by frame index) and gives each grid point's frame as soon as it is decoded; the truncation rule is
applied after the last frame. It shares ``decode.py``'s internals, which is why it lives beside it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import DataError
from .decode import _FallBack, _interval, _opened, _probe, _Scan, _seek_decode, describe
from .sampling import grid_count
from .truncation import TruncatedVideo, declared_duration, truncation_of

log = logging.getLogger(__name__)


# Yielded by ``stream_grid`` when the container misbehaved part-way and decoding starts over another way:
# the consumer drops the frames it has taken so far.
RESTART = "restart"


def stream_grid(
    path: str | Path, rate: Fraction, short_side: int, *, video_id: str | None = None, threads: int = 1
) -> Iterator[tuple[int, np.ndarray] | str]:
    """Every grid point of a video file in order, as ``(point, resized frame)``, holding one frame at a time:
    what ``decode_grid`` gives for all points, in memory that does not grow with the video's length.

    The fallbacks are ``decode_grid``'s; one that starts after frames were given yields ``RESTART`` first.
    After the last frame the truncation rule applies: a truncated video raises ``TruncatedVideo`` then."""
    path = Path(path)
    what = describe(path, video_id)
    if not path.is_file():
        raise DataError(f"{what}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{what}: the file is empty")
    given = 0
    try:
        with _opened(path, what, threads) as (container, stream):
            timeline = _probe(container, stream, what)
            if timeline is not None:
                count = grid_count(timeline.last_time, rate)
                shown = [timeline.frame_at(Fraction(k) / rate) for k in range(count)]  # non-decreasing
                try:
                    for pts, frame in _seek_decode(container, stream, timeline, sorted(set(shown)), short_side):
                        while given < count and shown[given] == pts:
                            yield given, frame
                            given += 1
                    span = timeline.last_time + (timeline.last_duration or _interval(stream))
                    _refuse_truncated(what, span, timeline.damage, container, stream)
                    return
                except _FallBack as reason:
                    log.debug("%s: %s; decoding from the start", what, reason)
        for by_index in (False, True):
            if given:
                yield RESTART
                given = 0
            try:
                with _opened(path, what, threads) as (container, stream):
                    scan = _Scan(container, stream, rate, short_side, what, by_index)
                    for frame in scan:
                        yield given, frame
                        given += 1
                    _refuse_truncated(what, scan.span, scan.damage, container, stream)
                    return
            except _FallBack as reason:
                log.debug("%s: %s; timing frames by their index and the frame rate", what, reason)
    except (av.FFmpegError, OSError) as exc:
        raise DataError(f"{what}: cannot decode: {exc}") from exc


def _refuse_truncated(what: str, span: Fraction, damage: str | None, container, stream) -> None:
    truncation = truncation_of(span, declared_duration(container, stream), _interval(stream), damage)
    if truncation is not None:
        raise TruncatedVideo(f"{what}: {truncation}")
