"""Helpers the tests share: a tiny CLIP architecture and its weights, random videos, and probes.

Plain functions and constants, imported by the tests that use them (``from helpers import TINY``);
fixtures live in conftest.py.
"""

from __future__ import annotations

import torch

from cmadapter.backbone import Architecture, build_clip

TINY = Architecture(
    embed_dim=32,
    image_size=32,
    patch_size=8,
    vision_width=64,
    vision_layers=2,
    vision_heads=1,
    text_width=64,
    text_layers=2,
    text_heads=1,
    context_length=77,
    vocab_size=49408,  # the real BPE vocabulary, so open_clip's tokenizer works unchanged
    activation="quick_gelu",
)


def tiny_state_dict(arch: Architecture = TINY, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = build_clip(arch)
    with torch.no_grad():  # a real CLIP's scale; a random one would leave logits nearly flat
        model.logit_scale.fill_(torch.log(torch.tensor(100.0)))
    return model.state_dict()


def random_video(batch: int = 2, frames: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 3, size, size, generator=generator)


def weight_batched_matmuls(model, run) -> tuple[int, list]:
    """Profile ``run()``; return (number of matmuls seen, batched matmuls that multiply by a layer's weight).

    A 3-D activation times a frozen weight makes autograd's backward a bmm against an expanded copy of the
    weight: the slow path our 2-D blocks avoid. Attention's own batched matmuls are fine and not reported.
    """
    from torch.profiler import ProfilerActivity, profile

    weight_shapes = set()
    for module in model.clip.modules():
        weight = module.weight if isinstance(module, torch.nn.Linear) else getattr(module, "in_proj_weight", None)
        if weight is not None:
            weight_shapes |= {tuple(weight.shape), tuple(weight.shape[::-1])}
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        run()
    events = prof.key_averages(group_by_input_shape=True)
    matmuls = sum(e.count for e in events if e.key in ("aten::mm", "aten::addmm"))
    offending = [
        e.input_shapes
        for e in events
        if e.key == "aten::bmm" and {tuple(s[-2:]) for s in e.input_shapes if len(s) >= 2} & weight_shapes
    ]
    return matmuls, offending


@torch.no_grad()
def perturb(method, seed: int = 7):
    """Move every trainable tensor away from its initial value (as training would); the same values on any
    device (drawn on the CPU)."""
    generator = torch.Generator().manual_seed(seed)
    for tensor in method.trainable_tensors().values():
        tensor.add_(0.05 * torch.randn(tensor.shape, generator=generator).to(tensor.device))


def assert_same_first_step(one_process, several, world_size: int) -> None:
    """The first step's loss and every gradient of a run over ``world_size`` processes equal one process's
    on the whole global batch (``grads.pt`` of tests/toy_training.py's ``grads`` mode)."""
    single = torch.load(one_process, weights_only=True)
    spread = torch.load(several, weights_only=True)
    assert single["world_size"] == 1 and spread["world_size"] == world_size
    assert abs(single["loss"] - spread["loss"]) < 1e-5
    assert single["grads"].keys() == spread["grads"].keys()
    assert any(g.abs().sum() > 0 for g in single["grads"].values())
    for key, grad in single["grads"].items():
        assert torch.allclose(grad, spread["grads"][key], rtol=0, atol=1e-5), key
