import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cmadapter import CmadapterError, build_model
from cmadapter.backbone import Architecture
from cmadapter.methods.adapter import pair_blocks
from cmadapter.training.loss import symmetric_infonce
from helpers import TINY, random_video, tiny_state_dict


@pytest.fixture
def model(tiny_weights):
    torch.manual_seed(1)
    return build_model(pretrained=tiny_weights, method="cross-modal", r=4, shared_dim=8)


def zero_up(method):
    with torch.no_grad():
        for name, tensor in method.trainable_tensors().items():
            if ".up." in name or name.startswith("shared."):
                tensor.zero_()


def outputs(model, tokens, frames, mask):
    with torch.no_grad():
        return model.encode_text(tokens), model.encode_video(frames, mask)


def test_zero_up_weights_leave_every_output_bitwise_unchanged(model):
    tokens = model.tokenize(["a red square moves left", "a blue circle appears"])
    frames, mask = random_video(), torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    zero_up(model.method)
    text, video = outputs(model, tokens, frames, mask)
    model.set_adapter(None)
    plain_text, plain_video = outputs(model, tokens, frames, mask)
    assert torch.equal(text, plain_text)
    assert torch.equal(video, plain_video)


def test_trained_adapters_do_change_outputs(model):
    # The counterpart of the test above: it could pass trivially if adapters were never called.
    tokens = model.tokenize(["a red square moves left"])
    frames = random_video(1)
    text, video = outputs(model, tokens, frames, None)
    model.set_adapter(None)
    plain_text, plain_video = outputs(model, tokens, frames, None)
    assert not torch.equal(text, plain_text) and not torch.equal(video, plain_video)


def test_plain_backbone_matches_open_clips_own_forward(model, tiny_weights):
    from cmadapter.backbone import build_clip

    reference = build_clip(TINY).eval()  # untouched open_clip blocks
    reference.load_state_dict(torch.load(tiny_weights, weights_only=True))
    model.set_adapter(None)
    frames = random_video(1, 2)
    tokens77 = model.tokenizer._tokenizer(["a dog runs"], context_length=77)
    with torch.no_grad():
        assert torch.allclose(model.encode_video(frames)[0], reference.encode_image(frames[0]), atol=1e-5)
        assert torch.allclose(model.encode_text(tokens77), reference.encode_text(tokens77), atol=1e-5)


def test_shared_up_is_one_tensor_trained_by_both_modalities(model):
    method = model.method
    shared = method.shared[0]["attn"].weight
    assert method.vision[0]["attn"].shared_up.weight is shared
    assert method.text[0]["attn"].shared_up.weight is shared
    tokens = model.tokenize(["a red square moves left"])
    frames = random_video(1)

    model.encode_text(tokens).pow(2).sum().backward()
    text_grad = shared.grad.clone()
    assert text_grad.abs().sum() > 0
    assert method.vision[0]["attn"].down.weight.grad is None  # text loss never reaches vision adapters
    model.zero_grad(set_to_none=True)

    model.encode_video(frames).pow(2).sum().backward()
    assert shared.grad.abs().sum() > 0
    assert method.text[0]["attn"].down.weight.grad is None
    assert not torch.allclose(shared.grad, text_grad)


def test_shared_channels_are_the_last_ds_of_up(model):
    adapter = model.method.vision[1]["mlp"]
    weight, bias = adapter.up_weight_and_bias()
    assert weight.shape == (TINY.vision_width, 4)
    assert torch.equal(weight[-8:], adapter.shared_up.weight)
    assert torch.equal(bias[-8:], adapter.shared_up.bias)


def test_init_trunc_normal_std_001_and_zero_biases(tiny_weights):
    torch.manual_seed(0)
    big = build_model(pretrained=tiny_weights, r=64, shared_dim=32)
    tensors = big.method.trainable_tensors()
    weights = torch.cat([t.flatten() for n, t in tensors.items() if n.endswith("weight")])
    assert abs(weights.std().item() - 0.01) < 0.001
    assert all(torch.count_nonzero(t) == 0 for n, t in tensors.items() if n.endswith("bias"))


def test_no_frozen_tensor_gets_a_gradient_or_changes(model):
    frozen = {k: v.clone() for k, v in model.clip.state_dict().items() if ".ls_" not in k}
    trainable = model.trainable_parameters()
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-2, weight_decay=0.2)
    tokens = model.tokenize(["a red square", "a blue circle"])
    frames, mask = random_video(), torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    for _ in range(2):
        loss = symmetric_infonce(model(tokens, frames, mask))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, parameter in model.clip.named_parameters():
        if not any(parameter is p for p in trainable.values()):
            assert parameter.grad is None, name
            assert not parameter.requires_grad, name
    for key, value in model.clip.state_dict().items():
        if key in frozen:
            assert torch.equal(value, frozen[key]), key


def test_parameter_breakdown_counts_shared_once(model):
    counts = model.method.parameter_breakdown()
    w = TINY.vision_width
    per_block = 2  # attn + mlp
    vision = per_block * TINY.vision_layers * ((w * 4 + 4) + ((w - 8) * 4 + (w - 8)))
    shared = per_block * TINY.vision_layers * (8 * 4 + 8)
    assert counts["vision"] == vision and counts["shared"] == shared
    assert sum(counts.values()) == model.num_parameters()["trainable_params"]
    assert sum(p.numel() for p in model.method.parameters()) == sum(counts.values())


def test_uni_modal_shares_nothing(tiny_weights):
    model = build_model(pretrained=tiny_weights, method="uni-modal", r=4)
    assert model.method.parameter_breakdown()["shared"] == 0
    assert all(a.shared_up is None for block in model.method.vision for a in block.values())


def test_shared_dim_equal_to_text_width_leaves_text_up_fully_shared(tmp_path):
    arch = Architecture(**{**TINY.to_dict(), "vision_width": 128, "vision_heads": 2})
    torch.save(tiny_state_dict(arch), tmp_path / "w.pt")
    model = build_model(pretrained=tmp_path / "w.pt", r=4, shared_dim=64)
    text_adapter = model.method.text[0]["attn"]
    assert text_adapter.up is None
    weight, _ = text_adapter.up_weight_and_bias()
    assert weight is text_adapter.shared_up.weight
    assert model.method.vision[0]["attn"].up.out_features == 64


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"r": 0}, "positive"),
        ({"r": -3}, "positive"),
        ({"shared_dim": 65}, "between 0 and"),
        ({"shared_dim": -1}, "between 0 and"),
        ({"bottleneck": 3}, "no option 'bottleneck'"),
        ({"r": "8"}, "must be int"),
    ],
)
def test_bad_options_are_clear_errors(tiny_weights, options, message):
    with pytest.raises(CmadapterError, match=message):
        build_model(pretrained=tiny_weights, **options)


def test_unequal_towers_pair_blocks_by_relative_depth(tmp_path):
    arch = Architecture(**{**TINY.to_dict(), "vision_layers": 4, "text_layers": 2})
    torch.save(tiny_state_dict(arch), tmp_path / "w.pt")
    model = build_model(pretrained=tmp_path / "w.pt", r=4, shared_dim=8)
    method = model.method
    assert len(method.shared) == 2
    assert method.text[0]["attn"].shared_up is method.vision[1]["attn"].shared_up
    assert method.text[1]["mlp"].shared_up is method.vision[3]["mlp"].shared_up
    assert method.vision[0]["attn"].shared_up is None and method.vision[0]["attn"].up.out_features == 64
    assert pair_blocks(24, 12)[:3] == [(1, 0), (3, 1), (5, 2)]


@given(st.integers(1, 48), st.integers(1, 48))
def test_pairing_is_one_to_one_monotonic_and_ends_together(vision, text):
    pairs = pair_blocks(vision, text)
    assert len(pairs) == min(vision, text)
    v, t = zip(*pairs)
    assert list(v) == sorted(set(v)) and list(t) == sorted(set(t))
    assert pairs[-1] == (vision - 1, text - 1)
    assert all(0 <= i < vision for i in v) and all(0 <= j < text for j in t)
