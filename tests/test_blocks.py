"""Our 2-D residual blocks: same numbers as open_clip's, and no batched-matmul backward for frozen weights."""

import pytest
import torch

from cmadapter import build_model
from cmadapter.backbone import build_clip
from cmadapter.blocks import Attention, ResidualBlock
from helpers import TINY, perturb, random_video, weight_batched_matmuls


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

    def run():
        for dtype in (torch.float32, torch.bfloat16):
            with torch.autocast("cpu", dtype=dtype, enabled=dtype == torch.bfloat16):
                # The towers only: the similarity head's einsums are batched matmuls by design.
                loss = model.encode_video(frames).float().pow(2).sum() + model.encode_text(tokens).float().pow(2).sum()
            loss.backward()

    matmuls, offending = weight_batched_matmuls(model, run)
    assert matmuls > 0 and not offending, offending


def test_the_guard_sees_the_slow_path(tiny_weights):
    """The check above fails on open_clip's own blocks (3-D matmuls), so it can fail."""
    from cmadapter.backbone import build_clip

    model = build_model(pretrained=tiny_weights, method=None)
    model.clip = build_clip(TINY).requires_grad_(False)  # open_clip's own blocks, frozen
    frames = random_video(2, 3).flatten(0, 1).requires_grad_()  # input gradients through frozen layers

    def run():
        model.clip.encode_image(frames).pow(2).sum().backward()

    assert weight_batched_matmuls(model, run)[1]


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
    assert len(saved) == 1 and saved[0].shape == y.shape  # one tensor the size of the input


def test_cpu_attention_matches_sdpa_and_its_gradients():
    import torch.nn.functional as F

    from cmadapter.blocks import attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = torch.full((7, 7), float("-inf"), dtype=torch.float64).triu(1)
    for m in (None, mask):
        assert torch.autograd.gradcheck(lambda a, b, c, m=m: attention(a, b, c, m), (q, k, v))
        assert torch.allclose(attention(q, k, v, m), F.scaled_dot_product_attention(q, k, v, attn_mask=m), atol=1e-12)


def test_cpu_attention_keeps_q_k_v_and_row_statistics_only():
    from cmadapter.blocks import attention

    q, k, v = (torch.randn(2, 3, 7, 8, requires_grad=True) for _ in range(3))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        attention(q, k, v, None)
    full_size = [t for t in saved if t.shape == q.shape]
    assert len(full_size) == 3  # q, k, v; not the output (backward gets its row sums from the probabilities)
    assert all(t.numel() <= 2 * 3 * 7 for t in saved if t.shape != q.shape)  # the log-sum-exp per row


def features_and_gradients(model, encode):
    """One tower's features and the gradients of every trainable tensor (zero for the other tower's)."""
    params = [p for p in model.parameters() if p.requires_grad]
    features = encode()
    gradients = torch.autograd.grad(features.pow(2).sum(), params, allow_unused=True)
    return features.detach(), [torch.zeros(()) if g is None else g for g in gradients]


def assert_same_features_and_gradients(result, reference):
    assert torch.allclose(result[0], reference[0], atol=1e-5)
    for a, b in zip(result[1], reference[1]):  # sums over tokens in another order: float rounding
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "method, options",
    [
        ("cross-modal", {"r": 4, "shared_dim": 8}),
        ("lora", {"r": 2, "mlp": True}),
        ("vpt", {"deep": True}),
        ("adaptformer", {"r": 4}),
        ("full", {}),
    ],
)
def test_last_image_block_computing_the_class_token_alone_changes_nothing(tiny_weights, method, options):
    """The image tower's last block keeps only the class token: features and gradients as with every token."""
    torch.manual_seed(0)  # as in the text tower's test below: independent of the tests before it
    model = build_model(pretrained=tiny_weights, method=method, **options)
    perturb(model.method, seed=3)
    blocks = model.backbone.vision_blocks
    assert blocks[-1].first_token_only and not any(b.first_token_only for b in blocks[:-1])
    assert not any(b.first_token_only for b in model.backbone.text_blocks)
    frames = random_video(2, 3)
    pruned = features_and_gradients(model, lambda: model.encode_video(frames))
    blocks[-1].first_token_only = False
    assert_same_features_and_gradients(pruned, features_and_gradients(model, lambda: model.encode_video(frames)))


def test_class_token_shortcut_is_off_where_the_tower_reads_other_tokens():
    from cmadapter.blocks import flatten_blocks

    clip = build_clip(TINY)
    clip.visual.output_tokens = True  # the patch tokens are returned: the last block must compute them
    flatten_blocks(clip)
    assert not clip.visual.transformer.resblocks[-1].first_token_only


@pytest.mark.parametrize(
    "method, options",
    [("cross-modal", {"r": 4, "shared_dim": 8}), ("coop", {}), ("vl-prompt", {}), ("lora", {"r": 2}), ("full", {})],
)
def test_last_text_block_computing_the_pooled_token_alone_changes_nothing(tiny_weights, monkeypatch, method, options):
    """The text tower's last block keeps only each caption's end-of-text token: features and gradients as
    with every token (also under gradient checkpointing)."""
    import cmadapter.model
    from cmadapter.blocks import run_blocks

    # Some methods draw their initial tensors from the global generator: seeded, the test does not depend on which
    # tests ran before it on this worker (for one draw in twelve the float32 sums of vl-prompt's gradients
    # differed by 6e-6 beyond the tolerance, which is rounding, not a change the pruning makes).
    torch.manual_seed(0)
    model = build_model(pretrained=tiny_weights, method=method, **options)
    perturb(model.method, seed=5)
    tokens = model.tokenize(["a red square", "a blue circle moves to the left", "two shapes"])
    pruned = features_and_gradients(model, lambda: model.encode_text(tokens))
    model.clip.transformer.grad_checkpointing = True
    checkpointed = features_and_gradients(model, lambda: model.encode_text(tokens))
    model.clip.transformer.grad_checkpointing = False

    def every_token(transformer, x, attn_mask=None, rows=None):
        out = run_blocks(transformer, x, attn_mask)
        return out[torch.arange(out.shape[0]), rows].unsqueeze(1)

    monkeypatch.setattr(cmadapter.model, "run_blocks", every_token)
    reference = features_and_gradients(model, lambda: model.encode_text(tokens))
    assert_same_features_and_gradients(pruned, reference)
    assert_same_features_and_gradients(checkpointed, reference)
