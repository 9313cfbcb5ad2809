"""Which frames and which patches drive a caption-video score: the head's frame weights and patch heatmaps.

**Frame weights** are the text-conditioned head's own softmax over a video's frames for a caption (what it
pools); CLIP4Clip's ``meanP`` head weighs valid frames equally, so it gets uniform weights.

**Patch heatmaps** are gradient x input on the image tower's patch tokens as they enter its last block:
for the caption-video logit ``s`` and those tokens ``A[f, p, c]`` (frame f, patch p, channel c), the map is
``relu(sum_c ds/dA[f, p, c] * A[f, p, c])``, one value a patch: the first-order share of the score each
token carries, positive evidence only. The last block is where the class token, all the tower outputs,
reads the patches. ``mode="gradcam"`` gives Grad-CAM instead (Selvaraju et al. 2017: the gradient averaged
over a frame's patches weighs the channels); on the demo's training split it scored no better than a fixed
map of the frame's centre and left 16% of frames with an all-zero map, gradient x input 4% (see README).

What a map shows: which patches push this caption's score up, through the class token's last attention,
given everything the earlier blocks mixed into each token. What it does not show: where the model "looks"
in a causal sense (earlier blocks already mix patches, so a token carries more than its own square), nor
anything finer than one patch; the figures scale each frame's map to its own maximum, and the frame
weights say which frames count.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import CmadapterError
from ..heads import TextConditionedPool


@torch.no_grad()
def frame_weights(model, text: torch.Tensor, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N, M, F] weights of each video's frames for each caption (features as ``encode_*`` returns them)."""
    mask = mask.to(video.device).bool()
    if isinstance(model.head, TextConditionedPool):
        return model.head.frame_weights(text.to(video.device), video, mask).cpu()
    uniform = mask.float() / mask.sum(1, keepdim=True)
    return uniform[None].expand(text.shape[0], -1, -1).cpu()


def patch_heatmaps(
    model,
    captions: Sequence[str],
    frames: torch.Tensor,
    mask: torch.Tensor,
    *,
    block: int = -1,
    mode: str = "grad-x-input",
) -> torch.Tensor:
    """Maps [B, T, g, g] of caption ``i`` against video ``i`` (frames [B, T, 3, H, W], mask [B, T]), ``g``
    patches a side, from the tokens entering vision block ``block``; zero on padded frames. Each logit depends on its own video only, so one backward
    pass through the sum of the B logits gives every video's gradient."""
    if len(captions) != frames.shape[0]:
        raise CmadapterError(f"{len(captions)} captions for {frames.shape[0]} videos: pair them one to one")
    block = model.clip.visual.transformer.resblocks[block]
    grid = model.image_size // model.backbone.architecture.patch_size
    captured: list[torch.Tensor] = []

    def capture(_module, _inputs, output):
        # A leaf of our own: gradients stop here (nothing below is needed) and flow whatever is frozen.
        tokens = output.detach().requires_grad_(True)
        captured.append(tokens)
        return tokens

    was_training = model.training
    model.eval()
    handle = block.entry.register_forward_hook(capture)
    try:
        with torch.enable_grad():
            text = model.encode_text(model.tokenize(list(captions))).detach()
            mask = mask.bool()
            video = model.encode_video(frames, mask)
            logits = model.similarity(text, video, mask).diagonal()
            (tokens,) = captured
            (grad,) = torch.autograd.grad(logits.sum(), tokens)
    finally:
        handle.remove()
        model.train(was_training)
    # Patch tokens are the last g*g (prompt methods insert theirs after the class token).
    acts, grads = tokens.detach()[:, -grid * grid :].float(), grad[:, -grid * grid :].float()
    if mode not in ("grad-x-input", "gradcam"):
        raise CmadapterError(f"unknown heatmap mode {mode!r}; use 'grad-x-input' or 'gradcam'")
    alpha = grads.mean(dim=1, keepdim=True) if mode == "gradcam" else grads
    cams = (alpha * acts).sum(-1).clamp_min(0)  # [valid frames, g*g]
    out = cams.new_zeros(*mask.shape, grid * grid)
    out[mask.to(out.device)] = cams
    return out.view(*mask.shape, grid, grid).cpu()
