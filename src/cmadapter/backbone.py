"""The frozen CLIP backbone: open_clip models by name, OpenAI weights, or a local OpenAI-layout file.

A local file may be a TorchScript archive (as OpenAI distributes CLIP), a plain state dict (``torch.save``),
a safetensors file, or a checkpoint of the official Cross-Modal Adapter code (CLIP under ``clip.``). The
architecture of a file is read off its tensors, so a file of any size builds the right model. No file runs
code while it is read (see ``safe_weights``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .architecture import Architecture
from .blocks import flatten_blocks
from .errors import CheckpointError, CmadapterError
from .safe_weights import is_torchscript_archive, read_torchscript_weights, torch_load_weights
from .slots import add_text_input

log = logging.getLogger(__name__)

# Keys some OpenAI archives carry beside the weights.
_NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size")
_OPENAI_HEAD_WIDTH = 64  # every OpenAI CLIP uses 64-wide attention heads


@dataclass
class Backbone:
    """A frozen open_clip CLIP model and what we know about it."""

    model: nn.Module
    architecture: Architecture
    name: str | None  # open_clip model name, when known
    source: str  # "random", "openai", a pretrained tag, or a file path

    @property
    def vision_blocks(self) -> nn.ModuleList:
        return self.model.visual.transformer.resblocks

    @property
    def text_blocks(self) -> nn.ModuleList:
        return self.model.transformer.resblocks


def load_backbone(
    name: str | None = None, pretrained: str | os.PathLike | None = None, *, device: str | torch.device = "cpu"
) -> Backbone:
    """Build a frozen fp32 CLIP.

    ``pretrained`` is None (random weights), ``"openai"`` or another open_clip pretrained tag (downloaded
    by open_clip), or the path of a local weights file (architecture inferred; ``name`` then only
    labels the model and must agree with the file when given).
    """
    if pretrained is not None and looks_like_path(pretrained):
        path = Path(pretrained)
        state_dict = read_weights_file(path)
        architecture = infer_architecture(state_dict, source=str(path), activation=_activation_for(name))
        if name is not None:
            expected = architecture_of(_build_named(name, device="meta"))
            diff = expected.differences(architecture)
            if diff:
                raise CheckpointError(
                    f"{path} does not hold a {name} model ({'; '.join(diff)}). "
                    "Leave the backbone name out to use the architecture stored in the file."
                )
        model = build_from_state_dict(state_dict, architecture, source=str(path))
        source = str(path)
    else:
        if name is None:
            raise CmadapterError("a backbone name is needed unless `pretrained` is a local weights file")
        check_known_name(name)
        if pretrained is None:
            # `device="meta"` builds shapes only: enough to count parameters, instantly.
            model = _build_named(name, device="meta" if str(device) == "meta" else "cpu")
            source = "random"
        else:
            model = _create_pretrained(name, str(pretrained))
            source = str(pretrained)
        _check_supported(model, name)
        architecture = architecture_of(model)
    flatten_blocks(model)
    add_text_input(model)
    freeze(model)
    model.to(device)
    return Backbone(model=model, architecture=architecture, name=name, source=source)


def freeze(model: nn.Module) -> None:
    """Every backbone tensor frozen, ``logit_scale`` included; eval mode (CLIP has no dropout to lose)."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    model.eval()


def architecture_of(model: nn.Module) -> Architecture:
    _check_supported(model, None)
    visual = model.visual
    vblock = visual.transformer.resblocks[0]
    tblock = model.transformer.resblocks[0]
    image_size = visual.image_size[0] if isinstance(visual.image_size, tuple) else visual.image_size
    patch_size = visual.patch_size[0] if isinstance(visual.patch_size, tuple) else visual.patch_size
    act = vblock.mlp.gelu
    activation = "quick_gelu" if type(act).__name__ == "QuickGELU" else "gelu"
    return Architecture(
        embed_dim=int(model.text_projection.shape[1]),
        image_size=int(image_size),
        patch_size=int(patch_size),
        vision_width=int(visual.transformer.width),
        vision_layers=len(visual.transformer.resblocks),
        vision_heads=int(vblock.attn.num_heads),
        text_width=int(model.transformer.width),
        text_layers=len(model.transformer.resblocks),
        text_heads=int(tblock.attn.num_heads),
        context_length=int(model.positional_embedding.shape[0]),
        vocab_size=int(model.token_embedding.weight.shape[0]),
        activation=activation,
    )


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """The CLIP tensors of a TorchScript archive, a state dict, or an official checkpoint, OpenAI names."""
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"weights file is empty: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state_dict = load_file(str(path))
        except SafetensorError as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
        from .checkpoint import is_adapter_checkpoint

        if is_adapter_checkpoint(path):
            raise CheckpointError(f"{path} is a cmadapter adapter checkpoint, not backbone weights; pass it as adapter")
    elif is_torchscript_archive(path):
        state_dict = read_torchscript_weights(path)  # never torch.jit.load: it runs the archive's code
    else:
        state_dict = torch_load_weights(path)
    return openai_state_dict(state_dict, source=str(path))


def openai_state_dict(obj: Any, *, source: str) -> dict[str, torch.Tensor]:
    """Unwrap common containers and prefixes down to OpenAI CLIP names (``visual.*``, ``transformer.*``…)."""
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{source} does not hold a dictionary of tensors")
    # DDP wrappers add `module.`; the official code nests CLIP under `clip.`.
    while "visual.conv1.weight" not in obj:
        prefix = next((p for p in ("module.", "clip.") if any(k.startswith(p) for k in obj)), None)
        if prefix is None:
            break
        obj = {k[len(prefix) :]: v for k, v in obj.items() if k.startswith(prefix)}
    if "visual.conv1.weight" not in obj:
        raise CheckpointError(
            f"{source} holds no CLIP vision transformer (no 'visual.conv1.weight'); "
            "expected an OpenAI-layout CLIP checkpoint"
        )
    if "visual.proj" not in obj:
        raise CheckpointError(f"{source} holds a ResNet CLIP; only ViT backbones are supported")
    return {k: v for k, v in obj.items() if k not in _NON_WEIGHT_KEYS}


def infer_architecture(
    state_dict: dict[str, torch.Tensor], *, source: str, activation: str = "quick_gelu"
) -> Architecture:
    """Read the architecture of an OpenAI-layout CLIP off its tensor shapes."""

    def layers(prefix: str) -> int:
        ids = {k[len(prefix) :].split(".")[0] for k in state_dict if k.startswith(prefix)}
        return len(ids)

    try:
        vision_width = state_dict["visual.conv1.weight"].shape[0]
        patch_size = state_dict["visual.conv1.weight"].shape[-1]
        grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        text_width = state_dict["ln_final.weight"].shape[0]
        arch = Architecture(
            embed_dim=int(state_dict["text_projection"].shape[1]),
            image_size=int(patch_size * grid),
            patch_size=int(patch_size),
            vision_width=int(vision_width),
            vision_layers=layers("visual.transformer.resblocks."),
            vision_heads=max(1, int(vision_width) // _OPENAI_HEAD_WIDTH),
            text_width=int(text_width),
            text_layers=layers("transformer.resblocks."),
            text_heads=max(1, int(text_width) // _OPENAI_HEAD_WIDTH),
            context_length=int(state_dict["positional_embedding"].shape[0]),
            vocab_size=int(state_dict["token_embedding.weight"].shape[0]),
            activation=activation,
        )
    except KeyError as exc:
        raise CheckpointError(f"{source} lacks the CLIP tensor {exc.args[0]!r}") from exc
    for width, heads, tower in (
        (arch.vision_width, arch.vision_heads, "vision"),
        (arch.text_width, arch.text_heads, "text"),
    ):
        if width % heads:
            raise CheckpointError(
                f"{source}: {tower} width {width} is not a multiple of the 64-wide heads OpenAI CLIP uses"
            )
    return arch


def build_clip(arch: Architecture) -> nn.Module:
    """A randomly initialised fp32 open_clip CLIP of any size (tests and the demo build tiny ones)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    return CLIP(
        embed_dim=arch.embed_dim,
        vision_cfg=CLIPVisionCfg(
            layers=arch.vision_layers,
            width=arch.vision_width,
            head_width=arch.vision_width // arch.vision_heads,
            patch_size=arch.patch_size,
            image_size=arch.image_size,
        ),
        text_cfg=CLIPTextCfg(
            context_length=arch.context_length,
            vocab_size=arch.vocab_size,
            width=arch.text_width,
            heads=arch.text_heads,
            layers=arch.text_layers,
        ),
        quick_gelu=arch.activation == "quick_gelu",
    )


def build_from_state_dict(state_dict: dict[str, torch.Tensor], arch: Architecture, *, source: str) -> nn.Module:
    """An fp32 open_clip CLIP of ``arch`` holding ``state_dict`` (extra keys, e.g. adapters, ignored)."""
    model = build_clip(arch)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    if missing:
        raise CheckpointError(f"{source} lacks {len(missing)} CLIP tensors, e.g. {missing[:3]}")
    for key, tensor in expected.items():
        if state_dict[key].shape != tensor.shape:
            raise CheckpointError(
                f"{source}: tensor {key} has shape {tuple(state_dict[key].shape)}, expected {tuple(tensor.shape)}"
            )
    # Cast explicitly: OpenAI archives store most weights in fp16; we keep fp32 masters.
    model.load_state_dict({k: state_dict[k].float() for k in expected}, strict=True)
    return model


def _create_pretrained(name: str, tag: str) -> nn.Module:
    """open_clip's ``name`` with the weights of ``tag``, downloaded (or found in the cache) first, so that a
    machine without network gets an error in words rather than a resolver error from deep in the hub client."""
    import open_clip

    config = open_clip.get_pretrained_cfg(name, tag)
    if not config:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
        raise CheckpointError(f"{tag!r} is neither a weights file nor a pretrained tag of {name} (its tags: {tags})")
    try:
        open_clip.download_pretrained(config)
    except Exception as exc:  # the hub client and urllib raise many types; all mean "not fetched"
        log.debug("download of %s %s weights failed: %r", name, tag, exc)
        raise CheckpointError(
            f"could not download the {tag!r} weights of {name}: no network access, or the server refused. "
            "Download them where there is network (open_clip caches them), or give a local OpenAI-layout "
            "weights file: model.pretrained=PATH in a config (--pretrained PATH for `cmadapter info`)"
        ) from exc
    try:
        return open_clip.create_model(name, pretrained=tag, precision="fp32")
    except RuntimeError as exc:
        raise CheckpointError(f"could not load the {tag!r} weights of {name}: {exc}") from exc


def _build_named(name: str, *, device: str) -> nn.Module:
    import open_clip

    check_known_name(name)
    previous = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # silence open_clip's "initialized randomly" warning
    # open_clip builds and randomly initialises every tensor on the CPU before moving the model: a meta build
    # under the meta device context allocates and initialises nothing (ViT-B/32: 0.08 s instead of 1.2 s).
    on_device = torch.device("meta") if str(device) == "meta" else contextlib.nullcontext()
    try:
        with on_device:
            model = open_clip.create_model(name, pretrained=None, precision="fp32", device=device)
    finally:
        logging.getLogger().setLevel(previous)
    _check_supported(model, name)
    return model


def check_known_name(name: str) -> None:
    import open_clip

    if name not in open_clip.list_models():
        vit = [
            m
            for m in open_clip.list_models()
            if m.startswith("ViT-") and not (open_clip.get_model_config(m) or {}).get("custom_text")
        ]
        raise CmadapterError(
            f"unknown backbone {name!r}; open_clip ViT models include {', '.join(vit[:8])}, … "
            "(see open_clip.list_models())"
        )


def _check_supported(model: nn.Module, name: str | None) -> None:
    from open_clip.model import CLIP
    from open_clip.transformer import VisionTransformer

    label = name or type(model).__name__
    if not isinstance(model, CLIP):
        raise CmadapterError(
            f"backbone {label} has a custom text tower ({type(model).__name__}); cmadapter supports open_clip "
            "CLIP models with the built-in text transformer"
        )
    if not isinstance(model.visual, VisionTransformer):
        raise CmadapterError(
            f"backbone {label} has a {type(model.visual).__name__} image tower; only ViTs are supported"
        )


def _activation_for(name: str | None) -> str:
    if name is None:
        return "quick_gelu"  # OpenAI weights were trained with QuickGELU
    import open_clip

    config = open_clip.get_model_config(name) or {}
    return "quick_gelu" if config.get("quick_gelu", False) else "gelu"


def looks_like_path(value: str | os.PathLike) -> bool:
    text = os.fspath(value)
    return (
        isinstance(value, os.PathLike)
        or os.sep in text
        or os.path.exists(text)
        or text.endswith((".pt", ".pth", ".bin", ".safetensors", ".ckpt"))
        or ".bin." in text
    )
