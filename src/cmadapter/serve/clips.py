"""Cut a segment out of a video file with PyAV: packets copied when the segment starts on a keyframe, else re-encoded.

A stream copy keeps the original quality and costs nothing, but a cut can only start on a keyframe (a
decoder needs one to begin); most segments start elsewhere, so those frames are decoded and encoded again
(H.264 in MP4, VP9 in WebM, as the source's container), scaled down to ``short_side`` when larger. Only the
video stream is kept. ``start`` and ``end`` are seconds from the video's first frame, as the index times
segments; the container's index is used to seek to the keyframe before ``start``, so a cut near the end
of a long video reads only what it needs.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av

from ..errors import DataError
from ..video.seek import first_frame_pts

log = logging.getLogger(__name__)

# Output container and codec by the source's container family.
_FORMATS = {".webm": ("webm", "libvpx-vp9"), ".mkv": ("matroska", "libx264")}
_DEFAULT_FORMAT = ("mp4", "libx264")


def clip_suffix(source: Path) -> str:
    return ".webm" if source.suffix.lower() == ".webm" else (".mkv" if source.suffix.lower() == ".mkv" else ".mp4")


def export_clip(source: Path, start: float, end: float, out: Path, *, short_side: int | None = None) -> str:
    """Write the frames of ``source`` in [start, end) to ``out``; returns "copy" or "encode" (what was done).

    A re-encoded clip whose short side exceeds ``short_side`` is scaled down to it (aspect kept, even sizes)."""
    if end <= start:
        raise DataError(f"{source}: empty clip [{start}, {end})")
    try:
        with av.open(str(source)) as container:
            stream = container.streams.video[0]
            first = first_frame_pts(container, stream)
            origin = float((first if first is not None else stream.start_time or 0) * stream.time_base)
            start_at, end_at = origin + start, origin + end
            _seek_before(container, stream, start_at)
            if _starts_on_keyframe(container, stream, start_at):
                _seek_before(container, stream, start_at)
                _copy(container, stream, start_at, end_at, out)
                return "copy"
            _seek_before(container, stream, start_at)
            _encode(container, stream, start_at, end_at, out, short_side)
            return "encode"
    except (av.FFmpegError, IndexError) as exc:
        raise DataError(f"{source}: cannot cut [{start:.2f}, {end:.2f}) s: {exc}") from exc


def scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """Even output sizes (yuv420p needs them), the short side at most ``short_side``, the aspect kept."""
    scale = min(1.0, short_side / min(width, height)) if short_side else 1.0
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _frame_duration(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    return float(1 / rate)


def _seek_before(container, stream, seconds: float) -> None:
    """To the keyframe at or before ``seconds`` (the decoder is flushed)."""
    container.seek(max(0, int(seconds / stream.time_base)), stream=stream, backward=True)


def _starts_on_keyframe(container, stream, start: float) -> bool:
    """Whether a keyframe lies within half a frame of ``start`` (so a copy starts where the segment does)."""
    tolerance = _frame_duration(stream) / 2
    for packet in container.demux(stream):
        if packet.pts is None:
            continue
        time = float(packet.pts * packet.time_base)
        if time > start + tolerance:
            return False
        if packet.is_keyframe and abs(time - start) <= tolerance:
            return True
    return False


def _copy(container, stream, start: float, end: float, out: Path) -> None:
    with av.open(str(out), "w", format=_format_of(out)[0]) as output:
        target = output.add_stream_from_template(stream)
        offset = None
        for packet in container.demux(stream):
            if packet.pts is None or packet.dts is None:
                continue
            time = float(packet.pts * packet.time_base)
            if time < start - _frame_duration(stream) / 2:
                continue
            if time >= end - _frame_duration(stream) / 2:
                break
            if offset is None:
                offset = packet.dts
            packet.pts -= offset
            packet.dts -= offset
            packet.stream = target
            output.mux(packet)
        if offset is None:
            raise DataError(f"no frames between {start:.2f} and {end:.2f} s")


def _encode(container, stream, start: float, end: float, out: Path, short_side: int | None) -> None:
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    container_format, codec = _format_of(out)
    with av.open(str(out), "w", format=container_format) as output:
        target = output.add_stream(codec, rate=rate)
        target.width, target.height = scaled_size(stream.codec_context.width, stream.codec_context.height, short_side)
        target.pix_fmt = "yuv420p"
        if codec == "libvpx-vp9":
            target.options = {"deadline": "realtime", "cpu-used": "8"}
        else:
            target.options = {"preset": "veryfast"}
        index = 0
        tolerance = _frame_duration(stream) / 2
        for frame in container.decode(stream):
            if frame.time is None or frame.time < start - tolerance:
                continue
            if frame.time >= end - tolerance:
                break
            image = frame.reformat(width=target.width, height=target.height, format="yuv420p")
            image.pts = index
            image.time_base = Fraction(1) / rate
            index += 1
            for packet in target.encode(image):
                output.mux(packet)
        if index == 0:
            raise DataError(f"no frames between {start:.2f} and {end:.2f} s")
        for packet in target.encode():
            output.mux(packet)


def _format_of(out: Path) -> tuple[str, str]:
    return _FORMATS.get(out.suffix.lower(), _DEFAULT_FORMAT)
