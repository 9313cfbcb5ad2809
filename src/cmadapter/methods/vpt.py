"""VPT (Jia et al., "Visual Prompt Tuning", ECCV 2022): learned tokens in the vision tower only (see ``prompts``).

Paper setting: deep prompts, 5 tokens per block. The paper's Table 1 lists VPT at 0.05M parameters
(DiDeMo, VATEX, ActivityNet) and 0.18M (MSVD); with ViT-B's width 768 and 12 blocks these are deep prompts
of 5 (46,080) and 20 (184,320) tokens. ``deep=False`` gives VPT-shallow: one set after the embeddings.
VPT's dropout on the prompts is left out.
"""

from __future__ import annotations

import dataclasses

from ..backbone import Backbone
from .base import MethodOptions
from .prompts import PromptTuning, check_vision_tokens, vision_prompts


@dataclasses.dataclass
class VPTOptions(MethodOptions):
    tokens: int = 5  # learned tokens per prompted layer
    deep: bool = True  # a fresh set before every block (False: only after the embeddings)

    def validate(self, backbone: Backbone) -> None:
        check_vision_tokens(self.tokens)


class VPT(PromptTuning):
    name = "vpt"
    Options = VPTOptions

    def __init__(self, backbone: Backbone, options: VPTOptions):
        super().__init__(backbone, options)
        self.vision = vision_prompts(backbone, options.tokens, deep=options.deep)
