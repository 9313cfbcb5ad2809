"""Partial fine-tuning: the top ``blocks`` blocks of each tower, plus what CLIP4Clip always trains.

This is CLIP4Clip's ``--freeze_layer_num`` (``blocks = depth - freeze_layer_num``), the paper's grey
"CLIP4Clip" curve in Fig. 4, drawn "by freezing a varying number of layers". With ViT-B/32 each block pair
adds 10,240,256 parameters to the 657,921 of the final LayerNorms, projections and ``logit_scale``:
k = 1, 3, 6, 12 give 10.9M, 31.4M, 62.1M and 123.5M, where that curve's points lie. The default, k = 1,
is its cheapest point (41.0 R@1 at 0.72x the training time of full fine-tuning in the paper's Fig. 5);
``blocks`` = the tower depth is ``full``.

Towers of unequal depth train the top ``blocks`` of each (all of a tower shallower than that).
The learning-rate rule (``backbone_lr_scale``) is explained in ``backbone_tuning``.
"""

from __future__ import annotations

import dataclasses

from ..backbone import Backbone
from ..errors import CmadapterError
from .backbone_tuning import BackboneTuning, in_top_blocks, is_clip4clip_head
from .base import MethodOptions
from .full import check_lr_scale


@dataclasses.dataclass
class PartialOptions(MethodOptions):
    blocks: int = 1  # trained blocks at the top of each tower
    backbone_lr_scale: float = 0.01  # as full fine-tuning: CLIP4Clip's 1e-7 under lr 1e-5

    def validate(self, backbone: Backbone) -> None:
        arch = backbone.architecture
        deepest = max(arch.vision_layers, arch.text_layers)
        if not 0 <= self.blocks <= deepest:
            raise CmadapterError(f"blocks must be between 0 and the tower depth {deepest}, got {self.blocks}")
        check_lr_scale(self.backbone_lr_scale)


class PartialFineTuning(BackboneTuning):
    name = "partial"
    Options = PartialOptions

    def selects(self, name: str, backbone: Backbone) -> bool:
        return is_clip4clip_head(name) or in_top_blocks(name, self.options.blocks, backbone)
