"""A tiny learnable text-video task built from tensors: videos of solid colours, captions naming them.

With a random tiny backbone the adapters can learn it in a few dozen steps, which makes it a real
learning signal for training tests without any video decoding.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from cmadapter.evaluation.evaluate import EvalData
from cmadapter.training.data import TrainingData
from cmadapter.video.preprocess import CLIP_MEAN, CLIP_STD

COLOURS = {
    "red": (1.0, 0.1, 0.1),
    "green": (0.1, 0.9, 0.1),
    "blue": (0.1, 0.2, 1.0),
    "yellow": (1.0, 0.9, 0.1),
    "purple": (0.6, 0.1, 0.8),
    "orange": (1.0, 0.5, 0.0),
    "white": (1.0, 1.0, 1.0),
    "black": (0.0, 0.0, 0.0),
}
MEAN = torch.tensor(CLIP_MEAN)[:, None, None]
STD = torch.tensor(CLIP_STD)[:, None, None]


def clip_frames(colour: str, seed: int, frames: int = 3, size: int = 32, valid: int | None = None):
    generator = torch.Generator().manual_seed(seed)
    rgb = torch.tensor(COLOURS[colour])[:, None, None].expand(3, size, size)
    video = (rgb + 0.15 * torch.randn(frames, 3, size, size, generator=generator)).clamp(0, 1)
    valid = frames if valid is None else valid
    mask = torch.arange(frames) < valid
    video = (video - MEAN) / STD
    video[~mask] = 0.0  # padding; masked out downstream
    return video, mask


class ColourClips(Dataset):
    def __init__(self, colours: list[str], seed: int, frames: int = 3):
        self.colours, self.seed, self.frames = colours, seed, frames
        self.video_ids = [f"{c}-{seed}-{i}" for i, c in enumerate(colours)]

    def __len__(self) -> int:
        return len(self.colours)

    def __getitem__(self, i):
        video, mask = clip_frames(self.colours[i], self.seed * 1000 + i, self.frames, valid=1 + i % self.frames)
        return video, mask, self.video_ids[i]


class ColourPairs(Dataset):
    def __init__(self, clips: ColourClips, tokenizer):
        self.clips = clips
        self.tokens = tokenizer([f"a {c} video" for c in clips.colours])

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i):
        video, mask, video_id = self.clips[i]
        return self.tokens[i], video, mask, video_id


def colour_eval(seed: int) -> EvalData:
    colours = list(COLOURS)
    clips = ColourClips(colours, seed)
    return EvalData(
        name=f"colours/{seed}",
        video_ids=clips.video_ids,
        captions=[f"a {c} video" for c in colours],
        caption_video=list(range(len(colours))),
        clips=clips,
    )


def colour_data(tokenizer, per_colour: int = 4, seed: int = 0, validation: bool = True) -> TrainingData:
    colours = [c for c in COLOURS for _ in range(per_colour)]
    return TrainingData(
        train=ColourPairs(ColourClips(colours, seed), tokenizer),
        validation=colour_eval(seed + 1) if validation else None,
        test=colour_eval(seed + 2),
    )
