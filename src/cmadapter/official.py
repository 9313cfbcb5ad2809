"""Import checkpoints of the official Cross-Modal Adapter code (LeapLabTHU/Cross-Modal-Adapter).

Those files (``pytorch_model.bin.N``) are whole state dicts: the frozen CLIP under ``clip.*`` and the
adapters stacked over blocks, row ``2i`` the attention adapter of block ``i`` and row ``2i + 1`` its MLP
adapter::

    clip.visual_adapter_down_weight      [2L, r, Dv]       (+ _bias [2L, r])
    clip.visual_adapter_up_unique_weight [2L, Dv - ds, r]  (+ _bias)
    clip.text_adapter_down_weight        [2L, r, Dt]       (+ _bias)
    clip.text_adapter_up_unique_weight   [2L, Dt - ds, r]  (+ _bias; absent when ds = Dt)
    clip.vt_adapter_up_share_weight      [2L, ds, r]       (+ _bias; absent when ds = 0)

The shared rows are the last ``ds`` output channels of both modalities' Up.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from .architecture import Architecture
from .backbone import architecture_of, infer_architecture, load_backbone, openai_state_dict
from .checkpoint import AdapterCheckpoint, current_versions
from .errors import CheckpointError
from .safe_weights import torch_load_weights

log = logging.getLogger(__name__)

_PREFIX = "clip."
_ADAPTER_KEYS = {
    "visual_adapter_down": ("vision", "down"),
    "visual_adapter_up_unique": ("vision", "up"),
    "text_adapter_down": ("text", "down"),
    "text_adapter_up_unique": ("text", "up"),
    "vt_adapter_up_share": ("shared", None),
}
_POSITIONS = ("attn", "mlp")  # row 2i, row 2i + 1


def read_official_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"official checkpoint not found: {path}")
    state_dict = torch_load_weights(path)
    if not isinstance(state_dict, dict) or f"{_PREFIX}visual_adapter_down_weight" not in state_dict:
        raise CheckpointError(
            f"{path} is not a checkpoint of the official Cross-Modal Adapter code "
            f"(no '{_PREFIX}visual_adapter_down_weight')"
        )
    return state_dict


def convert_official(
    path: str | os.PathLike,
    *,
    backbone_name: str | None = None,
    head: str = "text-pool",
    temperature: float = 5.0,
    context_length: int = 32,
) -> AdapterCheckpoint:
    """Our adapter checkpoint from an official one; the architecture comes from the CLIP tensors in the
    file, or from ``backbone_name`` when the file holds adapters only."""
    state_dict = read_official_checkpoint(path)
    if any(k.startswith(_PREFIX + "visual.") for k in state_dict):
        arch = infer_architecture(openai_state_dict(state_dict, source=str(path)), source=str(path))
    elif backbone_name is not None:
        arch = architecture_of(load_backbone(backbone_name, device="meta").model)
    else:
        raise CheckpointError(f"{path} holds no CLIP weights; name the backbone it was trained on")

    stacked = {}
    for key in _ADAPTER_KEYS:
        weight, bias = state_dict.get(f"{_PREFIX}{key}_weight"), state_dict.get(f"{_PREFIX}{key}_bias")
        if (weight is None) != (bias is None):
            raise CheckpointError(f"{path}: {key} has a weight or a bias but not both")
        if weight is not None:
            stacked[key] = (weight.float(), bias.float())
    for required in ("visual_adapter_down", "visual_adapter_up_unique", "text_adapter_down"):
        if required not in stacked:
            raise CheckpointError(f"{path} lacks {_PREFIX}{required}_weight")

    r = stacked["visual_adapter_down"][0].shape[1]
    shared_dim = stacked["vt_adapter_up_share"][0].shape[1] if "vt_adapter_up_share" in stacked else 0
    _check_shapes(stacked, arch, r, shared_dim, source=str(path))

    tensors: dict[str, torch.Tensor] = {}
    for key, (weight, bias) in stacked.items():
        tower, part = _ADAPTER_KEYS[key]
        for row in range(weight.shape[0]):
            block, position = divmod(row, 2)
            stem = (
                f"shared.{block}.{_POSITIONS[position]}"
                if tower == "shared"
                else (f"{tower}.{block}.{_POSITIONS[position]}.{part}")
            )
            tensors[f"{stem}.weight"] = weight[row].clone()
            tensors[f"{stem}.bias"] = bias[row].clone()

    ignored = [k for k in state_dict if not k.startswith(_PREFIX)]
    if ignored:
        log.warning("ignored %d tensors outside CLIP and the adapters (e.g. %s)", len(ignored), ignored[:3])
    return AdapterCheckpoint(
        tensors=tensors,
        method="cross-modal",
        options={"r": int(r), "shared_dim": int(shared_dim)},
        head={"name": head, "temperature": temperature} if head == "text-pool" else {"name": head},
        architecture=arch,
        backbone_name=backbone_name,
        context_length=context_length,
        extra={"converted_from": str(path)},
        versions=current_versions(),
    )


def _check_shapes(stacked, arch: Architecture, r: int, shared_dim: int, *, source: str) -> None:
    if arch.vision_layers != arch.text_layers:
        raise CheckpointError(f"{source}: the official code needs towers of equal depth")
    rows = 2 * arch.vision_layers
    expected = {
        "visual_adapter_down": (rows, r, arch.vision_width),
        "visual_adapter_up_unique": (rows, arch.vision_width - shared_dim, r),
        "text_adapter_down": (rows, r, arch.text_width),
        "text_adapter_up_unique": (rows, arch.text_width - shared_dim, r),
        "vt_adapter_up_share": (rows, shared_dim, r),
    }
    if shared_dim < arch.text_width and "text_adapter_up_unique" not in stacked:
        raise CheckpointError(f"{source} lacks {_PREFIX}text_adapter_up_unique_weight")
    for key, (weight, bias) in stacked.items():
        if tuple(weight.shape) != expected[key] or tuple(bias.shape) != expected[key][:2]:
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(weight.shape)} / {tuple(bias.shape)}, expected "
                f"{expected[key]} / {expected[key][:2]} for this backbone with r={r}, d_s={shared_dim}"
            )
