"""The retrieval model: a frozen CLIP, zero or more adaptation methods (one active), a similarity head.

model = build_model("ViT-B-32-quickgelu", pretrained="openai", method="cross-modal", r=8, shared_dim=16)
tokens = model.tokenize(["a man plays guitar"])   # [N, 32]
t = model.encode_text(tokens)                     # [N, D]
v = model.encode_video(frames, frame_mask)        # frames [B, T, 3, H, W] -> [B, T, D]
logits = model.similarity(t, v, frame_mask)       # [N, B], logit-scaled
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .backbone import Backbone, load_backbone, looks_like_path
from .blocks import run_blocks
from .checkpoint import AdapterCheckpoint, current_versions, load_adapter_checkpoint, save_adapter_checkpoint
from .config import ModelConfig
from .errors import CheckpointError, CmadapterError
from .heads import create_head
from .masks import frame_mask as as_frame_mask
from .methods import Method, create_method
from .precision import check_autocast, store_frozen_weights
from .tokenizer import DEFAULT_CONTEXT_LENGTH, Tokenizer

_UNSET: Any = object()
DEFAULT_ADAPTER = "default"


class RetrievalModel(nn.Module):
    def __init__(
        self,
        backbone: Backbone,
        head: str = "text-pool",
        head_options: dict[str, Any] | None = None,
        context_length: int = DEFAULT_CONTEXT_LENGTH,
    ):
        super().__init__()
        if context_length > backbone.architecture.context_length:
            raise CmadapterError(
                f"context_length {context_length} exceeds the backbone's {backbone.architecture.context_length}"
            )
        self.backbone = backbone
        self.clip = backbone.model
        self.tokenizer = Tokenizer(backbone.name, context_length)
        self.adapters = nn.ModuleDict()
        self._adapter_heads: dict[str, dict[str, Any]] = {}
        self.active_adapter: str | None = None
        self.frozen_weights_dtype: torch.dtype | None = None  # see store_frozen_weights
        self.set_head(head, **(head_options or {}))

    # ---- adapters -------------------------------------------------------------------------------------

    @property
    def method(self) -> Method | None:
        """The active adaptation method, or None for the plain frozen backbone."""
        return self.adapters[self.active_adapter] if self.active_adapter is not None else None

    def add_adapter(self, name: str, method: Method, *, activate: bool = True) -> None:
        if not name or "." in name:
            raise CmadapterError(f"adapter name must be non-empty and contain no '.', got {name!r}")
        if name in self.adapters:
            raise CmadapterError(f"an adapter named {name!r} is already loaded; remove it or pick another name")
        if method.modifies_backbone and len(self.adapters):
            raise CmadapterError(
                f"method {method.name!r} trains backbone tensors in place and cannot share a backbone with "
                "other adapters; build a separate model for it"
            )
        if any(m.modifies_backbone for m in self.adapters.values()):
            raise CmadapterError("this backbone holds in-place trained weights; build a fresh model for more adapters")
        self.adapters[name] = method.to(self.clip.logit_scale.device)
        self._adapter_heads[name] = self.head_spec()
        for tensor in method.trainable_tensors().values():
            tensor.requires_grad_(False)
        if activate:
            self.set_adapter(name)

    def set_adapter(self, name: str | None) -> None:
        """Make ``name`` the active adapter (None: the plain backbone); no backbone reload, no copy."""
        if name is not None and name not in self.adapters:
            raise CmadapterError(f"no adapter named {name!r}; loaded: {', '.join(self.adapters) or 'none'}")
        if self.method is not None:
            self.method.detach(self.backbone)
            for tensor in self.method.trainable_tensors().values():
                tensor.requires_grad_(False)
        self.active_adapter = name
        if self.method is not None:
            self.method.attach(self.backbone)
            for tensor in self.method.trainable_tensors().values():
                tensor.requires_grad_(True)
        # Each adapter scores with the head it was trained with; the plain backbone with its own.
        spec = dict(self._adapter_heads[name] if name is not None else self._backbone_head)
        self.set_head(spec.pop("name"), **spec)

    def remove_adapter(self, name: str) -> None:
        """Forget adapter ``name`` (the plain backbone becomes active if it was); its tensors go with it."""
        if name not in self.adapters:
            raise CmadapterError(f"no adapter named {name!r}; loaded: {', '.join(self.adapters) or 'none'}")
        if name == self.active_adapter:
            self.set_adapter(None)
        del self.adapters[name]
        del self._adapter_heads[name]

    def load_adapter(
        self, adapter: str | os.PathLike | AdapterCheckpoint, name: str | None = None, *, activate: bool = True
    ) -> str:
        """Load an adapter checkpoint (a path or one already read) onto this backbone; returns its name."""
        source = "adapter checkpoint" if isinstance(adapter, AdapterCheckpoint) else str(adapter)
        checkpoint = adapter if isinstance(adapter, AdapterCheckpoint) else load_adapter_checkpoint(adapter)
        diff = checkpoint.architecture.differences(self.backbone.architecture)
        if diff:
            raise CheckpointError(
                f"{source} was trained on a different backbone ({checkpoint.backbone_name or 'from a file'}): "
                + "; ".join(diff)
            )
        # A method is built against the plain backbone (LoRA wraps its Linear layers, not another method's).
        active = self.active_adapter
        self.set_adapter(None)
        try:
            method = create_method(checkpoint.method, self.backbone, checkpoint.options)
            method.load_tensors(checkpoint.tensors, source=source)
        finally:
            self.set_adapter(active)
        if name is None:
            name = DEFAULT_ADAPTER if DEFAULT_ADAPTER not in self.adapters else f"adapter{len(self.adapters)}"
        self.add_adapter(name, method, activate=False)
        self._adapter_heads[name] = dict(checkpoint.head)
        if activate:
            self.set_adapter(name)
        return name

    def adapter_checkpoint(self, name: str | None = None, extra: dict[str, Any] | None = None) -> AdapterCheckpoint:
        name = name or self.active_adapter
        if name is None:
            raise CmadapterError("no adapter to save: the model is the plain backbone")
        method = self.adapters[name]
        description = method.describe()
        return AdapterCheckpoint(
            tensors={k: v.detach() for k, v in method.trainable_tensors().items()},
            method=description["method"],
            options=description["options"],
            head=self._adapter_heads[name],
            architecture=self.backbone.architecture,
            backbone_name=self.backbone.name,
            context_length=self.tokenizer.context_length,
            extra=dict(extra or {}),
            versions=current_versions(),
        )

    def save_adapter(self, path: str | os.PathLike, name: str | None = None, extra: dict[str, Any] | None = None):
        return save_adapter_checkpoint(self.adapter_checkpoint(name, extra), path)

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return dict(self.method.trainable_tensors()) if self.method is not None else {}

    def num_parameters(self) -> dict[str, int]:
        """Trainable and total parameter counts of the model as it computes now (active adapter only)."""
        method = self.method
        added = {id(p) for p in method.parameters()} if method is not None and not method.modifies_backbone else set()
        backbone = sum(p.numel() for p in self.clip.parameters() if id(p) not in added)
        trainable = method.num_trainable() if method is not None else 0
        extra = trainable if added else 0
        return {"trainable_params": trainable, "total_params": backbone + extra, "backbone_params": backbone}

    def store_frozen_weights(self, dtype: torch.dtype) -> int:
        """Keep the frozen matmul weights in the autocast ``dtype`` (see ``precision``): bitwise the same
        results under autocast, less memory, no per-step casts. One way: afterwards run under autocast."""
        if dtype == torch.float32:
            return 0
        count = store_frozen_weights(self.clip, dtype)
        self.frozen_weights_dtype = dtype
        return count

    # ---- head -----------------------------------------------------------------------------------------

    def set_head(self, name: str, **options: Any) -> None:
        """The head of the active adapter (of the plain backbone when none is active)."""
        self.head = create_head(name, **options)
        if self.active_adapter is not None:
            self._adapter_heads[self.active_adapter] = self.head_spec()
        else:
            self._backbone_head = self.head_spec()

    def head_spec(self) -> dict[str, Any]:
        spec = {"name": self.head.name}
        if hasattr(self.head, "temperature"):
            spec["temperature"] = self.head.temperature
        return spec

    # ---- encoding -------------------------------------------------------------------------------------

    @property
    def image_size(self) -> int:
        return self.backbone.architecture.image_size

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp()

    @property
    def device(self) -> torch.device:
        return self.clip.logit_scale.device

    def tokenize(self, texts) -> torch.Tensor:
        return self.tokenizer(texts)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """End-of-text feature after ``ln_final @ text_projection``: [N, L] token ids -> [N, D]."""
        if tokens.ndim != 2 or tokens.dtype not in (torch.int32, torch.int64):
            raise CmadapterError(f"tokens must be an integer tensor [N, L], got {tuple(tokens.shape)} {tokens.dtype}")
        check_autocast(self.device, self.frozen_weights_dtype)
        clip = self.clip
        positions = clip.positional_embedding.shape[0]
        if tokens.shape[1] > positions:
            raise CmadapterError(f"{tokens.shape[1]} tokens exceed the text tower's {positions}")
        tokens = tokens.to(self.device)
        pool = text_pool_positions(tokens, clip.text_pool_type, getattr(clip, "text_eos_id", None))
        # The text-input slot may insert tokens (prompts) before the positional embedding is added.
        x, pool = clip.text_input(clip.token_embedding(tokens), pool)
        if x.shape[1] > positions:
            # The tower is causal: positions after every pooled token change nothing, so they may go.
            needed = int(pool.max()) + 1
            if needed > positions:
                raise CmadapterError(
                    f"the text tower has {positions} positions, but {tokens.shape[1]} caption tokens plus the "
                    f"{x.shape[1] - tokens.shape[1]} tokens its method inserts put an end-of-text token at "
                    f"position {needed - 1}; use a shorter context_length or fewer prompt tokens"
                )
            x = x[:, :positions]
        length = x.shape[1]
        # open_clip's encode_text adds the full 77-position embedding; slice it for shorter contexts.
        x = x + clip.positional_embedding[:length]
        # The last block computes only the pooled token of each caption: nothing reads the others.
        x = run_blocks(clip.transformer, x, attn_mask=clip.attn_mask[:length, :length], rows=pool)
        x = clip.ln_final(x[:, 0])
        return x @ clip.text_projection

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """CLS feature after ``ln_post @ proj`` of each image: [N, 3, H, W] -> [N, D]."""
        check_autocast(self.device, self.frozen_weights_dtype)
        return self.clip.visual(images.to(self.device))

    def encode_video(self, frames: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-frame features: [B, T, 3, H, W] -> [B, T, D]; ``frame_mask`` [B, T] bool or 0/1 (None: all
        frames); padded frames are not encoded (zeros)."""
        frame_mask = check_video_input(frames, frame_mask, self.image_size)
        frames, frame_mask = frames.to(self.device), frame_mask.to(self.device)
        if bool(frame_mask.all()):
            features = self.encode_images(frames.flatten(0, 1))
            return features.view(*frames.shape[:2], -1)
        features = self.encode_images(frames[frame_mask])
        out = features.new_zeros(*frames.shape[:2], features.shape[-1])
        out[frame_mask] = features
        return out

    def similarity(
        self, text: torch.Tensor, video: torch.Tensor, frame_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logit-scaled similarities [N texts, B videos] from the head; ``frame_mask`` bool or 0/1 [B, T]."""
        if frame_mask is None:
            frame_mask = torch.ones(video.shape[:2], dtype=torch.bool, device=video.device)
        elif isinstance(frame_mask, torch.Tensor):
            frame_mask = frame_mask.to(video.device)
        return self.head(text, video, frame_mask, self.logit_scale)

    def forward(self, tokens: torch.Tensor, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Training forward: logits [B, B] of B captions against their B videos."""
        return self.similarity(self.encode_text(tokens), self.encode_video(frames, frame_mask), frame_mask)


def text_pool_positions(tokens: torch.Tensor, pool_type: str, eos_token_id: int | None) -> torch.Tensor:
    """The position of each caption's pooled token [N], as open_clip's ``text_global_pool`` picks it."""
    rows, length = tokens.shape
    if pool_type == "argmax":  # CLIP: the end-of-text token has the largest id
        return tokens.argmax(dim=-1)
    if pool_type == "eos" and eos_token_id is not None:
        return (tokens == eos_token_id).int().argmax(dim=-1)
    if pool_type in ("first", "last"):
        return torch.full((rows,), 0 if pool_type == "first" else length - 1, dtype=torch.long, device=tokens.device)
    raise CmadapterError(f"text pooling {pool_type!r} is not supported (CLIP pools the end-of-text token)")


def check_video_input(frames: torch.Tensor, frame_mask: torch.Tensor | None, image_size: int) -> torch.Tensor:
    """Validate a frame batch and return its boolean mask; errors name the problem and the video rows."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 5 or frames.shape[2] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise CmadapterError(f"frames must be a tensor [B, T, 3, H, W], got {shape}")
    if tuple(frames.shape[-2:]) != (image_size, image_size):
        raise CmadapterError(
            f"frames are {frames.shape[-2]}x{frames.shape[-1]} but the backbone takes {image_size}x{image_size}"
        )
    if not frames.is_floating_point():
        raise CmadapterError(f"frames must be normalised floats, got {frames.dtype}")
    if frame_mask is None:
        return torch.ones(frames.shape[:2], dtype=torch.bool, device=frames.device)
    return as_frame_mask(frame_mask, frames.shape[:2])


def build_model(
    backbone: str | None = None,
    pretrained: str | os.PathLike | None = None,
    method: str | None = _UNSET,
    head: str = _UNSET,
    adapter: str | os.PathLike | None = None,
    *,
    context_length: int | None = None,
    temperature: float | None = None,
    device: str | torch.device = "cpu",
    **method_options: Any,
) -> RetrievalModel:
    """Build a retrieval model.

    ``backbone``: an open_clip model name; ``pretrained``: None (random), "openai" (or another open_clip
    tag), or a local OpenAI-layout weights file whose architecture is read off its tensors.
    ``method``: an adaptation method ("cross-modal" by default; None for the plain backbone) with its
    options as keywords (``r=8, shared_dim=16``). ``adapter``: an adapter checkpoint; method, options,
    head and context length then come from it (and the backbone name too, when not given).
    """
    checkpoint = load_adapter_checkpoint(adapter) if adapter is not None else None
    if checkpoint is not None:
        if method is not _UNSET and method != checkpoint.method:
            raise CmadapterError(f"{adapter} holds a {checkpoint.method!r} adapter, not {method!r}")
        if method_options:
            raise CmadapterError(f"method options come from {adapter}; do not pass {sorted(method_options)}")
        if backbone is None and not (pretrained is not None and looks_like_path(pretrained)):
            backbone = checkpoint.backbone_name
    loaded = load_backbone(backbone, pretrained, device=device)
    head_name = checkpoint.head["name"] if checkpoint is not None and head is _UNSET else head
    head_name = "text-pool" if head_name is _UNSET else head_name
    head_options = {} if temperature is None else {"temperature": temperature}
    if checkpoint is not None and head is _UNSET:
        head_options = {k: v for k, v in checkpoint.head.items() if k != "name"} | head_options
    if context_length is None:
        context_length = checkpoint.context_length if checkpoint is not None else DEFAULT_CONTEXT_LENGTH
    model = RetrievalModel(loaded, head=head_name, head_options=head_options, context_length=context_length)
    if checkpoint is not None:
        model.load_adapter(checkpoint)
        if head is not _UNSET or temperature is not None:
            model.set_head(head_name, **head_options)
    else:
        method = "cross-modal" if method is _UNSET else method
        if method is not None:
            model.add_adapter(DEFAULT_ADAPTER, create_method(method, loaded, method_options))
        elif method_options:
            raise CmadapterError(f"options {sorted(method_options)} given without a method")
    return model.to(device)


def build_model_from_config(
    config: ModelConfig,
    device: str | torch.device = "cpu",
    *,
    adapter: str | os.PathLike | None = None,
    method: str | None = _UNSET,
) -> RetrievalModel:
    """The model a config's ``model`` section describes; ``method`` replaces its method (None: the plain
    backbone). With ``adapter`` the method, head and context length come from that checkpoint instead."""
    if adapter is not None:
        return build_model(config.backbone, config.pretrained, adapter=adapter, device=device)
    method = config.method if method is _UNSET else method
    return build_model(
        config.backbone,
        config.pretrained,
        method=method,
        head=config.head,
        context_length=config.context_length,
        temperature=config.temperature if config.head == "text-pool" else None,
        device=device,
        **(config.method_options if method is not None else {}),
    )
