"""Prompt tuning, shared by ``coop``, ``vpt`` and ``vl-prompt``: learned tokens in a tower's input sequence.

A tower's prompts are ``n`` learned tokens placed right after its first token (the image class token, the
text start token), so CLIP's pooling still finds what it pools: the class token stays at position 0, and the
text tower's end-of-text position moves by ``n`` (the ``slots.TextInput`` contract).

- Shallow: one set, inserted into the input sequence (``clip.text_input`` before the positional embedding,
  as CoOp; ``visual.patch_dropout`` after it and before ``ln_pre``, as VPT on CLIP). Text prompts thus get
  positional embeddings 1..n and the caption moves up by n, as in CoOp's 77-token prompts.
- Deep: also a fresh set before every later block, overwriting the ``n`` positions the previous block
  produced there (VPT-deep, MaPLe's independent V-L prompting), through each block's ``entry`` slot.

Prompts are not identity-initialised: a prompted model differs from the backbone from the start.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..backbone import Backbone
from ..errors import CmadapterError
from .base import Method, MethodOptions

TEXT_INIT_STD = 0.02  # CoOp's random context initialisation


class Prompt(nn.Module):
    """``n`` learned tokens inserted after the first token: [N, L, W] -> [N, L + n, W]."""

    def __init__(self, tokens: int, width: int):
        super().__init__()
        self.tokens = nn.Parameter(torch.empty(tokens, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return insert_after_first(x, self.tokens)


class TextPrompt(Prompt):
    """A ``Prompt`` for the ``clip.text_input`` slot: also moves the pooling positions behind the prompt."""

    def forward(self, x: torch.Tensor, pool_positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift = self.tokens.shape[0] * (pool_positions > 0)
        return super().forward(x), pool_positions + shift


class DeepPrompt(Prompt):
    """``n`` learned tokens written over positions 1..n (a block's ``entry``): [N, L, W] -> [N, L, W]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return overwrite_after_first(x, self.tokens)


def insert_after_first(x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """[N, L, W] and [n, W] -> [N, L + n, W]: the tokens right after each sequence's first token."""
    prompt = tokens.to(x.dtype).expand(x.shape[0], -1, -1)
    return torch.cat([x[:, :1], prompt, x[:, 1:]], dim=1)


def overwrite_after_first(x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """[N, L, W] and [n, W] -> [N, L, W]: the tokens written over positions 1..n."""
    prompt = tokens.to(x.dtype).expand(x.shape[0], -1, -1)
    return torch.cat([x[:, :1], prompt, x[:, 1 + tokens.shape[0] :]], dim=1)


def check_text_tokens(tokens: int, backbone: Backbone) -> None:
    positions = backbone.architecture.context_length
    if not 1 <= tokens <= positions - 2:
        raise CmadapterError(
            f"text prompt tokens must be between 1 and {positions - 2} (the text tower's {positions} "
            f"positions less the start and end tokens), got {tokens}"
        )


def check_vision_tokens(tokens: int) -> None:
    if tokens < 1:
        raise CmadapterError(f"vision prompt tokens must be at least 1, got {tokens}")


def text_prompts(backbone: Backbone, tokens: int, deep: bool) -> nn.ModuleList:
    """Prompt ``i`` enters before text block ``i``: [0] at the input, [1:] (deep only) overwrite."""
    arch = backbone.architecture
    prompts = nn.ModuleList(
        [TextPrompt(tokens, arch.text_width)]
        + [DeepPrompt(tokens, arch.text_width) for _ in range(1, arch.text_layers if deep else 1)]
    )
    for prompt in prompts:
        nn.init.normal_(prompt.tokens, std=TEXT_INIT_STD)
    return prompts


def vision_prompts(backbone: Backbone, tokens: int, deep: bool) -> nn.ModuleList:
    """Prompt ``i`` enters before vision block ``i``: [0] after the embeddings, [1:] (deep only) overwrite."""
    arch = backbone.architecture
    prompts = nn.ModuleList(
        [Prompt(tokens, arch.vision_width)]
        + [DeepPrompt(tokens, arch.vision_width) for _ in range(1, arch.vision_layers if deep else 1)]
    )
    # VPT's initialisation: Xavier-uniform with the patch embedding's fan-in (3·p·p) and the width as fan-out.
    bound = math.sqrt(6.0 / (3 * arch.patch_size**2 + arch.vision_width))
    for prompt in prompts:
        nn.init.uniform_(prompt.tokens, -bound, bound)
    return prompts


class PromptTuning(Method):
    """Learned prompts in either tower or both: subclasses set ``self.text`` and/or ``self.vision`` (from
    ``text_prompts`` / ``vision_prompts``) after calling this ``__init__``, which validates the options."""

    def __init__(self, backbone: Backbone, options: MethodOptions):
        super().__init__(backbone, options)
        self.text: nn.ModuleList | None = None
        self.vision: nn.ModuleList | None = None

    def placements(self, backbone: Backbone):
        """(parent, attribute, prompt) for every prompt of this method."""
        model = backbone.model
        for prompts, input_slot, blocks in (
            (self.text, (model, "text_input"), backbone.text_blocks),
            (self.vision, (model.visual, "patch_dropout"), backbone.vision_blocks),
        ):
            if prompts is None:
                continue
            yield (*input_slot, prompts[0])
            for block, prompt in zip(blocks[1:], prompts[1:]):
                yield block, "entry", prompt

    def trainable_tensors(self) -> dict[str, nn.Parameter]:
        tensors = {}
        for tower, prompts in (("text", self.text), ("vision", self.vision)):
            for i, prompt in enumerate(prompts or ()):
                tensors[f"{tower}.{i}.prompt"] = prompt.tokens
        return tensors

    def decays(self, name: str, tensor: torch.Tensor) -> bool:
        return False  # prompts are token embeddings, and embeddings get no weight decay
