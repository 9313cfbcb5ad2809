"""AdaptFormer (Chen et al., NeurIPS 2022): a bottleneck adapter parallel to each block's MLP, scaled.

    x = x + MLP(LN2(x)) + s · Up(ReLU(Down(LN2(x))))

The adapter reads the MLP's input, so it is attached by wrapping ``block.mlp`` (``WithParallelAdapter``);
detaching puts the MLP back. Up starts at zero, so the model starts from the backbone's exact outputs.

The paper does not compare AdaptFormer. Setting: AdaptFormer's own (bottleneck 64, s = 0.1, fixed), in
every block of both towers (AdaptFormer adapts a vision model only; here both towers, like the
Cross-Modal Adapter): 1,982,976 parameters for ViT-B/32.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import Backbone
from ..errors import CmadapterError
from .base import Method, MethodOptions


@dataclasses.dataclass
class AdaptFormerOptions(MethodOptions):
    r: int = 64  # bottleneck width
    scale: float = 0.1  # s: the adapter output's fixed scale

    def validate(self, backbone: Backbone) -> None:
        if self.r <= 0:
            raise CmadapterError(f"adapter bottleneck r must be a positive integer, got {self.r}")


class ParallelAdapter(nn.Module):
    """``s · Up(ReLU(Down(h)))`` on rows [M, width]."""

    def __init__(self, width: int, r: int, scale: float):
        super().__init__()
        self.scale = scale
        self.down = nn.Linear(width, r)
        self.up = nn.Linear(r, width)
        # AdaptFormer's initialisation: Down Kaiming-uniform (nn.Linear's default), every other tensor zero.
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up(F.relu(self.down(h)))


class WithParallelAdapter(nn.Module):
    """Stands in for a block's MLP while attached: ``mlp(h) + adapter(h)``."""

    def __init__(self, mlp: nn.Module, adapter: ParallelAdapter):
        super().__init__()
        self.mlp = mlp
        self.adapter = adapter

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.mlp(h) + self.adapter(h)


class AdaptFormer(Method):
    name = "adaptformer"
    Options = AdaptFormerOptions
    placement = "replace"

    def __init__(self, backbone: Backbone, options: AdaptFormerOptions):
        super().__init__(backbone, options)
        arch = backbone.architecture

        def tower(layers: int, width: int) -> nn.ModuleList:
            return nn.ModuleList(ParallelAdapter(width, options.r, options.scale) for _ in range(layers))

        self.vision = tower(arch.vision_layers, arch.vision_width)
        self.text = tower(arch.text_layers, arch.text_width)

    def placements(self, backbone: Backbone):
        for blocks, adapters in ((backbone.vision_blocks, self.vision), (backbone.text_blocks, self.text)):
            for block, adapter in zip(blocks, adapters, strict=True):
                # The wrapper is made here, not kept: owning the MLP would make its frozen tensors ours.
                yield block, "mlp", WithParallelAdapter(block.mlp, adapter)

    def trainable_tensors(self) -> dict[str, nn.Parameter]:
        return self.submodule_tensors("vision", "text")
