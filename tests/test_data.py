"""The torch Dataset layer: clips for evaluation, caption-video pairs for training, missing videos."""

from __future__ import annotations

import logging

import pytest
import torch
from torch.utils.data import DataLoader

from cmadapter.datasets import Record, retrieval_split
from cmadapter.datasets.clips import CaptionVideoPairs, VideoClips, collate, loader_settings
from cmadapter.errors import DataError
from cmadapter.video.cache import PrepareOptions, prepare_cache
from cmadapter.video.sources import VideoFolder
from media import write_video


def fake_tokenizer(texts: list[str]) -> torch.Tensor:
    """Deterministic [N, 8] token ids standing for each caption (the real one is tested once below)."""
    return torch.tensor([[sum(map(ord, t)) % 1000 + k for k in range(8)] for t in texts])


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for i in range(5):
        write_video(root / f"vid{i}.mp4", 12 + 4 * i, rate=4, size=(48, 40))  # 3 s, 4 s, … at 4 fps
    return root


def records(videos_per_split: int = 5, captions: int = 10) -> list[Record]:
    return [
        Record(f"vid{v}", f"caption {c} of video {v}", "train")
        for v in range(videos_per_split)
        for c in range(captions)
    ]


def test_video_clips_give_each_video_once_padded_and_masked(videos):
    split = retrieval_split(
        [Record("vid0", "a", "test"), Record("vid0", "b", "test"), Record("vid3", "c", "test", 1.0, 3.0)], "t"
    )
    clips = VideoClips.from_split(split, videos, image_size=32, max_frames=4)
    assert len(clips) == 2
    frames, mask, video_id = clips[0]
    assert video_id == "vid0" and frames.shape == (4, 3, 32, 32) and frames.dtype == torch.float32
    assert mask.tolist() == [True, True, True, False]  # 3 s at 1 fps
    assert torch.isfinite(frames).all() and not frames[3].any()
    _, mask, video_id = clips[1]
    assert video_id == "vid3" and mask.tolist() == [True, True, False, False]  # window [1, 3)


def test_pairs_all_captions_are_one_item_each(videos):
    pairs = CaptionVideoPairs(records(), videos, fake_tokenizer, image_size=32, max_frames=6)
    assert len(pairs) == 50
    tokens, frames, mask, video_id = pairs[23]
    assert video_id == "vid2" and torch.equal(tokens, fake_tokenizer(["caption 3 of video 2"])[0])
    assert frames.shape == (6, 3, 32, 32) and mask.sum() == 5
    tokens, frames, masks, ids = collate([pairs[0], pairs[49]])
    assert tokens.shape == (2, 8) and frames.shape == (2, 6, 3, 32, 32) and masks.shape == (2, 6)
    assert ids == ["vid0", "vid4"]


def test_one_caption_per_video_is_drawn_from_seed_and_epoch(videos):
    def captions(seed, epoch):
        pairs = CaptionVideoPairs(records(), videos, fake_tokenizer, 32, sampling="one-per-video", seed=seed)
        pairs.set_epoch(epoch)
        return [pairs.record(i).caption for i in range(len(pairs))]

    pairs = CaptionVideoPairs(records(), videos, fake_tokenizer, 32, sampling="one-per-video", seed=7)
    assert len(pairs) == 5
    first = captions(7, 0)
    assert [c.endswith(f"of video {v}") for v, c in enumerate(first)] == [True] * 5
    assert captions(7, 0) == first  # deterministic
    assert captions(7, 1) != first and captions(8, 0) != first  # 10 captions a video: a repeat is 1e-5 likely


def test_set_epoch_reaches_persistent_loader_workers(videos):
    pairs = CaptionVideoPairs(records(3), videos, fake_tokenizer, 32, max_frames=2, sampling="one-per-video", seed=1)
    loader = DataLoader(pairs, batch_size=3, collate_fn=collate, **loader_settings("cpu", workers=1))
    for epoch in (0, 1, 2):
        pairs.set_epoch(epoch)
        tokens, _, _, ids = next(iter(loader))
        expected = fake_tokenizer([pairs.record(i).caption for i in range(3)])
        assert ids == ["vid0", "vid1", "vid2"] and torch.equal(tokens, expected), f"epoch {epoch}"


def test_a_missing_training_video_fails_by_default_with_its_id(videos):
    data = [*records(2, 2), Record("vid9", "a lost video", "train")]
    with pytest.raises(DataError, match=r"1 of 3 videos cannot be read.*'vid9'.*missing='drop'"):
        CaptionVideoPairs(data, videos, fake_tokenizer, 32)


def test_missing_videos_are_dropped_and_counted_when_asked(videos, caplog):
    data = [*records(2, 2), Record("vid9", "x", "train"), Record("vid8", "y", "train"), Record("vid9", "z", "train")]
    with caplog.at_level(logging.WARNING):
        pairs = CaptionVideoPairs(data, videos, fake_tokenizer, 32, missing="drop")
    assert len(pairs) == 4 and {r.video_id for r in pairs.records} == {"vid0", "vid1"}
    assert "dropping 2 of 4 videos" in caplog.text and "'vid9'" in caplog.text
    clips = VideoClips(["vid0", "vid8"], None, videos, 32, missing="drop")
    assert clips.video_ids == ["vid0"]


def test_missing_videos_in_a_cache_are_reported_with_prepares_reason(videos, tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "vid0.mp4").symlink_to(videos / "vid0.mp4")
    (tmp_path / "videos" / "bad.mp4").write_bytes(b"junk" * 100)
    prepare_cache(["vid0", "bad"], VideoFolder(tmp_path / "videos"), tmp_path / "cache", PrepareOptions(progress=False))
    with pytest.raises(
        DataError, match=r"1 of 2 videos cannot be read from frame cache .*prepare found it undecodable"
    ):
        VideoClips(["vid0", "bad"], None, tmp_path / "cache", 32)
    clips = VideoClips(["vid0"], None, tmp_path / "cache", 32, max_frames=4)
    direct = VideoClips(["vid0"], None, videos, 32, max_frames=4)
    assert torch.equal(clips[0][0], direct[0][0])  # the cache is chosen by its cache.json, and reads the same


def test_an_undecodable_video_raises_with_its_id_when_read(tmp_path):
    (tmp_path / "fine.mp4").write_bytes(b"\x1a\x45\xdf\xa3" + b"\x00" * 500)  # looks like a file, is not a video
    clips = VideoClips(["fine"], None, tmp_path, 32)  # found: it exists
    with pytest.raises(DataError, match=r"video 'fine'.*cannot decode"):
        clips[0]


def test_the_real_tokenizer_fits(videos):
    from cmadapter.tokenizer import Tokenizer

    pairs = CaptionVideoPairs(records(1, 1), videos, Tokenizer(None, 32), 32, max_frames=2)
    tokens = pairs[0][0]
    assert tokens.shape == (32,) and tokens.dtype == torch.long and tokens[0] == 49406


def test_loader_settings():
    assert loader_settings("cpu", 0) == {"num_workers": 0, "pin_memory": False}
    cuda = loader_settings(torch.device("cuda"), 8)
    assert cuda["pin_memory"] and cuda["persistent_workers"] and cuda["num_workers"] == 8
