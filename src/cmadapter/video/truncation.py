"""The truncation rule: when a decoded video counts as ending early.

A video is truncated when decoding stopped on an error, or when its decoded frames end well before the
duration its container declares for the stream (a cut-off download, a damaged file). Every reader of
videos applies this one rule (``decode.decode_grid``): ``prepare`` does not cache such a video unless
told to, and training or evaluation reading videos directly refuse it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction

import av

from ..errors import DataError

log = logging.getLogger(__name__)

# A stream may end this much before its declared duration (rounding, a last frame of odd length) before
# it counts as truncated: the larger of these seconds and this many frame intervals.
_TRUNCATION_SECONDS = 0.1
_TRUNCATION_FRAMES = 1.5
# Formats whose container duration is declared in the header (not estimated from the bit rate).
_DECLARING_FORMATS = ("matroska", "webm", "mov", "mp4", "avi")


class TruncatedVideo(DataError):
    """A video whose frames end well before its declared duration, or whose decoding stopped on an error."""


@dataclass(frozen=True)
class Truncation:
    """How a video ended early: seconds decoded, seconds declared (when known), the error decoding met."""

    decoded: float
    declared: float | None
    error: str | None = None

    def __str__(self) -> str:
        text = f"truncated: decoded {self.decoded:.1f} s"
        if self.declared is not None:
            text += f" of {self.declared:.1f} s"
        return text + (f", then {self.error}" if self.error else "")


def declared_duration(container, stream) -> Fraction | None:
    """Seconds the container declares for the video stream: its own duration, Matroska's per-stream
    ``DURATION`` tag, or (for a file holding only this stream, in a format that declares it) the file's."""
    if stream.duration and stream.time_base:
        return stream.duration * stream.time_base
    tag = next((v for k, v in (stream.metadata or {}).items() if k.upper() == "DURATION"), None)
    if tag:
        try:
            hours, minutes, seconds = tag.split(":")
            return Fraction(int(hours) * 3600 + int(minutes) * 60) + Fraction(seconds)
        except ValueError:
            log.debug("unreadable stream DURATION tag %r", tag)
    format_names = set((container.format.name or "").split(","))
    if container.duration and len(container.streams) == 1 and format_names & set(_DECLARING_FORMATS):
        return Fraction(container.duration, av.time_base)
    return None


def truncation_of(decoded: Fraction, declared: Fraction | None, interval: Fraction, error: str | None):
    """The truncation rule: a ``Truncation`` when decoding met an error or ``decoded`` seconds fall short of
    ``declared`` by more than rounding explains; None for a complete video."""
    tolerance = max(Fraction(_TRUNCATION_SECONDS), _TRUNCATION_FRAMES * interval)
    short = declared is not None and declared - decoded > tolerance
    if not short and error is None:
        return None
    return Truncation(float(decoded), float(declared) if declared is not None else None, error)
