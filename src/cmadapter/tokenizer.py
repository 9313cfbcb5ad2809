"""Caption tokenization: open_clip's tokenizer, truncated to a short context (32 tokens by default).

The paper encodes captions with 32 tokens including start and end. CLIP's text tower is causal, so the
end-of-text feature of a caption that fits in 32 tokens is the same with a 77-token context; a longer
caption is cut and ends with the end-of-text token, as open_clip does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .errors import CmadapterError

DEFAULT_CONTEXT_LENGTH = 32


class Tokenizer:
    def __init__(self, backbone_name: str | None = None, context_length: int = DEFAULT_CONTEXT_LENGTH):
        import open_clip

        if context_length < 2:
            raise CmadapterError(f"context_length must be at least 2 (start and end tokens), got {context_length}")
        self.context_length = context_length
        # Models loaded from a file are OpenAI CLIPs: their tokenizer is open_clip's default BPE one.
        self._tokenizer = open_clip.get_tokenizer(backbone_name) if backbone_name else open_clip.SimpleTokenizer()

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise CmadapterError(f"captions must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
        return self._tokenizer(list(texts), context_length=self.context_length)
