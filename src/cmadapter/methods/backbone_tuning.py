"""What ``full``, ``partial`` and ``projection`` share: they train a subset of the backbone's own tensors in place.

Nothing is added to the backbone. Attaching makes the chosen tensors trainable, detaching freezes them again;
the trained values stay in the backbone, which is why these methods cannot share one with other adapters
(``modifies_backbone``). Checkpoints hold the chosen tensors under their OpenAI/open_clip state-dict names.

Learning rate: tensors of the pretrained backbone train at ``lr * backbone_lr_scale``, where ``lr`` is the
trainer's learning rate (the recipe's adapter rate, 1e-5). CLIP4Clip trains CLIP at 1e-7 (its ``--lr 1e-4``
times ``--coef_lr 1e-3``); the default scale 0.01 gives that same 1e-7 under our recipe's 1e-5, so one
config can train every method. To use CLIP4Clip's own numbers, set ``lr=1e-4, backbone_lr_scale=1e-3``.
Weight decay follows our recipe (matrices only, embeddings excluded), not CLIP4Clip's name matching (which
misses CLIP's LayerNorm names and so decays them and ``logit_scale`` too).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from torch import nn

from ..backbone import Backbone
from ..blocks import openai_key
from .base import Method, MethodOptions


class BackboneTuning(Method):
    modifies_backbone = True

    def __init__(self, backbone: Backbone, options: MethodOptions):
        super().__init__(backbone, options)
        # A plain dict, not registered: the tensors belong to the backbone, not to this module.
        self._tensors: dict[str, nn.Parameter] = {
            openai_key(name): tensor
            for name, tensor in backbone.model.named_parameters()
            if self.selects(openai_key(name), backbone)
        }

    @abstractmethod
    def selects(self, name: str, backbone: Backbone) -> bool:
        """Whether the backbone tensor ``name`` (OpenAI/open_clip name) is trained."""

    def attach(self, backbone: Backbone) -> None:
        for tensor in self._tensors.values():
            tensor.requires_grad_(True)
        self.attached = True

    def detach(self, backbone: Backbone) -> None:
        for tensor in self._tensors.values():
            tensor.requires_grad_(False)
        self.attached = False

    def trainable_tensors(self) -> dict[str, nn.Parameter]:
        return dict(self._tensors)

    def parameter_breakdown(self) -> dict[str, int]:
        counts = {"vision": 0, "text": 0, "shared": 0}
        for name, tensor in self._tensors.items():
            part = "vision" if name.startswith("visual.") else "shared" if name == "logit_scale" else "text"
            counts[part] += tensor.numel()
        return {part: count for part, count in counts.items() if count}

    def decays(self, name: str, tensor: torch.Tensor) -> bool:
        # Embedding tables are matrices too, but (as open_clip's trainer does) they get no weight decay.
        return super().decays(name, tensor) and "embedding" not in name

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        groups = super().param_groups(lr * self.options.backbone_lr_scale, weight_decay)
        for group in groups:
            group["name"] = f"backbone_{group['name']}"
        return groups


def block_index(name: str) -> int | None:
    """The block number of a tensor inside a tower's ``resblocks``, else None."""
    if ".resblocks." not in name:
        return None
    return int(name.split(".resblocks.", 1)[1].split(".", 1)[0])


# What CLIP4Clip always trains, however many blocks it freezes: the towers' final norms and projections and
# the temperature.
CLIP4CLIP_HEADS = ("visual.ln_post.", "visual.proj", "ln_final.", "text_projection", "logit_scale")


def is_clip4clip_head(name: str) -> bool:
    return name.startswith(CLIP4CLIP_HEADS)


def in_top_blocks(name: str, blocks: int, backbone: Backbone) -> bool:
    """Whether ``name`` lies in one of the last ``blocks`` blocks of its tower."""
    index = block_index(name)
    if index is None:
        return False
    arch = backbone.architecture
    depth = arch.vision_layers if name.startswith("visual.") else arch.text_layers
    return index >= depth - blocks
