"""Our 2-D residual blocks: same numbers as open_clip's, and no batched-matmul backward for frozen weights."""

import torch
from torch.profiler import ProfilerActivity, profile

from cmadapter import build_model
from cmadapter.backbone import build_clip
from cmadapter.blocks import Attention, ResidualBlock
from conftest import TINY, random_video


def test_blocks_share_tensors_with_the_open_clip_block_they_replace():
    clip = build_clip(TINY)
    original = clip.visual.transformer.resblocks[0]
    block = ResidualBlock(original)
    assert block.attn.in_proj.weight is original.attn.in_proj_weight
    assert block.attn.out_proj.bias is original.attn.out_proj.bias
    assert block.mlp is original.mlp
    x = torch.randn(3, 5, TINY.vision_width)
    mask = torch.full((5, 5), float("-inf")).triu(1)
    with torch.no_grad():
        assert torch.allclose(block(x), original(x), atol=1e-6)
        assert torch.allclose(block(x, attn_mask=mask), original(x, attn_mask=mask), atol=1e-6)


def test_attention_is_a_plain_linear_pair():
    attention = Attention(64, 2)
    assert isinstance(attention.in_proj, torch.nn.Linear) and isinstance(attention.out_proj, torch.nn.Linear)


def test_adapter_step_has_no_batched_matmul_for_frozen_weights(tiny_weights):
    """The slow path (3-D activation x frozen weight -> bmm + expanded copies in backward) must not return."""
    model = build_model(pretrained=tiny_weights, r=4, shared_dim=8)
    tokens = model.tokenize(["a red square", "a blue circle"])
    frames = random_video(2, 3)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for dtype in (torch.float32, torch.bfloat16):
            with torch.autocast("cpu", dtype=dtype, enabled=dtype == torch.bfloat16):
                # The towers only: the similarity head's einsums are batched matmuls by design.
                loss = model.encode_video(frames).float().pow(2).sum() + model.encode_text(tokens).float().pow(2).sum()
            loss.backward()
    names = {event.key for event in prof.key_averages()}
    assert "aten::mm" in names  # the profile did see the matmuls
    assert "aten::bmm" not in names


def test_lean_quick_gelu_matches_autograd_and_saves_one_tensor():
    from cmadapter.blocks import QuickGELU

    x = torch.randn(64, 48, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(QuickGELU(), (x,))
    y = torch.randn(50, 30, requires_grad=True)
    reference = y * torch.sigmoid(1.702 * y)
    assert torch.equal(QuickGELU()(y), reference)  # the forward numbers are open_clip's, bit for bit
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        QuickGELU()(y)
    assert len(saved) == 1 and saved[0] is y
