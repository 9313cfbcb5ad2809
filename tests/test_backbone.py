import pytest
import torch
from safetensors.torch import save_file

from cmadapter import CheckpointError, CmadapterError, load_backbone
from cmadapter.backbone import Architecture, architecture_of
from cmadapter.blocks import openai_key
from helpers import TINY, tiny_state_dict


def test_architecture_is_read_off_a_plain_state_dict(tiny_weights):
    backbone = load_backbone(pretrained=tiny_weights)
    assert backbone.architecture == TINY
    assert architecture_of(backbone.model) == TINY


def test_every_backbone_tensor_is_frozen_logit_scale_included(tiny_weights):
    model = load_backbone(pretrained=tiny_weights).model
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.logit_scale.requires_grad


def test_weights_are_loaded_not_reinitialised(tiny_weights):
    expected = torch.load(tiny_weights, weights_only=True)
    model = load_backbone(pretrained=tiny_weights).model
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[openai_key(key)]), key


def test_fp16_openai_file_becomes_fp32_masters(tmp_path):
    state = {k: v.half() if v.is_floating_point() else v for k, v in tiny_state_dict().items()}
    path = tmp_path / "half.pt"
    torch.save(state, path)
    model = load_backbone(pretrained=path).model
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
def test_torchscript_archive_loads(tmp_path):
    torch.manual_seed(0)
    from cmadapter.backbone import build_clip

    model = build_clip(TINY).eval()
    traced = torch.jit.trace_module(model, {"encode_image": (torch.randn(1, 3, 32, 32),)})
    path = tmp_path / "tiny.jit.pt"
    torch.jit.save(traced, str(path))
    backbone = load_backbone(pretrained=path)
    assert backbone.architecture == TINY
    assert torch.equal(backbone.model.visual.proj, model.visual.proj)


def test_safetensors_and_prefixed_state_dicts_load(tmp_path):
    state = tiny_state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    assert load_backbone(pretrained=tmp_path / "w.safetensors").architecture == TINY
    torch.save({"state_dict": {"module.clip." + k: v for k, v in state.items()}}, tmp_path / "wrapped.pt")
    assert load_backbone(pretrained=tmp_path / "wrapped.pt").architecture == TINY


def test_a_larger_architecture_is_inferred_too(tmp_path):
    arch = Architecture(
        **{
            **TINY.to_dict(),
            "vision_width": 128,
            "vision_heads": 2,
            "vision_layers": 3,
            "text_layers": 4,
            "patch_size": 16,
            "image_size": 64,
            "embed_dim": 48,
        }
    )
    torch.save(tiny_state_dict(arch), tmp_path / "w.pt")
    assert load_backbone(pretrained=tmp_path / "w.pt").architecture == arch


def test_file_that_is_not_a_checkpoint_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_text("hello, I am not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_backbone(pretrained=junk)
    empty = tmp_path / "empty.pt"
    empty.touch()
    with pytest.raises(CheckpointError, match="empty"):
        load_backbone(pretrained=empty)
    with pytest.raises(CheckpointError, match="not found"):
        load_backbone(pretrained=tmp_path / "missing.pt")
    torch.save({"foo": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no CLIP vision transformer"):
        load_backbone(pretrained=tmp_path / "other.pt")


def test_truncated_state_dict_names_missing_tensors(tmp_path):
    state = tiny_state_dict()
    del state["ln_final.weight"]
    torch.save(state, tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="ln_final.weight"):
        load_backbone(pretrained=tmp_path / "cut.pt")


def test_unknown_backbone_name_is_a_clear_error():
    with pytest.raises(CmadapterError, match="unknown backbone 'ViT-Z-99'"):
        load_backbone("ViT-Z-99")


def test_non_vit_and_custom_text_backbones_are_refused():
    with pytest.raises(CmadapterError, match="only ViTs"):
        load_backbone("RN50", device="meta")


def test_named_backbone_must_agree_with_the_file(tiny_weights):
    with pytest.raises(CheckpointError, match="does not hold a ViT-B-32-quickgelu"):
        load_backbone("ViT-B-32-quickgelu", pretrained=tiny_weights)


@pytest.mark.parametrize("name", ["ViT-B-32-quickgelu", "ViT-B-16-quickgelu", "ViT-L-14"])
def test_named_architectures(name):
    arch = load_backbone(name, device="meta").architecture
    assert arch.text_width in (512, 768) and arch.image_size == 224
    assert arch.activation == ("quick_gelu" if "quickgelu" in name else "gelu")
