"""Token slots: where a method can change the token sequence of a tower (prompt tuning needs them).

Three places, each an identity in CLIP, so an empty slot computes exactly the plain backbone:

- ``clip.text_input`` (ours, a ``TextInput``): between the text tower's token embedding and its positional
  embedding. It sees the token embeddings [N, L, W] and each caption's pooling position [N] (the end-of-text
  token) and may return a longer sequence with the pooling positions moved to match.
- ``clip.visual.patch_dropout`` (open_clip's): after the image tower's class token and positional embedding,
  before ``ln_pre``; it sees [N, 1 + P, W] and may return more tokens. The class token must stay at
  position 0, where CLIP pools.
- ``block.entry`` of every ``blocks.ResidualBlock`` (ours): the block's input [N, L, W]; deep prompts
  overwrite their tokens here.

A method puts a module into a slot with ``plug`` when it attaches (``methods.base.Method.attach``) and puts
the original back when it detaches; model code never asks which method is active. The adapters' slots are
open_clip's layer scales ``ls_1`` and ``ls_2`` of every block (identities in CLIP; see ``methods.adapter``).
"""

from __future__ import annotations

import torch
from torch import nn


class TextInput(nn.Module):
    """The empty text-input slot: token embeddings and pooling positions pass through unchanged."""

    def forward(self, x: torch.Tensor, pool_positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, pool_positions


def add_text_input(model: nn.Module) -> None:
    """Give an open_clip CLIP the empty ``text_input`` slot (no parameters: state dicts do not change)."""
    if not hasattr(model, "text_input"):
        model.text_input = TextInput()


def is_empty(module: nn.Module) -> bool:
    return isinstance(module, (nn.Identity, TextInput))


def plug(parent: nn.Module, attribute: str, module: nn.Module) -> nn.Module:
    """Put ``module`` into ``parent.attribute``; return what was there, to put back on detach.

    An empty slot is replaced. A slot holding a real module (e.g. open_clip's PatchDropout in a model trained
    with it) keeps it and runs ``module`` after it, so inserted tokens are never dropped.
    """
    original = getattr(parent, attribute)
    setattr(parent, attribute, module if is_empty(original) else nn.Sequential(original, module))
    return original
