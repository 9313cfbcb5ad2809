"""CoOp (Zhou et al., "Learning to Prompt for Vision-Language Models", IJCV 2022): learned context tokens
in the text tower only, inserted after the start token (see ``prompts``).

Paper setting: 4 tokens. The paper's Table 1 lists CoOp at 0.002M parameters (MSVD, DiDeMo) = 4 x 512, and
at 0.008M (16 tokens, ActivityNet) and 0.033M (64 tokens, VATEX); Fig. 4 spans the same three sizes.
Captions (32 tokens) plus the context must fit the text tower's 77 positions up to each caption's
end-of-text token: padding behind it is dropped when needed, since the tower is causal.
"""

from __future__ import annotations

import dataclasses

from ..backbone import Backbone
from .base import MethodOptions
from .prompts import PromptTuning, check_text_tokens, text_prompts


@dataclasses.dataclass
class CoOpOptions(MethodOptions):
    tokens: int = 4  # learned context tokens

    def validate(self, backbone: Backbone) -> None:
        check_text_tokens(self.tokens, backbone)


class CoOp(PromptTuning):
    name = "coop"
    Options = CoOpOptions

    def __init__(self, backbone: Backbone, options: CoOpOptions):
        super().__init__(backbone, options)
        self.text = text_prompts(backbone, options.tokens, deep=False)
