"""A tiny CLIP "pretrained" on still synthetic frames, saved as an OpenAI-layout weights file.

The offline demo cannot download OpenAI's CLIP, so it makes its own: a small open_clip CLIP trained
contrastively on still frames of the synthetic dataset's kind, each showing one or two objects, against
captions of what is visible ("a photo of a red square and a blue circle"). It learns what objects look
like, never what a whole video contains (three objects, one after another, described in the videos'
own words); closing that gap is the video fine-tuning's job. The file is a plain ``torch.save`` of the
model's state dict, whose keys are OpenAI's, so it loads through ``build_model(pretrained=PATH)`` like
real CLIP weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..architecture import Architecture
from ..backbone import build_clip
from ..config import OptimConfig
from ..errors import CmadapterError
from ..files import atomic_path, atomic_write_text
from ..tokenizer import Tokenizer
from ..training.optim import build_scheduler
from ..video.preprocess import normalize_
from .synthetic import (
    GENERATOR_VERSION,
    STILL_TEMPLATES,
    SyntheticConfig,
    appearance_caption,
    object_frames,
    object_phrase,
)

# Small enough to pretrain in about half a minute on two idle CPU cores; widths are multiples of 64 because
# the loader infers OpenAI's 64-wide heads; the vocabulary is the real BPE one, so the real tokenizer works.
DEMO_ARCHITECTURE = Architecture(
    embed_dim=64,
    image_size=64,
    patch_size=16,
    vision_width=128,
    vision_layers=3,
    vision_heads=2,
    text_width=128,
    text_layers=3,
    text_heads=2,
    context_length=77,
    vocab_size=49408,
    activation="quick_gelu",  # what the loader assumes for a file without a model name, as OpenAI's
)


@dataclass(frozen=True)
class PretrainConfig:
    """How the tiny CLIP is trained; ``quick()`` is the reduced preset."""

    architecture: Architecture = DEMO_ARCHITECTURE
    # Short on purpose: in our runs (benchmarks/synthetic_task.py) a backbone pretrained for 250 steps left
    # the adapters more to gain than one trained for 400 or 700 (adapted R@1 52 vs 42 vs 27), though it
    # tells shapes apart less well.
    steps: int = 250
    batch_size: int = 64  # small batches, many steps: shape recognition came sooner per second than at 128
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup_steps: int = 25
    num_frames: int = 8192  # rendered once and sampled from, so steps cost no drawing
    # Objects per still frame (1 or 2). Two teach the text tower captions that list several things; with
    # one only, the adapters had to learn that from scratch and gained far less (adapted R@1 ~20 vs ~45).
    max_objects: int = 2
    text_context: int = 24  # tokens per caption while training; still-frame captions are at most ~16
    init_logit_scale: float = 1 / 0.07  # CLIP's; learned from there, capped at 100 as CLIP does
    eval_frames: int = 512  # held-out frames for the appearance accuracy reported at the end
    # Mean norm of the raw image and text features in the saved model (None: as trained). The contrastive
    # loss only sees directions, so this is free; it matters to the paper's head, which pools frames by a
    # softmax of raw dot products / 5, a temperature set for OpenAI CLIP's feature norms.
    feature_norm: float | None = 1.5
    seed: int = 0

    @classmethod
    def quick(cls, **overrides: Any) -> PretrainConfig:
        return cls(**({"steps": 150, "num_frames": 4096, "warmup_steps": 15} | overrides))

    def __post_init__(self) -> None:
        if not 1 <= self.max_objects <= 2:
            raise CmadapterError("max_objects must be 1 or 2")
        if self.steps < 1 or self.batch_size < 2 or self.num_frames < self.batch_size:
            raise CmadapterError("PretrainConfig needs steps >= 1, batch_size >= 2 and num_frames >= batch_size")
        if not 2 <= self.text_context <= self.architecture.context_length:
            raise CmadapterError(f"text_context must be in 2..{self.architecture.context_length}")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclass
class PretrainResult:
    path: Path
    architecture: Architecture
    losses: list[float] = field(default_factory=list)  # per step; empty when an existing file was reused
    frame_accuracy: float = float("nan")  # held-out frames classified among all object captions
    logit_scale: float = float("nan")
    seconds: float = 0.0
    reused: bool = False
    sha256: str | None = None  # of the file as saved (recorded beside it); None for a record older than that


def pretrain(
    path: str | os.PathLike,
    config: PretrainConfig | None = None,
    synthetic: SyntheticConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> PretrainResult:
    """Train a tiny CLIP on still frames drawn like ``synthetic``'s videos and save it to ``path``.

    A file already trained with the same settings (recorded beside it in ``<path>.json``) is reused; any
    other file at ``path`` is an error unless ``overwrite``.
    """
    config = config or PretrainConfig()
    synthetic = synthetic or SyntheticConfig()
    arch = config.architecture
    if arch.image_size != synthetic.frame_size:
        raise CmadapterError(
            f"the architecture takes {arch.image_size}px images but the synthetic frames are "
            f"{synthetic.frame_size}px; make them equal"
        )
    path = Path(path)
    settings = {"pretrain": config.to_dict(), "synthetic": _appearance_settings(synthetic)}
    if path.exists() and not overwrite:
        return _reuse(path, settings, arch)

    start = time.perf_counter()
    tokenizer = Tokenizer(context_length=config.text_context)
    caption_tokens = tokenizer([object_phrase(o) for o in synthetic.objects])  # one per object, for eval
    model = initial_model(config)
    losses = train_on_stills(model, config, synthetic, tokenizer, progress=progress)
    accuracy = finish(model, config, synthetic, caption_tokens)
    logit_scale = model.logit_scale.exp().item()
    summary = {"settings": settings, "frame_accuracy": accuracy, "logit_scale": logit_scale, "final_loss": losses[-1]}
    digest = _save(model, path, summary)
    return PretrainResult(
        path=path,
        architecture=arch,
        losses=losses,
        frame_accuracy=accuracy,
        logit_scale=logit_scale,
        seconds=time.perf_counter() - start,
        sha256=digest,
    )


def _record(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _reuse(path: Path, settings: dict[str, Any], arch: Architecture) -> PretrainResult:
    """The result of an earlier run that saved ``path`` with these settings; never a file we cannot tell is ours
    (it could be real CLIP weights)."""
    record = _record(path)
    stored = json.loads(record.read_text()) if record.is_file() else {}
    if stored.get("settings") != settings:
        raise CmadapterError(
            f"{path} exists but was not pretrained with these settings (see {record}); "
            "pass overwrite=True or choose another path"
        )
    return PretrainResult(
        path=path,
        architecture=arch,
        frame_accuracy=stored["frame_accuracy"],
        logit_scale=stored["logit_scale"],
        reused=True,
        sha256=stored.get("sha256"),
    )


def initial_model(config: PretrainConfig) -> nn.Module:
    """A randomly initialised CLIP from ``config.seed``, ready to train, with CLIP's initial temperature."""
    # Our own RNG stream for the weight init, leaving the caller's global torch RNG as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_clip(config.architecture)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(config.init_logit_scale))
    # The token embedding stays as initialised: random rows are already distinct enough for the few words
    # the captions use, and AdamW then skips its 49408 rows (6.3M of the demo model's 7.6M parameters).
    model.token_embedding.weight.requires_grad_(False)
    return model.train()


def train_on_stills(
    model: nn.Module, config: PretrainConfig, synthetic: SyntheticConfig, tokenizer: Tokenizer, *, progress: bool
) -> list[float]:
    """``config.steps`` contrastive steps on random batches of still frames; the loss of each step."""
    from tqdm.auto import tqdm

    frames, captions, sets = still_frames(synthetic, config.num_frames, offset=0, max_objects=config.max_objects)
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.98), eps=1e-6)
    schedule = build_scheduler(optimizer, _schedule(config), config.steps)
    losses: list[float] = []
    bar = tqdm(range(config.steps), desc="pretrain tiny CLIP", unit="step", disable=not progress)
    for _ in bar:
        batch = rng.choice(config.num_frames, config.batch_size, replace=False)
        batch_captions = [captions[i] for i in batch]
        loss = _contrastive_step(model, frames[batch], batch_captions, [sets[i] for i in batch], tokenizer)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        with torch.no_grad():  # CLIP's cap: a larger scale makes the loss unstable
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    return losses


def _schedule(config: PretrainConfig) -> OptimConfig:
    """The library's warm-up then cosine over ``config.steps``, warming up for ``config.warmup_steps``."""
    # The library states warm-up as a fraction of all steps and takes int(fraction * steps) of them; half a
    # step more makes that product land on warmup_steps exactly, whatever the rounding of the division.
    return OptimConfig(warmup=(config.warmup_steps + 0.5) / config.steps, schedule="cosine")


def finish(model: nn.Module, config: PretrainConfig, synthetic: SyntheticConfig, caption_tokens: torch.Tensor) -> float:
    """Set the feature norm and measure the appearance accuracy on held-out frames (past the training ones,
    one object each, classified among all objects' names)."""
    model.eval()
    eval_frames, _, eval_sets = still_frames(synthetic, config.eval_frames, offset=config.num_frames)
    index = {o: i for i, o in enumerate(synthetic.objects)}
    eval_labels = np.asarray([index[next(iter(objects))] for objects in eval_sets])
    if config.feature_norm is not None:
        set_feature_norm(model, eval_frames, caption_tokens, config.feature_norm)
    return appearance_accuracy(model, eval_frames, eval_labels, caption_tokens)


def _save(model: nn.Module, path: Path, summary: dict[str, Any]) -> str:
    """Write the weights and their record; returns the file's SHA-256, which the record keeps: a later
    reader can tell that training adapters on the file left it as pretraining wrote it."""
    with atomic_path(path) as temporary:  # never a half-written weights file under the real name
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, temporary)
        digest = hashlib.sha256(Path(temporary).read_bytes()).hexdigest()
    atomic_write_text(_record(path), json.dumps(summary | {"sha256": digest}, indent=1, sort_keys=True) + "\n")
    return digest


def _appearance_settings(synthetic: SyntheticConfig) -> dict[str, Any]:
    # What still frames depend on; dataset sizes, captions and video timing do not matter to them.
    keys = ("frame_size", "colours", "shapes", "object_radius", "position_jitter", "seed")
    return {k: v for k, v in synthetic.to_dict().items() if k in keys} | {"generator_version": GENERATOR_VERSION}


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 RGB [..., H, W, 3] -> CLIP-normalised float [..., 3, H, W]."""
    return normalize_(torch.from_numpy(np.ascontiguousarray(frames)).float().movedim(-1, -3))


def still_frames(
    synthetic: SyntheticConfig, count: int, *, offset: int = 0, max_objects: int = 1
) -> tuple[torch.Tensor, list[str], list[frozenset[tuple[str, str]]]]:
    """Normalised still frames [N, 3, H, W], a caption of each, and the set of objects each shows."""
    images, sets = [], []
    for image, objects in object_frames(synthetic, count, offset=offset, max_objects=max_objects):
        images.append(image)
        sets.append(objects)
    # Its own stream for the caption wording, so the frames are those of `object_frames` whatever it is.
    templates = np.random.default_rng([synthetic.seed, offset, count]).integers(len(STILL_TEMPLATES), size=count)
    captions = [appearance_caption(objects, STILL_TEMPLATES[t]) for objects, t in zip(sets, templates)]
    return frames_to_tensor(np.stack(images)), captions, [frozenset(o) for o in sets]


def encode_text(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's text encoding on a context shorter than 77 (the tower is causal: same features)."""
    from open_clip.transformer import text_global_pool

    length = tokens.shape[1]
    x = model.token_embedding(tokens) + model.positional_embedding[:length]
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    return x @ model.text_projection


def _contrastive_step(
    model: nn.Module,
    images: torch.Tensor,
    captions: Sequence[str],
    sets: Sequence[frozenset[tuple[str, str]]],
    tokenizer: Tokenizer,
) -> torch.Tensor:
    """Symmetric InfoNCE between a batch of frames and the distinct captions among them.

    A batch holds several frames of the same objects, so a plain B x B InfoNCE would push apart matching
    pairs. Each distinct caption is encoded once, and a frame matches every caption that names the same
    set of objects (in any order or wording): targets spread evenly over all matches, both directions.
    """
    distinct = sorted(set(captions))
    caption_sets = dict(zip(captions, sets))
    matches = torch.tensor([[objects == caption_sets[c] for c in distinct] for objects in sets], dtype=torch.float32)
    image_features = F.normalize(model.visual(images), dim=-1)
    text_features = F.normalize(encode_text(model, tokenizer(distinct)), dim=-1)
    logits = model.logit_scale.exp() * image_features @ text_features.T  # [B frames, C captions]
    image_to_text = F.cross_entropy(logits, matches / matches.sum(1, keepdim=True))
    text_to_image = F.cross_entropy(logits.T, matches.T / matches.T.sum(1, keepdim=True))
    return (image_to_text + text_to_image) / 2


@torch.no_grad()
def appearance_accuracy(
    model: nn.Module, images: torch.Tensor, labels: Sequence[int] | np.ndarray, caption_tokens: torch.Tensor
) -> float:
    """Fraction of frames whose most similar caption, among all objects', names what they show."""
    image_features = torch.cat([model.visual(chunk) for chunk in images.split(256)])
    text_features = encode_text(model, caption_tokens)
    predicted = (F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T).argmax(1)
    return float((predicted.numpy() == np.asarray(labels)).mean())


@torch.no_grad()
def set_feature_norm(model: nn.Module, images: torch.Tensor, caption_tokens: torch.Tensor, norm: float) -> None:
    """Scale both projections so image and text features have mean norm ``norm`` (directions unchanged)."""
    image_norm = torch.cat([model.visual(chunk) for chunk in images.split(256)]).norm(dim=-1).mean()
    text_norm = encode_text(model, caption_tokens).norm(dim=-1).mean()
    model.visual.proj.mul_(norm / image_norm)
    model.text_projection.mul_(norm / text_norm)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # As open_clip's training: no decay on gains, biases, embeddings' scale, or the logit scale.
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        exclude = parameter.ndim < 2 or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if exclude else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
