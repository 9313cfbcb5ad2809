"""What a search looks for: words, a picture, or a moment of an indexed video; each gives one query vector.

All three go through the same two stages (``query.two_stage``): stage 1 by the normalised vector, stage 2 by the
adapter's head pooling each candidate segment's frames by their match with it (``heads.score_one``: for words the
paper's text-conditioned pooling; for a picture or a moment the same pooling, with the picture's feature in the
place of the words'). Words are encoded by the adapter's text tower, a picture by its image tower exactly as an
indexed photo was; a moment's vector is the stored feature of that frame of the index (the very feature stage 2
reads), so nothing is encoded for it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..model import text_pool_positions
from ..precision import autocast
from ..slots import is_empty
from ..video.preprocess import to_model_input
from .errors import NotInIndex, SearchError
from .files import display_path


@dataclass(frozen=True)
class TextQuery:
    text: str
    kind: ClassVar[str] = "text"

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise SearchError('the query is empty; type what to look for, e.g. "a dog catches a frisbee"')
        object.__setattr__(self, "text", self.text.strip())

    @property
    def key(self) -> tuple:
        return ("text", self.text)

    @property
    def label(self) -> str:
        return self.text


@dataclass(frozen=True)
class PictureQuery:
    pixels: np.ndarray = field(repr=False)  # uint8 [S, S, 3]: the model's input square (``pictures.fit_picture``)
    name: str = "picture"
    kind: ClassVar[str] = "image"

    @property
    def key(self) -> tuple:
        return ("image", hashlib.sha256(np.ascontiguousarray(self.pixels).tobytes()).hexdigest(), self.pixels.shape)

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True)
class MomentQuery:
    """A frame of an indexed video: the grid frame nearest to ``time``."""

    video_id: int
    video: str
    frame: int
    time: float  # of that frame, in seconds
    kind: ClassVar[str] = "like"

    @property
    def key(self) -> tuple:
        return ("like", self.video_id, self.frame)

    @property
    def label(self) -> str:
        return f"{display_path(self.video)}@{self.time:.2f}"


@torch.no_grad()
def encode_texts(model, texts: list[str], precision: str) -> torch.Tensor:
    """Text features float32 [N, D] of captions, with the model's active adapter, in one forward.

    The text tower is causal and pools the end-of-text token, so the padding after the longest caption's end
    changes nothing and is not computed (a 5-word query runs 8 positions instead of 32), unless a method
    changes the token sequence (prompts), where positions are not the caption's own."""
    tokens = model.tokenize([text.strip() for text in texts])
    clip = model.clip
    pool_type = getattr(clip, "text_pool_type", "argmax")
    blocks = getattr(getattr(clip, "transformer", None), "resblocks", [])
    plain = is_empty(clip.text_input) and all(is_empty(getattr(b, "entry", torch.nn.Identity())) for b in blocks)
    if plain and pool_type in ("argmax", "eos"):
        pool = text_pool_positions(tokens, pool_type, getattr(clip, "text_eos_id", None))
        tokens = tokens[:, : int(pool.max()) + 1]
    with autocast(model.device, precision):
        return model.encode_text(tokens).float().cpu()


@torch.no_grad()
def encode_picture(model, pixels: np.ndarray, precision: str) -> torch.Tensor:
    """The image tower's feature float32 [D] of a fitted picture, with the model's active adapter."""
    images, _ = to_model_input(pixels[None])
    with autocast(model.device, precision):
        return model.encode_images(images)[0].float().cpu()


_CLOCK = re.compile(r"(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)")


def parse_moment(spec: str) -> tuple[str, float]:
    """``VIDEO@TIME`` -> (video, seconds): TIME in seconds (``75.5``) or as a clock (``1:15.5``, ``1:01:15``);
    the last ``@`` splits (a path may hold others)."""
    video, at, clock = spec.rpartition("@")
    if not at or not video or not clock:
        raise SearchError(f"--like {spec!r}: give VIDEO@TIME, e.g. clips/dog.mp4@12.5 or 42@1:05 (a video id)")
    return video, parse_time(clock, spec)


def parse_time(clock: str, context: str | None = None) -> float:
    clock = clock.strip()
    match = _CLOCK.fullmatch(clock)
    try:
        seconds = (
            float(match.group(1) or 0) * 3600 + float(match.group(2)) * 60 + float(match.group(3))
            if match
            else float(clock)
        )
    except ValueError:
        seconds = float("nan")
    if not np.isfinite(seconds) or seconds < 0:
        raise SearchError(f"{context or clock!r}: the time must be seconds (12.5) or a clock (1:05), not {clock!r}")
    return seconds


def nearest_frame(times: np.ndarray, seconds: float, what: str) -> int:
    """The index of the grid frame nearest to ``seconds`` in a video's frame times; a time past the video's end
    (more than one frame interval beyond its last frame) is an error naming the video and its length."""
    if len(times) == 0:
        raise SearchError(f"{what} has no frames in the index")
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    if seconds > float(times[-1]) + step:
        raise SearchError(f"{what} is {float(times[-1]) + step:.2f} s long; there is no moment at {seconds:g} s")
    return int(np.argmin(np.abs(times - seconds)))


def find_moment(snapshot, video: int | str | Path, seconds: float, root: Path) -> MomentQuery:
    """The moment ``seconds`` into an indexed video of ``snapshot``, the video named by its id or its path (as
    indexed, or relative to here); a one-line error naming it when the index has no such video."""
    with snapshot.reading() as store:
        if isinstance(video, int):
            file_id = video
        else:
            file_id = store.file_id_of(str(video))
            if file_id is None:
                file_id = store.file_id_of(str(Path(video).absolute()))
            if file_id is None and str(video).isdigit():
                file_id = int(str(video))
        row = store.file(file_id) if file_id is not None and 0 <= file_id < 2**63 else None
    if row is None:
        raise NotInIndex(
            f"{display_path(str(video))} is not a video of {root}; give its path as indexed or its id"
            " (video_id in search --json)"
        )
    frame = nearest_frame(row.times, float(seconds), f"{display_path(row.path)} (video {row.id})")
    return MomentQuery(row.id, row.path, frame, float(row.times[frame]))
