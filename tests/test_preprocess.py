"""CLIP preprocessing on uint8 frames matches open_clip/torchvision's PIL pipeline exactly."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from cmadapter.video.preprocess import CLIP_MEAN, CLIP_STD, center_crop, fit_frame, resized_size, to_model_input


def clip_transform(size: int):
    """What OpenAI CLIP and open_clip apply to an image at evaluation."""
    return transforms.Compose(
        [
            transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(CLIP_MEAN, CLIP_STD),
        ]
    )


@pytest.mark.parametrize("shape", [(720, 1280), (240, 320), (144, 176), (17, 33), (300, 224), (224, 224), (57, 400)])
def test_fit_frame_and_normalisation_equal_clips_pil_pipeline(shape):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    expected = clip_transform(32)(Image.fromarray(image))
    frames, mask = to_model_input(fit_frame(image, 32)[None])
    assert mask.tolist() == [True]
    assert torch.equal(frames[0], expected)


def test_resized_size_truncates_the_long_side_like_torchvision():
    assert resized_size(1280, 720, 224) == (398, 224)
    assert resized_size(640, 272, 224) == (527, 224)
    assert resized_size(48, 64, 32) == (32, 42)


def test_center_crop_offsets_round_like_torchvision():
    frame = np.arange(5 * 8).reshape(5, 8, 1)
    assert center_crop(frame, 3)[0, 0, 0] == frame[1, 2, 0]  # (5-3)/2 = 1, (8-3)/2 = 2.5 -> 2
    with pytest.raises(ValueError, match="cannot crop"):
        center_crop(frame, 6)


def test_model_input_is_left_aligned_and_masked():
    frames = np.full((3, 8, 8, 3), 200, dtype=np.uint8)
    x, mask = to_model_input(frames, max_frames=5)
    assert x.shape == (5, 3, 8, 8) and x.dtype == torch.float32
    assert mask.tolist() == [True, True, True, False, False]
    assert torch.isfinite(x).all() and not x[3:].any()
    assert torch.allclose(x[0, 0], torch.full((8, 8), (200 / 255 - CLIP_MEAN[0]) / CLIP_STD[0]))
    with pytest.raises(ValueError, match="1 to 2 frames"):
        to_model_input(frames, max_frames=2)
    with pytest.raises(ValueError, match="uint8"):
        to_model_input(frames.astype(np.float32))
