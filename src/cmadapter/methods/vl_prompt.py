"""VL-Prompt: independent learned prompts in both towers (MaPLe's "independent V-L prompting" baseline,
Khattak et al., CVPR 2023), one CoOp-style text prompt and one VPT-style vision prompt (see ``prompts``).

Paper setting: deep prompts of 5 tokens in each tower. The paper's Table 1 lists VL-Prompt at 0.08M
(MSVD, DiDeMo, ActivityNet) and 0.31M (VATEX); with ViT-B/32 (widths 768 and 512, 12 blocks each) deep
prompts of 5 tokens give 76,800 and of 20 tokens 307,200.
"""

from __future__ import annotations

import dataclasses

from ..backbone import Backbone
from .base import MethodOptions
from .prompts import PromptTuning, check_text_tokens, check_vision_tokens, text_prompts, vision_prompts


@dataclasses.dataclass
class VLPromptOptions(MethodOptions):
    text_tokens: int = 5
    vision_tokens: int = 5
    deep: bool = True  # both towers: a fresh set before every block

    def validate(self, backbone: Backbone) -> None:
        check_text_tokens(self.text_tokens, backbone)
        check_vision_tokens(self.vision_tokens)


class VLPrompt(PromptTuning):
    name = "vl-prompt"
    Options = VLPromptOptions

    def __init__(self, backbone: Backbone, options: VLPromptOptions):
        super().__init__(backbone, options)
        self.text = text_prompts(backbone, options.text_tokens, deep=options.deep)
        self.vision = vision_prompts(backbone, options.vision_tokens, deep=options.deep)
