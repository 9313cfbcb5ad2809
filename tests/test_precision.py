"""Frozen weights stored in the autocast dtype: same numbers as plain autocast, less memory."""

import pytest
import torch

from cmadapter import CmadapterError, build_model
from cmadapter.precision import autocast
from cmadapter.training.loss import symmetric_infonce
from helpers import random_video


def step(model, tokens, frames):
    with autocast(model.device, "bf16"):
        loss = symmetric_infonce(model(tokens, frames, None))
    loss.backward()
    grads = {k: v.grad.clone() for k, v in model.trainable_parameters().items()}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


@pytest.mark.parametrize("method", ["cross-modal", "lora", "partial"])
def test_stored_weights_give_bitwise_the_autocast_results(tiny_weights, method):
    options = {"r": 4, "shared_dim": 8} if method == "cross-modal" else {}
    torch.manual_seed(0)
    plain = build_model(pretrained=tiny_weights, method=method, **options)
    torch.manual_seed(0)
    stored = build_model(pretrained=tiny_weights, method=method, **options)
    cast = stored.store_frozen_weights(torch.bfloat16)
    assert cast > 0
    assert all(p.dtype == torch.float32 for p in stored.trainable_parameters().values())  # fp32 masters
    assert stored.clip.ln_final.weight.dtype == torch.float32  # autocast runs LayerNorm in fp32: untouched
    tokens, frames = plain.tokenize(["a red square", "a blue circle"]), random_video(2, 3)
    loss_a, grads_a = step(plain, tokens, frames)
    loss_b, grads_b = step(stored, tokens, frames)
    assert torch.equal(loss_a, loss_b)
    for key in grads_a:
        assert torch.equal(grads_a[key], grads_b[key]), key


def test_weights_of_the_backbone_really_shrink(tiny_weights):
    model = build_model(pretrained=tiny_weights)
    before = sum(p.numel() * p.element_size() for p in model.clip.visual.parameters())
    model.store_frozen_weights(torch.bfloat16)
    after = sum(p.numel() * p.element_size() for p in model.clip.visual.parameters())
    assert after < 0.75 * before


def test_running_without_the_matching_autocast_is_a_clear_error(tiny_weights):
    model = build_model(pretrained=tiny_weights)
    model.store_frozen_weights(torch.bfloat16)
    with pytest.raises(CmadapterError, match="run it under torch.autocast"):
        model.encode_text(model.tokenize(["a"]))
