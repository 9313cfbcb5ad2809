"""Grad-CAM maps and frame weights on a tiny model: shapes, padding, pairing, no side effects."""

import pytest
import torch

from cmadapter import build_model
from cmadapter.report.saliency import frame_weights, patch_heatmaps


@pytest.fixture(scope="module", params=["cross-modal", None])
def model(request, tiny_weights):
    return build_model(pretrained=tiny_weights, method=request.param)


def test_maps_are_per_patch_nonnegative_and_zero_on_padding(model):
    frames = torch.randn(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[True, True, False], [True, True, True]])
    maps = patch_heatmaps(model, ["a red video", "a blue video"], frames, mask)
    assert maps.shape == (2, 3, 4, 4)  # 32 px in 8-px patches
    assert (maps >= 0).all() and maps[0, 2].abs().sum() == 0
    assert (maps.sum(dim=(2, 3))[mask] > 0).all()
    # One backward pass for the batch gives each pair what it gets alone.
    alone = patch_heatmaps(model, ["a blue video"], frames[1:], mask[1:])
    torch.testing.assert_close(alone[0], maps[1], atol=1e-5, rtol=1e-4)
    # Another caption gives another map: the map depends on the text.
    other = patch_heatmaps(model, ["a green square"], frames[1:], mask[1:])
    assert not torch.allclose(other[0], maps[1])


def test_maps_leave_the_model_as_they_found_it(model):
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    patch_heatmaps(model, ["a red video"], torch.randn(1, 2, 3, 32, 32), torch.ones(1, 2, dtype=torch.bool))
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before
    assert all(p.grad is None for p in model.parameters())
    assert not model.clip.visual.transformer.resblocks[-1].entry._forward_hooks


def test_frame_weights_are_the_heads_softmax_or_uniform_for_meanp(tiny_weights):
    model = build_model(pretrained=tiny_weights, method=None)
    text, video = torch.randn(2, 32), torch.randn(3, 4, 32)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    weights = frame_weights(model, text, video, mask)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))
    assert (weights[:, 1, 2:] == 0).all()
    expected = torch.softmax(text @ video[0].T / model.head.temperature, dim=-1)
    torch.testing.assert_close(weights[:, 0], expected)
    model.set_head("meanP")
    torch.testing.assert_close(frame_weights(model, text, video, mask)[0, 1], torch.tensor([0.5, 0.5, 0, 0]))
