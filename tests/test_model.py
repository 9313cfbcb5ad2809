import pytest
import torch

from cmadapter import CheckpointError, CmadapterError, build_model
from helpers import random_video


@pytest.fixture
def model(tiny_weights):
    torch.manual_seed(3)
    return build_model(pretrained=tiny_weights, r=4, shared_dim=8)


def test_api_shapes(model):
    tokens = model.tokenize(["a man plays guitar", "a cat"])
    assert tokens.shape == (2, 32)
    text = model.encode_text(tokens)
    video = model.encode_video(random_video(3, 4), torch.ones(3, 4, dtype=torch.bool))
    assert text.shape == (2, 32) and video.shape == (3, 4, 32)
    assert model.similarity(text, video).shape == (2, 3)


def test_context_32_gives_the_same_feature_as_77(model):
    captions = ["a red square moves left, then a blue circle appears", "hello"]
    short = model.tokenize(captions)
    long = model.tokenizer._tokenizer(captions, context_length=77)
    assert torch.equal(long[:, :32], short) and not long[:, 32:].any()
    with torch.no_grad():
        assert torch.allclose(model.encode_text(short), model.encode_text(long), rtol=0, atol=1e-6)


def test_long_captions_are_cut_and_end_with_end_of_text(model):
    tokens = model.tokenize(["word " * 100])
    assert tokens.shape == (1, 32) and tokens[0, -1] == model.tokenizer._tokenizer.eot_token_id


def test_changing_a_padded_frame_changes_nothing(model):
    frames, mask = random_video(2, 4), torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    tokens = model.tokenize(["a", "b"])
    with torch.no_grad():
        before = model(tokens, frames, mask)
        frames[0, 3] = 7.0
        frames[1, 3] = torch.randn(3, 32, 32)
        assert torch.equal(model(tokens, frames, mask), before)
        frames[0, 1] += 1.0  # a valid frame does matter
        assert not torch.equal(model(tokens, frames, mask), before)


@pytest.mark.parametrize(
    ("frames", "mask", "message"),
    [
        (torch.zeros(2, 3, 32, 32), None, r"\[B, T, 3, H, W\]"),
        (torch.zeros(2, 3, 1, 32, 32), None, r"\[B, T, 3, H, W\]"),
        (torch.zeros(2, 3, 3, 64, 64), None, "64x64 but the backbone takes 32x32"),
        (torch.zeros(2, 3, 3, 32, 32, dtype=torch.uint8), None, "normalised floats"),
        (torch.zeros(2, 3, 3, 32, 32), torch.ones(2, 4, dtype=torch.bool), "frame_mask must be"),
        (torch.zeros(2, 3, 3, 32, 32), torch.tensor([[1, 0, 0], [0, 0, 0]]), r"rows \[1\]"),
    ],
)
def test_bad_frames_are_clear_errors(model, frames, mask, message):
    with pytest.raises(CmadapterError, match=message):
        model.encode_video(frames, mask)


def test_save_load_gives_identical_logits(model, tiny_weights, tmp_path):
    with torch.no_grad():
        for tensor in model.method.trainable_tensors().values():
            tensor.add_(torch.randn_like(tensor) * 0.05)  # not the init: something worth saving
    tokens, frames = model.tokenize(["one", "two"]), random_video(2)
    with torch.no_grad():
        expected = model(tokens, frames, torch.ones(2, 3, dtype=torch.bool))
    path = model.save_adapter(tmp_path / "adapter.safetensors")
    restored = build_model(pretrained=tiny_weights, adapter=path)
    assert restored.method.describe() == model.method.describe()
    assert restored.head_spec() == model.head_spec()
    with torch.no_grad():
        assert torch.equal(restored(tokens, frames, torch.ones(2, 3, dtype=torch.bool)), expected)


def test_checkpoint_holds_only_trainable_tensors(model, tmp_path):
    from safetensors import safe_open

    path = model.save_adapter(tmp_path / "a.safetensors")
    with safe_open(str(path), "pt") as handle:
        keys = set(handle.keys())
    assert keys == set(model.method.trainable_tensors())
    assert sum(model.method.trainable_tensors()[k].numel() for k in keys) == model.num_parameters()["trainable_params"]


def test_several_adapters_share_one_backbone_and_switch(model, tiny_weights, tmp_path):
    tokens, frames = model.tokenize(["one", "two"]), random_video(2)
    first = model.save_adapter(tmp_path / "first.safetensors")
    with torch.no_grad():
        expected_first = model(tokens, frames, None)
    other = build_model(pretrained=tiny_weights, method="uni-modal", r=2, head="meanP")
    with torch.no_grad():
        for tensor in other.method.trainable_tensors().values():
            tensor.add_(0.1)
        expected_second = other(tokens, frames, None)
    second = other.save_adapter(tmp_path / "second.safetensors")

    shared = build_model(pretrained=tiny_weights, method=None)
    clip = shared.clip
    shared.load_adapter(first, name="first")
    shared.load_adapter(second, name="second")
    assert shared.active_adapter == "second" and shared.head.name == "meanP"
    with torch.no_grad():
        assert torch.equal(shared(tokens, frames, None), expected_second)
        shared.set_adapter("first")
        assert shared.head.name == "text-pool"
        assert torch.equal(shared(tokens, frames, None), expected_first)
    assert shared.clip is clip
    assert set(shared.trainable_parameters()) == set(model.method.trainable_tensors())
    assert all(not t.requires_grad for t in shared.adapters["second"].trainable_tensors().values())

    # The plain backbone scores with its own head again, not with the last adapter's.
    shared.set_adapter("second")
    shared.set_adapter(None)
    assert shared.head.name == "text-pool"
    shared.set_adapter("second")
    assert shared.head.name == "meanP"
    shared.set_adapter("first")

    # Removing the active adapter leaves the plain backbone computing; the other adapter is untouched.
    plain = build_model(pretrained=tiny_weights, method=None)
    shared.remove_adapter("first")
    assert shared.active_adapter is None and list(shared.adapters) == ["second"]
    with torch.no_grad():
        assert torch.equal(shared.encode_video(frames), plain.encode_video(frames))
    with pytest.raises(CmadapterError, match="no adapter named 'first'; loaded: second"):
        shared.remove_adapter("first")
    shared.set_adapter("second")
    with torch.no_grad():
        assert torch.equal(shared(tokens, frames, None), expected_second)


def test_adapter_on_another_architecture_fails_clearly(model, tmp_path):
    path = model.save_adapter(tmp_path / "a.safetensors")
    with pytest.raises(CheckpointError, match="different backbone.*vision_width: 64 vs 768"):
        build_model("ViT-B-32-quickgelu", adapter=path)


def test_method_mismatch_fails_clearly(model, tiny_weights, tmp_path):
    path = model.save_adapter(tmp_path / "a.safetensors")
    with pytest.raises(CmadapterError, match="holds a 'cross-modal' adapter, not 'uni-modal'"):
        build_model(pretrained=tiny_weights, method="uni-modal", adapter=path)
    with pytest.raises(CmadapterError, match="options come from"):
        build_model(pretrained=tiny_weights, adapter=path, r=2)


def test_tampered_checkpoint_tensors_fail_clearly(model, tmp_path):
    from cmadapter.checkpoint import load_adapter_checkpoint

    checkpoint = load_adapter_checkpoint(model.save_adapter(tmp_path / "a.safetensors"))
    del checkpoint.tensors["vision.0.attn.down.weight"]
    with pytest.raises(CheckpointError, match="1 tensors missing"):
        model.load_adapter(checkpoint, name="b")
    checkpoint = load_adapter_checkpoint(tmp_path / "a.safetensors")
    checkpoint.tensors["text.1.mlp.up.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError, match="text.1.mlp.up.weight has shape"):
        model.load_adapter(checkpoint, name="c")


def test_files_that_are_not_adapter_checkpoints(model, tmp_path, tiny_weights):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointError, match="not a cmadapter adapter checkpoint"):
        model.load_adapter(junk)
    with pytest.raises(CheckpointError, match="not a cmadapter adapter checkpoint"):
        model.load_adapter(tiny_weights)
    with pytest.raises(CheckpointError, match="not found"):
        model.load_adapter(tmp_path / "nope.safetensors")
    adapter = model.save_adapter(tmp_path / "a.safetensors")
    with pytest.raises(CheckpointError, match="adapter checkpoint, not backbone weights"):
        build_model(pretrained=adapter)


def test_plain_backbone_has_nothing_to_train(tiny_weights):
    model = build_model(pretrained=tiny_weights, method=None)
    assert model.trainable_parameters() == {}
    assert model.num_parameters()["trainable_params"] == 0
    with pytest.raises(CmadapterError, match="no adapter to save"):
        model.save_adapter("x.safetensors")
