"""The tiny CLIP pretraining: it learns, it is seeded, and its file loads as OpenAI weights do."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from cmadapter import build_model
from cmadapter.backbone import Architecture, build_clip
from cmadapter.demo.pretrain import (
    DEMO_ARCHITECTURE,
    PretrainConfig,
    encode_text,
    frames_to_tensor,
    pretrain,
    still_frames,
)
from cmadapter.demo.synthetic import SyntheticConfig, object_frames, object_phrase
from cmadapter.errors import CmadapterError
from cmadapter.video.preprocess import CLIP_MEAN, to_model_input

ARCH = Architecture(
    embed_dim=32,
    image_size=32,
    patch_size=16,
    vision_width=64,
    vision_layers=1,
    vision_heads=1,
    text_width=64,
    text_layers=1,
    text_heads=1,
    context_length=77,
    vocab_size=49408,
    activation="quick_gelu",
)
SYNTHETIC = SyntheticConfig(num_train=4, num_test=2, frame_size=32, colours=("red", "green", "blue"))
CONFIG = PretrainConfig(
    architecture=ARCH, steps=25, batch_size=32, lr=3e-3, warmup_steps=3, num_frames=128, eval_frames=32
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return pretrain(tmp_path_factory.mktemp("pretrain") / "tiny.pt", CONFIG, SYNTHETIC, progress=False)


def test_training_lowers_the_loss(trained):
    losses = trained.losses
    assert len(losses) == CONFIG.steps
    assert sum(losses[-5:]) / 5 < 0.8 * losses[0], losses
    assert 1 < trained.logit_scale <= 100


def test_file_is_a_plain_openai_layout_state_dict(trained):
    state = torch.load(trained.path, map_location="cpu", weights_only=True)
    expected = build_clip(ARCH).state_dict()
    assert state.keys() == expected.keys()
    assert "visual.transformer.resblocks.0.attn.in_proj_weight" in state
    assert all(state[k].shape == expected[k].shape for k in expected)
    record = json.loads(trained.path.with_name("tiny.pt.json").read_text())
    assert record["settings"]["pretrain"]["steps"] == CONFIG.steps


def test_loads_through_build_model_with_the_architecture_inferred(trained):
    model = build_model(pretrained=trained.path, method="cross-modal", r=4, shared_dim=8)
    assert model.backbone.architecture == ARCH
    assert model.logit_scale.item() == pytest.approx(trained.logit_scale, rel=1e-5)
    # The loaded backbone computes what the trained one did (adapters start as near-identity, so compare
    # the plain backbone).
    plain = build_model(pretrained=trained.path, method=None)
    reference = build_clip(ARCH)
    reference.load_state_dict(torch.load(trained.path, weights_only=True))
    frames = frames_to_tensor(torch.stack([torch.from_numpy(f) for f, _ in object_frames(SYNTHETIC, 3)]).numpy())
    tokens = plain.tokenize(["a red square", "a blue ring appears and then a green cross"])
    with torch.no_grad():
        torch.testing.assert_close(plain.encode_images(frames), reference.visual(frames), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(plain.encode_text(tokens), encode_text(reference, tokens), atol=1e-4, rtol=1e-4)


def test_same_seed_same_weights_and_different_seed_different(tmp_path):
    short = dataclasses.replace(CONFIG, steps=3)
    a = pretrain(tmp_path / "a.pt", short, SYNTHETIC, progress=False)
    b = pretrain(tmp_path / "b.pt", short, SYNTHETIC, progress=False)
    c = pretrain(tmp_path / "c.pt", dataclasses.replace(short, seed=1), SYNTHETIC, progress=False)
    wa, wb, wc = (torch.load(r.path, weights_only=True) for r in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.losses == b.losses
    assert not torch.equal(wa["visual.proj"], wc["visual.proj"])


def test_global_torch_rng_is_left_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    pretrain(tmp_path / "w.pt", dataclasses.replace(CONFIG, steps=1), SYNTHETIC, progress=False)
    torch.testing.assert_close(torch.rand(3), expected)


def test_existing_file_is_reused_only_for_the_same_settings(trained):
    again = pretrain(trained.path, CONFIG, SYNTHETIC, progress=False)
    assert again.reused and again.losses == []
    assert again.frame_accuracy == trained.frame_accuracy
    changed = dataclasses.replace(CONFIG, steps=2)
    with pytest.raises(CmadapterError, match="overwrite"):
        pretrain(trained.path, changed, SYNTHETIC, progress=False)
    other = pretrain(trained.path.with_name("other.pt"), changed, SYNTHETIC, progress=False)
    assert not other.reused and len(other.losses) == 2
    redone = pretrain(other.path, CONFIG, SYNTHETIC, overwrite=True, progress=False)
    assert not redone.reused and len(redone.losses) == CONFIG.steps


def test_a_foreign_file_is_never_overwritten(tmp_path):
    foreign = tmp_path / "ViT-B-32.pt"
    foreign.write_bytes(b"real weights")
    with pytest.raises(CmadapterError, match="exists"):
        pretrain(foreign, CONFIG, SYNTHETIC, progress=False)
    assert foreign.read_bytes() == b"real weights"


def test_image_size_must_match_the_frames(tmp_path):
    with pytest.raises(CmadapterError, match="32px"):
        pretrain(tmp_path / "x.pt", CONFIG, dataclasses.replace(SYNTHETIC, frame_size=64), progress=False)


def test_still_frame_captions_name_the_objects_shown():
    frames, captions, sets = still_frames(SYNTHETIC, 30, max_objects=2)
    assert frames.shape == (30, 3, 32, 32) and frames.dtype == torch.float32
    phrases = {o: object_phrase(o) for o in SYNTHETIC.objects}
    for caption, objects in zip(captions, sets):
        assert {o for o, p in phrases.items() if p in caption} == set(objects), caption
    assert len(set(captions)) > 10  # several wordings and object pairs, not one caption per object


def test_frames_are_clip_normalised():
    black = frames_to_tensor(torch.zeros(2, 4, 4, 3, dtype=torch.uint8).numpy())
    assert black.shape == (2, 3, 4, 4)
    expected = -torch.tensor(CLIP_MEAN) / torch.tensor([0.26862954, 0.26130258, 0.27577711])
    torch.testing.assert_close(black[0, :, 0, 0], expected)


def test_frames_are_preprocessed_as_the_retrieval_pipeline_does():
    frames = np.stack([f for f, _ in object_frames(SYNTHETIC, 3)])
    assert torch.equal(frames_to_tensor(frames), to_model_input(frames)[0])


@pytest.mark.parametrize(("steps", "warmup"), [(250, 25), (150, 15), (30, 7), (22, 15), (43, 23), (10, 0)])
def test_the_schedule_is_the_library_one_with_exactly_the_warmup_steps(steps, warmup):
    from cmadapter.demo.pretrain import _schedule
    from cmadapter.training.optim import build_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(
        optimizer, _schedule(dataclasses.replace(CONFIG, steps=steps, warmup_steps=warmup)), steps
    )
    factors = []
    for _ in range(steps):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [
        (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup)))
        for s in range(steps)
    ]
    assert factors == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_feature_norm_is_what_the_config_asks(trained):
    model = build_model(pretrained=trained.path, method=None)
    frames, _, _ = still_frames(SYNTHETIC, 64, offset=1000)
    with torch.no_grad():
        norm = model.encode_images(frames).norm(dim=-1).mean().item()
    assert norm == pytest.approx(CONFIG.feature_norm, rel=0.25)


def test_presets_fit_the_demo_backbone():
    assert PretrainConfig().architecture == DEMO_ARCHITECTURE
    assert DEMO_ARCHITECTURE.image_size == SyntheticConfig().frame_size
    assert DEMO_ARCHITECTURE.vision_width % 64 == 0 and DEMO_ARCHITECTURE.text_width % 64 == 0
    assert PretrainConfig.quick().steps < PretrainConfig().steps
