"""MaPLe (Khattak et al., "MaPLe: Multi-modal Prompt Learning", CVPR 2023): deep text prompts, each coupled
to the vision tower by a learned linear map that makes that layer's vision prompts from the text prompts.

In each of the first ``depth`` (J) blocks of both towers, ``tokens`` (n) learned text tokens ``P_i`` [n, W_t]
enter the text tower (block 0: inserted after the start token, as CoOp's context; blocks 1..J-1: written over
those positions) and ``F_i(P_i)`` [n, W_v], with ``F_i`` a Linear(W_t -> W_v) with bias, enter the vision tower
at the same depth (see ``prompts`` for the slots). Only the text prompts and the couplings are trained; the
vision prompts have no parameters of their own. Blocks from J on run with the tokens the block before left.

Defaults are MaPLe's published setting: J = 9, n = 2, the first prompt initialised from the token embeddings of
"a photo of a" (its first n tokens, i.e. "a photo"), the deeper ones normal(0, 0.02), the couplings as
``nn.Linear`` initialises itself. On ViT-B/32 (and ViT-B/16; widths 512 -> 768): 9 x 2 x 512 text tokens plus
9 x (512 x 768 + 768) coupling = 3,555,072 parameters, the 3.55M MaPLe reports. With J = 12 it is 4,740,096,
the closest to the 4.8M the journal version's image-text table lists for MaPLe (its setting is not stated).

MaPLe appends its vision prompts after the patch tokens; here they follow the class token. They are added after
the positional embedding and attention does not depend on token order, so the outputs are the same.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..backbone import Backbone
from ..errors import CmadapterError
from .base import MethodOptions
from .prompts import (
    TEXT_INIT_STD,
    DeepPrompt,
    PromptTuning,
    TextPrompt,
    check_text_tokens,
    insert_after_first,
    overwrite_after_first,
)


@dataclasses.dataclass
class MaPLeOptions(MethodOptions):
    tokens: int = 2  # n: prompt tokens per prompted layer
    depth: int = 9  # J: prompted layers in each tower
    init: str | None = "a photo of a"  # words whose embeddings start the first text prompt; None: random

    def validate(self, backbone: Backbone) -> None:
        check_text_tokens(self.tokens, backbone)
        arch = backbone.architecture
        layers = min(arch.text_layers, arch.vision_layers)
        if not 1 <= self.depth <= layers:
            raise CmadapterError(
                f"MaPLe depth must be between 1 and {layers} (the towers have {arch.text_layers} text and "
                f"{arch.vision_layers} vision blocks), got {self.depth}"
            )
        if self.init is not None and not self.init.strip():
            raise CmadapterError("MaPLe init must be some words (e.g. 'a photo of a') or null for random")


class CoupledPrompt(nn.Module):
    """Vision prompt tokens made from a text prompt: ``proj(text.tokens)`` [n, W_v], inserted after the class
    token (``first``, the ``patch_dropout`` slot) or written over positions 1..n (a block's ``entry``)."""

    def __init__(self, text: TextPrompt | DeepPrompt, vision_width: int, *, first: bool):
        super().__init__()
        self.proj = nn.Linear(text.tokens.shape[1], vision_width)
        self._text = (text,)  # a tuple, not a sub-module: the text tower's list owns the prompt
        self.first = first

    @property
    def tokens(self) -> torch.Tensor:
        return self.proj(self._text[0].tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (insert_after_first if self.first else overwrite_after_first)(x, self.tokens)


def word_embeddings(backbone: Backbone, words: str, count: int) -> torch.Tensor | None:
    """The token embeddings [k, W_t] of the first ``count`` BPE tokens of ``words`` (k <= count)."""
    import open_clip

    ids = open_clip.SimpleTokenizer().encode(words)[:count]
    embedding = backbone.model.token_embedding.weight
    if embedding.is_meta or not ids or max(ids) >= embedding.shape[0]:  # meta: shapes only (counting)
        return None
    return embedding[torch.tensor(ids, device=embedding.device)].detach()


class MaPLe(PromptTuning):
    name = "maple"
    Options = MaPLeOptions
    breakdown_parts = ("text", "coupling")

    def __init__(self, backbone: Backbone, options: MaPLeOptions):
        super().__init__(backbone, options)
        arch = backbone.architecture
        n, width = options.tokens, arch.text_width
        self.text = nn.ModuleList([TextPrompt(n, width)] + [DeepPrompt(n, width) for _ in range(1, options.depth)])
        for prompt in self.text:
            nn.init.normal_(prompt.tokens, std=TEXT_INIT_STD)
        if options.init is not None:
            words = word_embeddings(backbone, options.init, n)
            if words is not None:  # fewer words than tokens: the rest stay random
                with torch.no_grad():
                    self.text[0].tokens[: len(words)].copy_(words.to(self.text[0].tokens.device))
        self.vision = nn.ModuleList(
            CoupledPrompt(prompt, arch.vision_width, first=i == 0) for i, prompt in enumerate(self.text)
        )

    def trainable_tensors(self) -> dict[str, nn.Parameter]:
        tensors: dict[str, nn.Parameter] = {f"text.{i}.prompt": p.tokens for i, p in enumerate(self.text)}
        for i, coupled in enumerate(self.vision):
            tensors[f"coupling.{i}.weight"] = coupled.proj.weight
            tensors[f"coupling.{i}.bias"] = coupled.proj.bias
        return tensors

    def decays(self, name: str, tensor: torch.Tensor) -> bool:
        return name.startswith("coupling.") and name.endswith(".weight")  # prompts are embeddings: no decay
