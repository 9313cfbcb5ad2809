"""Full fine-tuning as CLIP4Clip does it (Luo et al. 2021), the paper's fully fine-tuned baseline.

CLIP4Clip trains every transformer block of both towers, their final LayerNorms and projections, and
``logit_scale``; it keeps the input embeddings frozen (token and positional embeddings, the patch
convolution, the class token, ``ln_pre``). That is 123,540,993 parameters for ViT-B/32; the paper's Table 1
gives 123.52M for CLIP4Clip (we cannot tell where its 0.02M difference comes from). ``embeddings=True``
trains the embeddings too: every backbone tensor, 151,277,313 for ViT-B/32.

The learning-rate rule (``backbone_lr_scale``) is explained in ``backbone_tuning``.
"""

from __future__ import annotations

import dataclasses

from ..backbone import Backbone
from ..errors import CmadapterError
from .backbone_tuning import BackboneTuning, block_index, is_clip4clip_head
from .base import MethodOptions


@dataclasses.dataclass
class FullOptions(MethodOptions):
    # Backbone tensors train at lr * backbone_lr_scale: 1e-5 * 0.01 = CLIP4Clip's 1e-7.
    backbone_lr_scale: float = 0.01
    embeddings: bool = False  # also train the input embeddings (CLIP4Clip keeps them frozen)

    def validate(self, backbone: Backbone) -> None:
        check_lr_scale(self.backbone_lr_scale)


def check_lr_scale(scale: float) -> None:
    if not scale > 0:
        raise CmadapterError(f"backbone_lr_scale must be positive, got {scale}")


class FullFineTuning(BackboneTuning):
    name = "full"
    Options = FullOptions

    def selects(self, name: str, backbone: Backbone) -> bool:
        return self.options.embeddings or is_clip4clip_head(name) or block_index(name) is not None
