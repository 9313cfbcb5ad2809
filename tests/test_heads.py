import pytest
import torch
import torch.nn.functional as F

from cmadapter.heads import MeanPool, TextConditionedPool, create_head
from cmadapter.training.loss import symmetric_infonce


def naive_text_pool(text, video, mask, scale, temperature=5.0):
    """The paper's formula, written the slow obvious way."""
    out = torch.empty(text.shape[0], video.shape[0], dtype=torch.float64)
    for n in range(text.shape[0]):
        for m in range(video.shape[0]):
            frames = video[m][mask[m]].double()
            w = torch.softmax(frames @ text[n].double() / temperature, dim=0)
            u = (w[:, None] * frames).sum(0)
            out[n, m] = scale * F.cosine_similarity(text[n].double(), u, dim=0)
    return out


def test_text_pool_matches_the_formula():
    torch.manual_seed(0)
    text, video = torch.randn(5, 16), torch.randn(4, 6, 16)
    mask = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    got = TextConditionedPool(5.0)(text, video, mask, torch.tensor(100.0))
    assert torch.allclose(got.double(), naive_text_pool(text, video, mask, 100.0), atol=1e-4)


def test_text_pool_ignores_padded_frames_whatever_they_hold():
    torch.manual_seed(0)
    text, video = torch.randn(3, 8), torch.randn(2, 4, 8)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    head = TextConditionedPool()
    before = head(text, video, mask, torch.tensor(50.0))
    video[~mask] = torch.randn(int((~mask).sum()), 8) * 100
    assert torch.equal(head(text, video, mask, torch.tensor(50.0)), before)


def test_temperature_changes_the_pooling():
    torch.manual_seed(0)
    text, video, mask = torch.randn(2, 8), torch.randn(2, 4, 8), torch.ones(2, 4, dtype=torch.bool)
    a = TextConditionedPool(5.0)(text, video, mask, torch.tensor(1.0))
    b = TextConditionedPool(0.5)(text, video, mask, torch.tensor(1.0))
    assert not torch.allclose(a, b)


def test_mean_pool_matches_clip4clip_meanp():
    torch.manual_seed(0)
    text, video = torch.randn(3, 8), torch.randn(2, 4, 8)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    got = MeanPool()(text, video, mask, torch.tensor(100.0))
    expected = torch.stack([F.normalize(F.normalize(video[m][mask[m]], dim=-1).mean(0), dim=0) for m in range(2)])
    assert torch.allclose(got, 100 * F.normalize(text, dim=-1) @ expected.T, atol=1e-5)


def test_heads_run_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    text, video, mask = torch.randn(3, 8), torch.randn(2, 4, 8), torch.ones(2, 4, dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = TextConditionedPool()(text.bfloat16(), video.bfloat16(), mask, torch.tensor(100.0))
    assert got.dtype == torch.float32


def test_symmetric_infonce_is_the_mean_of_both_directions():
    torch.manual_seed(0)
    logits = torch.randn(4, 4)
    targets = torch.arange(4)
    expected = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    assert torch.allclose(symmetric_infonce(logits), expected)
    with pytest.raises(ValueError, match="square"):
        symmetric_infonce(torch.randn(3, 4))


def test_unknown_head_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown head 'max'"):
        create_head("max")


@pytest.mark.parametrize("head", [TextConditionedPool(5.0), MeanPool()])
def test_on_one_frame_each_head_is_the_plain_cosine(head):
    """An image is a one-frame clip: no temporal pooling is left, whatever the padding holds."""
    torch.manual_seed(0)
    text, images = torch.randn(6, 16), torch.randn(4, 16)
    video = torch.randn(4, 3, 16)  # padding slots full of noise
    video[:, 0] = images
    mask = torch.tensor([[True, False, False]] * 4)
    expected = 100.0 * F.normalize(text, dim=-1) @ F.normalize(images, dim=-1).T
    got = head(text, video, mask, torch.tensor(100.0))
    assert torch.allclose(got, expected, atol=1e-4)
    assert torch.allclose(head(text, images[:, None], mask[:, :1], torch.tensor(100.0)), expected, atol=1e-4)
