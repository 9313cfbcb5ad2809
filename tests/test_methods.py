"""Every adaptation method behind the one Method interface, on tiny backbones; then method-specific checks.

Expected names and counts are written out from each method's definition here, not read from its code.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Callable

import pytest
import torch

from cmadapter import CmadapterError, build_model
from cmadapter.backbone import build_clip
from cmadapter.config import OptimConfig
from cmadapter.methods import METHODS, create_method
from cmadapter.training.loss import symmetric_infonce
from cmadapter.training.optim import build_optimizer
from helpers import TINY, perturb, random_video, weight_batched_matmuls

W = TINY.vision_width  # = TINY.text_width = 64
assert TINY.text_width == W and TINY.vision_layers == TINY.text_layers == 2
TOWERS = ("vision", "text")
BLOCKS = range(TINY.vision_layers)

# The input embeddings CLIP4Clip never trains.
EMBEDDINGS = {
    "token_embedding.weight",
    "positional_embedding",
    "visual.conv1.weight",
    "visual.class_embedding",
    "visual.positional_embedding",
    "visual.ln_pre.weight",
    "visual.ln_pre.bias",
}
HEADS = {"visual.ln_post.weight", "visual.ln_post.bias", "visual.proj", "ln_final.weight", "ln_final.bias"}
HEADS |= {"text_projection", "logit_scale"}


def clip_names() -> dict[str, int]:
    """OpenAI-layout tensor names of the tiny CLIP and their sizes."""
    return {name: tensor.numel() for name, tensor in build_clip(TINY).state_dict().items() if name != "attn_mask"}


def in_block(name: str, i: int) -> bool:
    return re.match(rf"(visual\.)?transformer\.resblocks\.{i}\.", name) is not None


@dataclasses.dataclass
class Spec:
    name: str
    options: dict
    names: Callable[[], set[str]]  # the trainable tensor names
    count: int  # their parameter count
    towers: tuple[str, ...]  # the towers whose outputs the method changes
    exact_start: bool  # starts from the backbone's exact outputs (zero- or identity-initialised)


def adapter_names(parts):
    parts = list(parts)
    return {f"{t}.{i}.{p}" for t in TOWERS for i in BLOCKS for p in parts}


def lora_names():
    return adapter_names(f"{target}.lora_{m}.weight" for target in ("in_proj", "out_proj") for m in "AB")


SPECS = [
    Spec(
        "cross-modal",
        {"r": 4, "shared_dim": 8},
        lambda: (
            adapter_names(
                f"{p}.{part}.{k}" for p in ("attn", "mlp") for part in ("down", "up") for k in ("weight", "bias")
            )
            | {f"shared.{i}.{p}.{k}" for i in BLOCKS for p in ("attn", "mlp") for k in ("weight", "bias")}
        ),
        # per adapter: Down 64*4+4, unique Up 4*56+56; per block pair and position: shared Up 4*8+8
        8 * (260 + 280) + 4 * 40,
        TOWERS,
        False,
    ),
    Spec(
        "uni-modal",
        {"r": 4},
        lambda: adapter_names(
            f"{p}.{part}.{k}" for p in ("attn", "mlp") for part in ("down", "up") for k in ("weight", "bias")
        ),
        8 * (260 + 320),
        TOWERS,
        False,
    ),
    Spec(
        "adapter-attn",
        {"r": 4},
        lambda: adapter_names(f"attn.{part}.{k}" for part in ("down", "up") for k in ("weight", "bias")),
        4 * (64 * 4 + 4 + 4 * 64 + 64),
        TOWERS,
        False,
    ),
    Spec(
        "adaptformer",
        {"r": 4},
        lambda: adapter_names(f"{part}.{k}" for part in ("down", "up") for k in ("weight", "bias")),
        4 * (64 * 4 + 4 + 4 * 64 + 64),
        TOWERS,
        True,
    ),
    # LoRA on the packed in_proj (A: r x 64, B: 192 x r) and out_proj (A: r x 64, B: 64 x r): 6 * 64 * r a block.
    Spec("lora", {"r": 2}, lora_names, 4 * 6 * 64 * 2, TOWERS, True),
    Spec("coop", {"tokens": 3}, lambda: {"text.0.prompt"}, 3 * W, ("text",), False),
    Spec("vpt", {"tokens": 2}, lambda: {f"vision.{i}.prompt" for i in BLOCKS}, 2 * 2 * W, ("vision",), False),
    Spec("vpt", {"tokens": 2, "deep": False}, lambda: {"vision.0.prompt"}, 2 * W, ("vision",), False),
    Spec(
        "vl-prompt",
        {"text_tokens": 2, "vision_tokens": 3},
        lambda: {f"{t}.{i}.prompt" for t in TOWERS for i in BLOCKS},
        2 * (2 * W + 3 * W),
        TOWERS,
        False,
    ),
    # MaPLe: text prompts [n, 64] in the first J blocks, each with a coupling Linear(64 -> 64) to the vision tower.
    Spec(
        "maple",
        {"tokens": 2, "depth": 2},
        lambda: (
            {f"text.{i}.prompt" for i in BLOCKS} | {f"coupling.{i}.{k}" for i in BLOCKS for k in ("weight", "bias")}
        ),
        2 * (2 * W + W * W + W),
        TOWERS,
        False,
    ),
    Spec(
        "maple",
        {"tokens": 3, "depth": 1, "init": None},
        lambda: {"text.0.prompt", "coupling.0.weight", "coupling.0.bias"},
        3 * W + W * W + W,
        TOWERS,
        False,
    ),
    Spec(
        "partial",
        {"blocks": 1},
        lambda: {n for n in clip_names() if in_block(n, 1)} | HEADS,
        sum(s for n, s in clip_names().items() if in_block(n, 1) or n in HEADS),
        TOWERS,
        True,
    ),
    Spec("projection", {}, lambda: {"visual.proj", "text_projection"}, 64 * 32 + 64 * 32, TOWERS, True),
    Spec(
        "full",
        {},
        lambda: set(clip_names()) - EMBEDDINGS,
        sum(s for n, s in clip_names().items() if n not in EMBEDDINGS),
        TOWERS,
        True,
    ),
    Spec("full", {"embeddings": True}, lambda: set(clip_names()), sum(clip_names().values()), TOWERS, True),
]
IDS = [f"{s.name}-{'-'.join(f'{k}{v}' for k, v in s.options.items())}".rstrip("-") for s in SPECS]


def test_every_registered_method_is_tested():
    assert {s.name for s in SPECS} == set(METHODS)


@pytest.fixture(params=SPECS, ids=IDS)
def spec(request) -> Spec:
    return request.param


def make_model(weights, spec: Spec, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(pretrained=weights, method=spec.name, **spec.options)


@functools.cache
def captions(context_length: int = 32) -> torch.Tensor:
    from cmadapter.tokenizer import Tokenizer

    return Tokenizer(None, context_length)(["a red square moves left", "a blue circle appears slowly"])


def batch():
    tokens = captions()
    frames = random_video(2, 3)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    return tokens, frames, mask


@torch.no_grad()
def outputs(model):
    tokens, frames, mask = batch()
    return {"text": model.encode_text(tokens), "vision": model.encode_video(frames, mask)}


# ---- the suite every method passes -----------------------------------------------------------------------


def test_only_the_intended_tensors_are_trainable(tiny_weights, spec):
    model = make_model(tiny_weights, spec)
    tensors = model.method.trainable_tensors()
    assert set(tensors) == spec.names()
    assert sum(t.numel() for t in tensors.values()) == spec.count == model.num_parameters()["trainable_params"]
    assert len({id(t) for t in tensors.values()}) == len(tensors)  # each tensor once
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(t) for t in tensors.values()}
    assert sum(model.method.parameter_breakdown().values()) == spec.count


def test_param_groups_cover_every_trainable_tensor_once(tiny_weights, spec):
    method = make_model(tiny_weights, spec).method
    groups = method.param_groups(lr=1e-3, weight_decay=0.2)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(t) for t in method.trainable_tensors().values())
    assert all(g["weight_decay"] in (0.0, 0.2) and g["lr"] > 0 for g in groups)


def test_an_optimizer_step_changes_the_trainable_tensors_and_nothing_else(tiny_weights, spec):
    model = make_model(tiny_weights, spec)
    model.train()
    trainable = {id(t) for t in model.method.trainable_tensors().values()}
    before = {name: t.detach().clone() for name, t in model.state_dict(keep_vars=True).items()}
    ids = {name: id(t) for name, t in model.state_dict(keep_vars=True).items()}
    optimizer = build_optimizer(model.method, OptimConfig(lr=1e-2, weight_decay=0.2))
    assert optimizer.defaults["fused"]  # the one-kernel AdamW, for every method's tensors
    tokens, frames, mask = batch()
    # Two steps: zero-initialised Up/B matrices pass no gradient to Down/A until they have moved once.
    for _ in range(2):
        optimizer.zero_grad()
        symmetric_infonce(model(tokens, frames, mask)).backward()
        optimizer.step()
    after = model.state_dict(keep_vars=True)
    changed = {name for name in before if not torch.equal(before[name], after[name].detach())}
    frozen_changed = {name for name in changed if ids[name] not in trainable}
    assert not frozen_changed
    trained = {name for name in before if ids[name] in trainable}
    assert trained and trained <= changed


def test_save_and_load_give_identical_logits(tiny_weights, spec, tmp_path):
    model = make_model(tiny_weights, spec)
    perturb(model.method)
    model.save_adapter(tmp_path / "adapter.safetensors")
    torch.manual_seed(123)  # a different initialisation: only the file can make the logits equal
    loaded = build_model(pretrained=tiny_weights, adapter=tmp_path / "adapter.safetensors")
    assert loaded.method.name == spec.name
    assert dataclasses.asdict(loaded.method.options) == dataclasses.asdict(model.method.options)
    tokens, frames, mask = batch()
    with torch.no_grad():  # a loader that ignored the file would give the plain or a fresh model: not equal
        assert torch.equal(loaded(tokens, frames, mask), model(tokens, frames, mask))


def test_start_from_the_backbone_exactly_or_differ_from_it(tiny_weights, spec):
    """Zero-/identity-initialised methods start at the backbone's exact outputs; prompts do not (by design)."""
    model = make_model(tiny_weights, spec)
    adapted = outputs(model)
    model.set_adapter(None)
    plain = outputs(model)
    for tower in TOWERS:
        same = torch.equal(adapted[tower], plain[tower])
        assert same == (spec.exact_start or tower not in spec.towers), tower


def test_trained_tensors_do_change_the_outputs(tiny_weights, spec):
    # The counterpart of the test above: it could pass trivially if a method were never called.
    model = make_model(tiny_weights, spec)
    perturb(model.method)
    adapted = outputs(model)
    plain = outputs(build_model(pretrained=tiny_weights, method=None))
    for tower in TOWERS:
        assert torch.equal(adapted[tower], plain[tower]) == (tower not in spec.towers), tower


def module_types(model):
    return [(name, type(module)) for name, module in model.clip.named_modules()]


def test_detach_restores_the_plain_backbone(tiny_weights, spec):
    model = build_model(pretrained=tiny_weights, method=None)
    plain, structure = outputs(model), module_types(model)
    torch.manual_seed(0)
    model.add_adapter("a", create_method(spec.name, model.backbone, spec.options))
    perturb(model.method)
    assert module_types(model) != structure or METHODS[spec.name].modifies_backbone
    model.set_adapter(None)
    assert module_types(model) == structure
    assert not any(p.requires_grad for p in model.parameters())
    if not METHODS[spec.name].modifies_backbone:  # the others keep their trained values in the backbone
        restored = outputs(model)
        assert all(torch.equal(restored[t], plain[t]) for t in TOWERS)


NON_MODIFYING = [(s, i) for s, i in zip(SPECS, IDS) if not METHODS[s.name].modifies_backbone]


@pytest.mark.parametrize("spec", [s for s, _ in NON_MODIFYING], ids=[i for _, i in NON_MODIFYING])
def test_attaching_twice_is_refused_and_detach_then_attach_gives_the_same_model(tiny_weights, spec):
    model = build_model(pretrained=tiny_weights, method=None)
    torch.manual_seed(0)
    model.add_adapter("a", create_method(spec.name, model.backbone, spec.options))
    perturb(model.method)
    adapted, structure = outputs(model), module_types(model)
    with pytest.raises(RuntimeError, match="already attached"):
        model.method.attach(model.backbone)
    model.method.detach(model.backbone)
    model.method.attach(model.backbone)
    assert module_types(model) == structure
    again = outputs(model)
    assert all(torch.equal(again[t], adapted[t]) for t in TOWERS)


@pytest.mark.parametrize("spec", [s for s, _ in NON_MODIFYING], ids=[i for _, i in NON_MODIFYING])
def test_switching_adapters_on_one_backbone_gives_each_its_own_outputs(tiny_weights, spec):
    # Two adapters of this method (the hard case: LoRA wraps the same Linear layers twice) and one of another,
    # each computed alone on its own backbone, then loaded onto one backbone (each while the previous is active).
    other = SPECS[0] if spec.name != SPECS[0].name else SPECS[1]
    checkpoints, expected = {}, {}
    for key, (s, seed) in {"a": (spec, 1), "b": (spec, 2), "c": (other, 3)}.items():
        alone = make_model(tiny_weights, s, seed)
        perturb(alone.method, seed)
        checkpoints[key], expected[key] = alone.adapter_checkpoint(), outputs(alone)
    tower = spec.towers[0]
    assert not torch.equal(expected["a"][tower], expected["b"][tower])
    shared = build_model(pretrained=tiny_weights, method=None)
    for key, checkpoint in checkpoints.items():
        shared.load_adapter(checkpoint, name=key)
    for key in ("c", "a", "b", "c", "a"):
        shared.set_adapter(key)
        got = outputs(shared)
        assert all(torch.equal(got[t], expected[key][t]) for t in TOWERS), key


@pytest.mark.parametrize(
    ("method", "options"),
    [("adaptformer", {}), ("lora", {}), ("vl-prompt", {}), ("maple", {"depth": 2}), ("adapter-attn", {})],
)
def test_added_layers_keep_the_2d_matmuls(tiny_weights, method, options):
    """As test_blocks guards for the backbone: no batched matmul (slow backward against frozen weights)."""
    model = build_model(pretrained=tiny_weights, method=method, **options)
    tokens, frames, mask = batch()

    def run():
        (model.encode_video(frames, mask).pow(2).sum() + model.encode_text(tokens).pow(2).sum()).backward()

    matmuls, offending = weight_batched_matmuls(model, run)
    assert matmuls > 0 and not offending, offending


# ---- `cmadapter info` at each method's paper setting (ViT-B/32) -------------------------------------------

B32_BLOCK = {  # parameters of one ViT-B/32 block: attention (in_proj, out_proj), two LayerNorms, MLP
    "vision": 768 * 2304 + 2304 + 768 * 768 + 768 + 4 * 768 + 768 * 3072 + 3072 + 3072 * 768 + 768,
    "text": 512 * 1536 + 1536 + 512 * 512 + 512 + 4 * 512 + 512 * 2048 + 2048 + 2048 * 512 + 512,
}
B32_HEADS = 768 * 512 + 2 * 768 + 512 * 512 + 2 * 512 + 1  # visual.proj, ln_post, text_projection, ln_final, scale
INFO_COUNTS = [
    ("adaptformer", {}, 12 * (2 * 64 * 768 + 64 + 768) + 12 * (2 * 64 * 512 + 64 + 512)),  # 1,982,976
    ("lora", {}, 12 * 6 * 8 * (768 + 512)),  # 737,280
    ("coop", {}, 4 * 512),  # 2,048: the paper's 0.002M
    ("coop", {"tokens": 16}, 16 * 512),  # the paper's 0.008M (ActivityNet)
    ("coop", {"tokens": 64}, 64 * 512),  # the paper's 0.033M (VATEX)
    ("vpt", {}, 12 * 5 * 768),  # 46,080: the paper's 0.05M
    ("vpt", {"tokens": 20}, 12 * 20 * 768),  # 184,320: the paper's 0.18M (MSVD)
    ("vpt", {"deep": False}, 5 * 768),
    ("vl-prompt", {}, 12 * 5 * (768 + 512)),  # 76,800: the paper's 0.08M
    ("vl-prompt", {"text_tokens": 20, "vision_tokens": 20}, 12 * 20 * (768 + 512)),  # the paper's 0.31M (VATEX)
    ("adapter-attn", {}, 12 * (2 * 8 * 768 + 8 + 768) + 12 * (2 * 8 * 512 + 8 + 512)),  # 261,312: half uni-modal
    ("uni-modal", {}, 2 * 261_312),
    ("adapter-attn", {"r": 16}, 12 * (2 * 16 * 768 + 16 + 768) + 12 * (2 * 16 * 512 + 16 + 512)),  # 507,264
    ("maple", {}, 9 * 2 * 512 + 9 * (512 * 768 + 768)),  # 3,555,072: MaPLe's 3.55M (J = 9, n = 2)
    ("maple", {"depth": 12}, 12 * 2 * 512 + 12 * (512 * 768 + 768)),  # 4,740,096
    ("partial", {}, B32_BLOCK["vision"] + B32_BLOCK["text"] + B32_HEADS),  # 10,898,177
    ("projection", {}, 768 * 512 + 512 * 512),  # 655,360
    ("full", {}, 12 * (B32_BLOCK["vision"] + B32_BLOCK["text"]) + B32_HEADS),  # 123,540,993: the paper's 123.5M
    ("partial", {"blocks": 12}, 12 * (B32_BLOCK["vision"] + B32_BLOCK["text"]) + B32_HEADS),  # = full
    ("full", {"embeddings": True}, 151_277_313),  # every CLIP tensor
]


@pytest.fixture(scope="module")
def vit_b32():
    from cmadapter.backbone import load_backbone

    return load_backbone("ViT-B-32-quickgelu", device="meta")  # shapes only


@pytest.mark.parametrize(("method", "options", "count"), INFO_COUNTS)
def test_counts_at_the_paper_setting(vit_b32, method, options, count):
    created = create_method(method, vit_b32, options)
    assert created.num_trainable() == count
    assert sum(created.parameter_breakdown().values()) == count


@pytest.mark.parametrize(
    ("method", "args", "count"),
    [
        ("vl-prompt", [], 76_800),
        ("full", [], 123_540_993),
        ("maple", [], 3_555_072),
        ("adapter-attn", [], 261_312),
        ("adapter-attn", ["--r", "16"], 507_264),
    ],
)
def test_info_json_prints_the_count(capsys, method, args, count):
    from cmadapter.cli import main

    assert main(["info", "--backbone", "ViT-B-32-quickgelu", "--method", method, *args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["trainable_params"] == count
    added = 0 if METHODS[method].modifies_backbone else count
    assert report["total_params"] == report["backbone_params"] + added == 151_277_313 + added


def test_info_passes_method_options(capsys):
    from cmadapter.cli import main

    assert main(["info", "--method", "lora", "--r", "4", "--option", "mlp=true", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["options"] == {"r": 4, "alpha": 8.0, "dropout": 0.0, "mlp": True}
    assert report["trainable_params"] == 12 * (6 + 10) * 4 * (768 + 512)  # c_fc, c_proj add 5 * d * r each


# ---- LoRA through peft ------------------------------------------------------------------------------------


def test_lora_puts_peft_layers_around_the_backbones_own_linears_and_takes_them_out_again(tiny_weights):
    from peft.tuners.lora import LoraLayer

    model = build_model(pretrained=tiny_weights, method=None)
    linears = [(b.attn.in_proj, b.attn.out_proj) for b in [*model.backbone.vision_blocks, *model.backbone.text_blocks]]
    model.add_adapter("lora", create_method("lora", model.backbone, {"r": 2}))
    for block, (in_proj, out_proj) in zip([*model.backbone.vision_blocks, *model.backbone.text_blocks], linears):
        assert isinstance(block.attn.in_proj, LoraLayer) and block.attn.in_proj.get_base_layer() is in_proj
        assert isinstance(block.attn.out_proj, LoraLayer) and block.attn.out_proj.get_base_layer() is out_proj
        assert type(block.mlp.c_fc) is torch.nn.Linear  # attention only by default
    assert all(not t.any() for n, t in model.method.trainable_tensors().items() if "lora_B" in n)  # B starts at 0
    model.set_adapter(None)
    for block, (in_proj, out_proj) in zip([*model.backbone.vision_blocks, *model.backbone.text_blocks], linears):
        assert block.attn.in_proj is in_proj and block.attn.out_proj is out_proj


def test_lora_adds_alpha_over_r_times_b_a_to_each_target(tiny_weights):
    model = build_model(pretrained=tiny_weights, method="lora", r=2, alpha=6.0)
    perturb(model.method)
    layer = model.backbone.text_blocks[1].attn.in_proj
    a, b = model.method.text[1]["in_proj"]["lora_A"].weight, model.method.text[1]["in_proj"]["lora_B"].weight
    x = torch.randn(5, W)
    base = layer.get_base_layer()
    with torch.no_grad():
        expected = x @ base.weight.T + base.bias + (6.0 / 2) * (x @ a.T @ b.T)
        assert torch.allclose(layer(x), expected, atol=1e-6)


def test_lora_mlp_option_also_adapts_the_mlp_linears(tiny_weights):
    model = build_model(pretrained=tiny_weights, method="lora", r=2, mlp=True)
    names = set(model.method.trainable_tensors())
    assert names == lora_names() | adapter_names(f"{t}.lora_{m}.weight" for t in ("c_fc", "c_proj") for m in "AB")
    # c_fc: A 2x64, B 256x2; c_proj: A 2x256, B 64x2
    assert model.method.num_trainable() == 4 * 6 * 64 * 2 + 4 * (2 * 64 + 256 * 2 + 2 * 256 + 64 * 2)


def test_two_lora_checkpoints_load_onto_one_backbone(tiny_weights, tmp_path):
    expected = {}
    for seed in (1, 2):
        model = make_model(tiny_weights, SPECS[3], seed)
        perturb(model.method, seed)
        model.save_adapter(tmp_path / f"{seed}.safetensors")
        expected[seed] = outputs(model)
    shared = build_model(pretrained=tiny_weights, adapter=tmp_path / "1.safetensors")
    shared.load_adapter(tmp_path / "2.safetensors", name="two")  # built while the first one is attached
    assert torch.equal(outputs(shared)["text"], expected[2]["text"])
    shared.set_adapter("default")
    assert torch.equal(outputs(shared)["text"], expected[1]["text"])


def test_a_lora_built_while_another_is_attached_wraps_the_plain_linears(tiny_weights):
    model = build_model(pretrained=tiny_weights, method="lora", r=2)
    first = model.backbone.vision_blocks[0].attn.in_proj  # the first adapter's peft layer
    model.add_adapter("second", create_method("lora", model.backbone, {"r": 2}))
    second = model.backbone.vision_blocks[0].attn.in_proj
    assert second is not first and second.get_base_layer() is first.get_base_layer()
    model.add_adapter("adaptformer", create_method("adaptformer", model.backbone, {"r": 2}))
    with pytest.raises(CmadapterError, match="not the backbone's plain Linear"):
        create_method("lora", model.backbone, {"r": 2, "mlp": True})  # the MLP is wrapped by AdaptFormer


# ---- AdaptFormer ------------------------------------------------------------------------------------------


def test_adaptformer_block_computes_mlp_plus_scaled_parallel_adapter(tiny_weights):
    model = build_model(pretrained=tiny_weights, method="adaptformer", r=4, scale=0.3)
    perturb(model.method)
    block, adapter = model.backbone.vision_blocks[0], model.method.vision[0]  # the last keeps one token
    x = torch.randn(2, 5, W)
    with torch.no_grad():
        x1 = x + block.attn(block.ln_1(x))
        h = block.ln_2(x1)
        mlp = block.mlp.mlp  # the block's own MLP inside the wrapper
        expected = x1 + mlp(h) + 0.3 * adapter.up(torch.relu(adapter.down(h)))
        assert torch.allclose(block(x), expected, atol=1e-5)
    model.set_adapter(None)
    assert block.mlp is mlp


# ---- prompts ----------------------------------------------------------------------------------------------


@torch.no_grad()
def manual_text_feature(model, tokens, context):
    """CoOp by hand: [start, context, caption...] + positional embedding, pooled at the moved end token."""
    clip = model.clip
    embedded = clip.token_embedding(tokens)
    x = torch.cat([embedded[:, :1], context.expand(len(tokens), -1, -1), embedded[:, 1:]], dim=1)
    n = x.shape[1]
    x = clip.transformer(x + clip.positional_embedding[:n], attn_mask=clip.attn_mask[:n, :n])
    x = clip.ln_final(x)[torch.arange(len(tokens)), tokens.argmax(-1) + context.shape[0]]
    return x @ clip.text_projection


def test_coop_context_follows_the_start_token_and_pooling_follows_the_end_token(tiny_weights):
    model = build_model(pretrained=tiny_weights, method="coop", tokens=3)
    tokens = captions()
    expected = manual_text_feature(model, tokens, model.method.text[0].tokens)
    with torch.no_grad():
        assert torch.allclose(model.encode_text(tokens), expected, atol=1e-5)


def test_coop_drops_padding_the_text_tower_has_no_positions_for(tiny_weights):
    # 32 caption tokens + 60 context tokens > 77 positions: the padding behind the end token goes (causal
    # tower: it changes nothing), giving what a 16-token context computes without any cut.
    model = build_model(pretrained=tiny_weights, method="coop", tokens=60)
    with torch.no_grad():
        assert torch.allclose(model.encode_text(captions(32)), model.encode_text(captions(16)), atol=1e-5)
        long = model.tokenize(["word " * 40])  # its end token would land at position 31 + 60
        with pytest.raises(CmadapterError, match="end-of-text token at position 91"):
            model.encode_text(long)


def test_coop_needs_room_for_the_start_and_end_tokens(tiny_weights):
    with pytest.raises(CmadapterError, match="between 1 and 75"):
        build_model(pretrained=tiny_weights, method="coop", tokens=76)


def block_inputs(model, tower_blocks):
    """What each block's attention LayerNorm sees (after the block's entry slot)."""
    seen = []
    handles = [b.ln_1.register_forward_pre_hook(lambda m, args: seen.append(args[0])) for b in tower_blocks]
    outputs(model)
    for handle in handles:
        handle.remove()
    return seen


@pytest.mark.parametrize("deep", [True, False])
def test_vpt_tokens_sit_after_the_class_token(tiny_weights, deep):
    model = build_model(pretrained=tiny_weights, method="vpt", tokens=2, deep=deep)
    prompts = model.method.vision
    prompted = block_inputs(model, model.backbone.vision_blocks)
    model.set_adapter(None)
    plain = block_inputs(model, model.backbone.vision_blocks)
    patches = (TINY.image_size // TINY.patch_size) ** 2
    assert [x.shape[1] for x in prompted] == [1 + 2 + patches] * TINY.vision_layers
    assert torch.equal(prompted[0][:, 0], plain[0][:, 0])  # the class token, where CLIP pools
    assert torch.equal(prompted[0][:, 3:], plain[0][:, 1:])  # the patches, after the prompts
    with torch.no_grad():
        first = model.clip.visual.ln_pre(prompts[0].tokens)
    assert torch.allclose(prompted[0][:, 1:3], first.expand(len(prompted[0]), -1, -1), atol=1e-6)
    later = prompted[1][:, 1:3]
    if deep:  # overwritten by block 1's own prompt
        assert torch.equal(later, prompts[1].tokens.detach().expand(len(later), -1, -1))
    else:  # carried on from block 0
        assert not torch.equal(later[0], later[1])


def test_every_deep_prompt_matters(tiny_weights):
    model = build_model(pretrained=tiny_weights, method="vl-prompt", text_tokens=2, vision_tokens=2)
    before = outputs(model)
    for tower in TOWERS:
        for prompt in getattr(model.method, tower):
            with torch.no_grad():
                prompt.tokens.add_(1.0)
            after = outputs(model)
            assert not torch.equal(after[tower], before[tower])
            before = after


# ---- MaPLe and the attention-only adapter -----------------------------------------------------------------


def test_maple_vision_prompts_are_the_coupled_text_prompts_in_the_first_j_blocks(tiny_weights):
    model = build_model(pretrained=tiny_weights, method="maple", tokens=2, depth=2)
    method = model.method
    perturb(method)
    vision = block_inputs(model, model.backbone.vision_blocks)
    text = block_inputs(model, model.backbone.text_blocks)
    with torch.no_grad():
        first = model.clip.visual.ln_pre(
            method.text[0].tokens @ method.vision[0].proj.weight.T + method.vision[0].proj.bias
        )
        deep = method.text[1].tokens @ method.vision[1].proj.weight.T + method.vision[1].proj.bias
    assert torch.allclose(vision[0][:, 1:3], first.expand(len(vision[0]), -1, -1), atol=1e-5)
    assert torch.allclose(vision[1][:, 1:3], deep.expand(len(vision[1]), -1, -1), atol=1e-6)
    assert torch.equal(text[1][:, 1:3], method.text[1].tokens.detach().expand(len(text[1]), -1, -1))
    # The coupling is what makes them: a change to a text prompt moves the vision tower's output too.
    before = outputs(model)
    with torch.no_grad():
        method.text[1].tokens.add_(1.0)
    after = outputs(model)
    assert not torch.equal(after["vision"], before["vision"]) and not torch.equal(after["text"], before["text"])


def test_maple_blocks_past_the_depth_get_no_prompts(tiny_weights):
    model = build_model(pretrained=tiny_weights, method="maple", tokens=2, depth=1)
    assert isinstance(model.backbone.vision_blocks[1].entry, torch.nn.Identity)
    assert isinstance(model.backbone.text_blocks[1].entry, torch.nn.Identity)
    assert len(model.method.text) == len(model.method.vision) == 1


def test_maple_first_prompt_starts_from_the_init_words(tiny_weights):
    import open_clip

    model = build_model(pretrained=tiny_weights, method="maple", tokens=2, depth=1)
    ids = open_clip.SimpleTokenizer().encode("a photo")
    assert len(ids) == 2
    assert torch.equal(model.method.text[0].tokens.detach(), model.clip.token_embedding.weight[ids])
    torch.manual_seed(0)
    random = build_model(pretrained=tiny_weights, method="maple", tokens=2, depth=1, init=None)
    assert not torch.equal(random.method.text[0].tokens.detach(), model.clip.token_embedding.weight[ids])


def test_maple_depth_beyond_the_towers_is_an_error(tiny_weights):
    with pytest.raises(CmadapterError, match="depth must be between 1 and 2"):
        build_model(pretrained=tiny_weights, method="maple")  # the default J = 9 on 2-block towers


def test_attention_only_adapter_sits_on_the_attention_slot_alone(tiny_weights):
    from cmadapter.methods.adapter import Adapter

    model = build_model(pretrained=tiny_weights, method="adapter-attn", r=4)
    for block in [*model.backbone.vision_blocks, *model.backbone.text_blocks]:
        assert isinstance(block.ls_1, Adapter) and isinstance(block.ls_2, torch.nn.Identity)


# ---- full, partial, projection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "options", "scale"),
    [("full", {}, 0.01), ("partial", {}, 0.01), ("projection", {}, 1.0), ("partial", {"backbone_lr_scale": 0.5}, 0.5)],
)
def test_backbone_tensors_train_at_the_scaled_learning_rate(tiny_weights, method, options, scale):
    model = build_model(pretrained=tiny_weights, method=method, **options)
    groups = model.method.param_groups(lr=1e-5, weight_decay=0.2)
    assert {g["lr"] for g in groups} == {1e-5 * scale}
    decayed = {id(p) for g in groups if g["weight_decay"] for p in g["params"]}
    for name, tensor in model.method.trainable_tensors().items():
        no_decay = tensor.ndim < 2 or "embedding" in name or name == "logit_scale"
        assert (id(tensor) in decayed) != no_decay, name


def test_detach_freezes_backbone_tensors_again(tiny_weights):
    model = build_model(pretrained=tiny_weights, method=None)
    method = create_method("partial", model.backbone, {"blocks": 1})
    method.attach(model.backbone)
    assert all(t.requires_grad for t in method.trainable_tensors().values())
    method.detach(model.backbone)
    assert not any(p.requires_grad for p in model.clip.parameters())


@pytest.mark.parametrize("first", ["full", "lora"])
def test_backbone_training_methods_do_not_share_a_backbone(tiny_weights, first):
    second = "lora" if first == "full" else "projection"
    model = build_model(pretrained=tiny_weights, method=first)
    with pytest.raises(CmadapterError, match="in.place"):
        model.add_adapter("second", create_method(second, model.backbone, {}))
    assert all(t.requires_grad for t in model.method.trainable_tensors().values())  # the first still trains


def test_partial_blocks_are_checked(tiny_weights):
    with pytest.raises(CmadapterError, match="between 0 and the tower depth 2"):
        build_model(pretrained=tiny_weights, method="partial", blocks=3)
