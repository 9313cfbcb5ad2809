"""Frame masks: bool or 0/1 integers (CLIP4Clip's form) everywhere a mask is taken; anything else a clear error."""

import pytest
import torch
from torch.utils.data import Dataset

from cmadapter import CmadapterError, build_model
from cmadapter.config import EvalConfig
from cmadapter.evaluation.evaluate import EvalData, evaluate
from cmadapter.heads import MeanPool, TextConditionedPool
from cmadapter.masks import frame_mask
from helpers import random_video
from toy_data import colour_eval

BOOL = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)


@pytest.fixture(scope="module")
def model(tiny_weights):
    torch.manual_seed(3)
    return build_model(pretrained=tiny_weights, r=4, shared_dim=8).eval()


@pytest.mark.parametrize("dtype", [torch.long, torch.int32, torch.uint8, torch.int8, torch.float32])
@pytest.mark.parametrize("head", ["text-pool", "meanP"])
def test_a_01_mask_gives_bitwise_the_logits_of_the_bool_mask(model, dtype, head):
    model.set_head(head)
    frames = random_video(3, 4)
    tokens = model.tokenize(["a red video", "a blue video"])
    with torch.no_grad():
        text = model.encode_text(tokens)
        video = model.encode_video(frames, BOOL)
        assert torch.equal(model.encode_video(frames, BOOL.to(dtype)), video)
        expected = model.similarity(text, video, BOOL)
        assert torch.equal(model.similarity(text, video, BOOL.to(dtype)), expected)
        assert torch.equal(
            model(tokens[:1].expand(3, -1), frames, BOOL.to(dtype)), model(tokens[:1].expand(3, -1), frames, BOOL)
        )
    model.set_head("text-pool")


@pytest.mark.parametrize("head", [TextConditionedPool(), MeanPool()])
def test_heads_accept_01_masks(head):
    torch.manual_seed(0)
    text, video = torch.randn(2, 8), torch.randn(3, 4, 8)
    scale = torch.tensor(100.0)
    assert torch.equal(head(text, video, BOOL.long(), scale), head(text, video, BOOL, scale))
    if isinstance(head, TextConditionedPool):
        assert torch.equal(head.frame_weights(text, video, BOOL.long()), head.frame_weights(text, video, BOOL))


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (BOOL.float() * 0.5, r"only 0 and 1 .*0\.5"),
        (BOOL.long() * 2, r"only 0 and 1 .*2"),
        (BOOL.long() - 1 + BOOL.long(), r"only 0 and 1 .*-1"),
        (BOOL.to(torch.complex64), "dtype torch.complex64"),
        (BOOL[:, :3], r"\[B, T\] = \[3, 4\], got shape \[3, 3\]"),
        (BOOL[None], r"\[B, T\] = \[3, 4\], got shape \[1, 3, 4\]"),
        (BOOL.tolist(), "must be a torch tensor"),
        (torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]), r"rows \[1\] have no valid frame"),
    ],
)
def test_bad_masks_are_one_line_errors(model, mask, message):
    frames = random_video(3, 4)
    text = torch.randn(2, model.clip.text_projection.shape[1])
    video = torch.randn(3, 4, model.clip.text_projection.shape[1])
    for call in (lambda: model.similarity(text, video, mask), lambda: model.encode_video(frames, mask)):
        with pytest.raises(CmadapterError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_mismatched_features_are_one_line_errors(model):
    with pytest.raises(CmadapterError, match=r"text \[N, D\] and video \[M, F, D\]"):
        model.similarity(torch.randn(2, 32), torch.randn(3, 32))
    with pytest.raises(CmadapterError, match=r"got \[2, 32\] and \[3, 4, 16\]"):
        model.similarity(torch.randn(2, 32), torch.randn(3, 4, 16))


def test_frame_mask_returns_bool_unchanged():
    assert frame_mask(BOOL, (3, 4)) is BOOL


class LongMasks(Dataset):
    """A clip dataset that yields CLIP4Clip-style long masks."""

    def __init__(self, clips):
        self.clips = clips

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        frames, mask, video_id = self.clips[i]
        return frames, mask.long(), video_id


def test_evaluate_accepts_clips_with_01_masks(model):
    data = colour_eval(5)
    assert not all(bool(data.clips[i][1].all()) for i in range(len(data.clips)))  # some padding to mask
    as_long = EvalData(data.name, data.video_ids, data.captions, data.caption_video, LongMasks(data.clips))
    config = EvalConfig(batch_size=3)
    assert evaluate(model, as_long, config, progress=False) == evaluate(model, data, config, progress=False)
