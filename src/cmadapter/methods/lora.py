"""LoRA (Hu et al., ICLR 2022) through Hugging Face peft, on the attention projections of both towers.

Our blocks hold attention as two plain nn.Linear layers, ``attn.in_proj`` (packed q/k/v) and
``attn.out_proj``, so peft's LoRA layers wrap them directly; ``mlp=True`` adds the MLP's ``c_fc`` and
``c_proj``. On the packed ``in_proj`` one rank-r update covers q, k and v together (A: r x d, B: 3d x r).

peft's ``inject_adapter_in_model`` creates the LoRA layers. It is run on a stand-in module tree that holds
the backbone's target Linear layers (the same objects, not copies), so building the method leaves the
backbone untouched: ``attach`` puts peft's wrappers into the attention and MLP modules and ``detach`` puts
the original Linear layers back. Each method has its own wrappers around the shared frozen layers, so several
LoRA adapters on one backbone switch with ``RetrievalModel.set_adapter`` and never mix. peft initialises B
to zero: the model starts from the backbone's exact outputs.

The paper does not compare LoRA. Setting: peft's defaults, r = 8 and alpha = 8 (scale alpha / r = 1), no
dropout, attention only: 737,280 parameters for ViT-B/32 (6 · d · r per block).
"""

from __future__ import annotations

import dataclasses

from torch import nn

from ..backbone import Backbone
from ..errors import CmadapterError
from .base import Method, MethodOptions

ATTENTION_TARGETS = ("in_proj", "out_proj")
MLP_TARGETS = ("c_fc", "c_proj")
PEFT_ADAPTER_NAME = "cmadapter"  # the name inside each peft layer; each of our methods has its own layers


@dataclasses.dataclass
class LoRAOptions(MethodOptions):
    r: int = 8  # rank
    alpha: float = 8.0  # the update is scaled by alpha / r
    dropout: float = 0.0  # on the LoRA branch's input, in training mode
    mlp: bool = False  # also adapt the MLP's two Linear layers

    def validate(self, backbone: Backbone) -> None:
        if self.r <= 0:
            raise CmadapterError(f"LoRA rank r must be a positive integer, got {self.r}")
        if not 0 <= self.dropout < 1:
            raise CmadapterError(f"LoRA dropout must be in [0, 1), got {self.dropout}")


def target_layers(block: nn.Module, mlp: bool) -> dict[str, tuple[nn.Module, str]]:
    """Each target of a block by name, as (parent module, attribute)."""
    targets = {name: (block.attn, name) for name in ATTENTION_TARGETS}
    if mlp:
        targets.update({name: (block.mlp, name) for name in MLP_TARGETS})
    for name, (parent, attribute) in targets.items():
        layer = base_layer(getattr(parent, attribute, None))
        if type(layer) is not nn.Linear:
            raise CmadapterError(
                f"LoRA target {name} is not the backbone's plain Linear layer (another method is attached?); "
                "build methods on the plain backbone (model.set_adapter(None))"
            )
        if layer.weight.requires_grad:  # peft would freeze it under a method that trains it in place
            raise CmadapterError(f"LoRA target {name} is being trained in place (full or partial fine-tuning)")
    return targets


def base_layer(module: nn.Module | None) -> nn.Module | None:
    """The frozen layer inside a peft layer (another LoRA adapter attached there), else ``module``."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return module.get_base_layer() if isinstance(module, BaseTunerLayer) else module


class LoRA(Method):
    name = "lora"
    Options = LoRAOptions
    placement = "replace"

    def __init__(self, backbone: Backbone, options: LoRAOptions):
        super().__init__(backbone, options)
        from peft import LoraConfig, inject_adapter_in_model

        targets = {
            tower: [target_layers(block, options.mlp) for block in blocks]
            for tower, blocks in (("vision", backbone.vision_blocks), ("text", backbone.text_blocks))
        }
        # The stand-in: vision.<i>.<target> -> the backbone's own Linear layer.
        stand_in = nn.ModuleDict(
            {
                tower: nn.ModuleList(
                    nn.ModuleDict({name: base_layer(getattr(*place)) for name, place in block.items()})
                    for block in blocks
                )
                for tower, blocks in targets.items()
            }
        )
        config = LoraConfig(
            r=options.r,
            lora_alpha=options.alpha,
            lora_dropout=options.dropout,
            target_modules=list(ATTENTION_TARGETS + (MLP_TARGETS if options.mlp else ())),
            bias="none",
        )
        inject_adapter_in_model(config, stand_in, adapter_name=PEFT_ADAPTER_NAME)

        # Ours to keep and train: the LoRA matrices, as vision.<i>.<target>.lora_A / .lora_B.
        self.vision = nn.ModuleList()
        self.text = nn.ModuleList()
        # Where each peft layer goes on attach (not registered: it also holds the frozen base layer).
        self._placements: list[tuple[nn.Module, str, nn.Module]] = []
        for tower, blocks in targets.items():
            for i, block in enumerate(blocks):
                matrices = nn.ModuleDict()
                for name, (parent, attribute) in block.items():
                    layer = stand_in[tower][i][name]
                    matrices[name] = nn.ModuleDict(
                        {"lora_A": layer.lora_A[PEFT_ADAPTER_NAME], "lora_B": layer.lora_B[PEFT_ADAPTER_NAME]}
                    )
                    self._placements.append((parent, attribute, layer))
                getattr(self, tower).append(matrices)

    def placements(self, backbone: Backbone):
        return iter(self._placements)

    def trainable_tensors(self) -> dict[str, nn.Parameter]:
        return self.submodule_tensors("vision", "text")
