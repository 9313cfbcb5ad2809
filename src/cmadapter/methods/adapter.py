"""Bottleneck adapters and where they sit in an open_clip block.

open_clip's residual block computes ``x + ls_1(attn(ln_1(x)))`` then ``x + ls_2(mlp(ln_2(x)))``; ``ls_1``
and ``ls_2`` (identity for CLIP) are exactly where the paper puts its adapters: on each sub-layer's
output, before the residual add. So an adapter is attached by plugging it into those slots (``SLOTS``,
``slots.plug``) and detached by putting the originals back; the block's own forward stays open_clip's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import quick_gelu

SLOTS = {"attn": "ls_1", "mlp": "ls_2"}  # adapter position -> open_clip block attribute
INIT_STD = 0.01


def init_adapter_linear(linear: nn.Linear) -> None:
    # The official code calls nn.init.trunc_normal_(std=0.01) with torch's default cut at ±2 (absolute).
    nn.init.trunc_normal_(linear.weight, mean=0.0, std=INIT_STD)
    nn.init.zeros_(linear.bias)


class Adapter(nn.Module):
    """``h + Up(QuickGELU(Down(h)))``; Up's last ``shared_up.out_features`` channels come from ``shared_up``.

    ``shared_up`` is one module referenced by the vision and the text adapter at the same block and
    position, so both modalities train the same tensor.
    """

    def __init__(self, width: int, r: int, shared_up: nn.Linear | None = None):
        super().__init__()
        shared = shared_up.out_features if shared_up is not None else 0
        self.width = width
        self.down = nn.Linear(width, r)
        self.up = nn.Linear(r, width - shared) if width > shared else None
        self.shared_up = shared_up
        init_adapter_linear(self.down)
        if self.up is not None:
            init_adapter_linear(self.up)

    def up_weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The full Up as one matrix: unique rows first, shared rows last."""
        parts = [m for m in (self.up, self.shared_up) if m is not None]
        if len(parts) == 1:
            return parts[0].weight, parts[0].bias
        return torch.cat([p.weight for p in parts]), torch.cat([p.bias for p in parts])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # Work on 2-D rows: frozen-weight matmuls on 3-D activations take a slow batched path in backward.
        rows = h.reshape(-1, self.width)
        weight, bias = self.up_weight_and_bias()
        delta = F.linear(quick_gelu(self.down(rows)), weight, bias)
        return h + delta.view(h.shape)


def pair_blocks(vision_layers: int, text_layers: int) -> list[tuple[int, int]]:
    """Vision/text block pairs that share an Up, by relative depth.

    With equal depths block i pairs with block i. Otherwise each block i of the shallower tower
    (depth S) pairs with block ``ceil((i + 1) * D / S) - 1`` of the deeper one (depth D): the block that
    ends the same fraction of the tower (for ViT-L/14, text block i with vision block 2i + 1). Blocks of
    the deeper tower left without a partner get adapters whose Up is all their own.
    """
    if vision_layers == text_layers:
        return [(i, i) for i in range(vision_layers)]
    shallow, deep = sorted((vision_layers, text_layers))
    partners = [-(-(i + 1) * deep // shallow) - 1 for i in range(shallow)]
    if vision_layers > text_layers:
        return [(partners[i], i) for i in range(shallow)]
    return [(i, partners[i]) for i in range(shallow)]
