"""Residual blocks for a frozen backbone, computing every matmul on 2-D rows.

open_clip's block runs its Linear layers on 3-D activations. With the weights frozen and the input
needing a gradient (every block below an adapter), autograd computes those input gradients as a batched
matmul against an expanded copy of the weight: on CPU that ``copy_`` and ``bmm`` dominated the profile of an
adapter step (docs/BENCHMARKS.md). Flattening the activations to [rows, width] first turns each of them into
one plain ``mm``.

``flatten_blocks`` swaps each open_clip ``ResidualAttentionBlock`` of a model for a ``ResidualBlock``
that holds the same parameter tensors (no copy) under the same sub-module names (``ln_1``, ``attn``,
``ls_1``, ``ln_2``, ``mlp``, ``ls_2``, plus an empty ``entry`` slot); the attention's packed projection
becomes ``attn.in_proj``, a plain ``nn.Linear``, so methods such as LoRA can wrap it like any other layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .errors import CmadapterError


class _ScoresAttention(torch.autograd.Function):
    """Softmax attention as plain batched matmuls, keeping only q, k, v and the log-sum-exp for backward
    and recomputing the probabilities there (flash attention also keeps the output, for the row sums of
    ``grad * out``; those equal the row sums of ``probs * (grad v^T)``, which backward computes anyway, so
    the output is not kept).

    For CLIP's short sequences (50 image tokens, 32 text tokens) on CPU, PyTorch's flash-attention backward
    kernel was several times slower than its forward, a large share of a training step; this is faster for
    forward and backward together, with the same memory (figures in docs/BENCHMARKS.md).
    The matmuls run in the inputs' dtype (bf16 under autocast, as autocast's own math attention would), the
    softmax and its statistics in fp32. GPUs keep PyTorch's kernels.
    """

    @staticmethod
    def forward(ctx, q, k, v, mask):
        scale = q.shape[-1] ** -0.5
        with torch.autocast(q.device.type, enabled=False):
            scores = _scores(q, k, mask, scale)
            lse = torch.logsumexp(scores, dim=-1, keepdim=True)
            out = torch.matmul(scores.sub_(lse).exp_().to(v.dtype), v)
        ctx.save_for_backward(q, k, v, lse, mask)
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, lse, mask = ctx.saved_tensors
        scale = q.shape[-1] ** -0.5
        with torch.autocast(q.device.type, enabled=False):
            grad = grad.to(v.dtype).contiguous()  # arrives as a strided view of out_proj's input gradient
            probs = _scores(q, k, mask, scale).sub_(lse).exp_()
            grad_v = torch.matmul(probs.to(v.dtype).transpose(-1, -2), grad)
            grad_probs = torch.matmul(grad, v.transpose(-1, -2)).to(lse.dtype)
            rowdot = (grad_probs * probs).sum(-1, keepdim=True)  # = rowsum(grad * out), without out
            grad_scores = grad_probs.sub_(rowdot).mul_(probs).mul_(scale).to(q.dtype)
            grad_q = torch.matmul(grad_scores, k)
            grad_k = torch.matmul(grad_scores.transpose(-1, -2), q)
        return grad_q, grad_k, grad_v, None


def _scores(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    """Scaled (and masked) q k^T, in fp32 (or wider)."""
    dtype = torch.float32 if q.dtype in (torch.bfloat16, torch.float16) else q.dtype
    scores = torch.matmul(q, k.transpose(-1, -2)).to(dtype).mul_(scale)
    return scores if mask is None else scores.add_(mask.to(dtype))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v over [B, H, L, d]."""
    if q.device.type == "cpu":
        # Contiguous once here: the heads are strided views into the packed projection, and each batched
        # matmul below would otherwise copy them again, in forward and in backward.
        return _ScoresAttention.apply(q.contiguous(), k.contiguous(), v.contiguous(), mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask.to(q.dtype))


class Attention(nn.Module):
    """Multi-head self-attention with packed q/k/v, numerically nn.MultiheadAttention's computation."""

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        if width % num_heads:
            raise CmadapterError(f"attention width {width} is not divisible by {num_heads} heads")
        self.width = width
        self.num_heads = num_heads
        self.in_proj = nn.Linear(width, 3 * width)
        self.out_proj = nn.Linear(width, width)

    @classmethod
    def adopt(cls, mha: nn.MultiheadAttention) -> Attention:
        """Take over the tensors of an nn.MultiheadAttention (shared, not copied)."""
        if not mha._qkv_same_embed_dim or mha.in_proj_bias is None or mha.bias_k is not None:
            raise CmadapterError("only packed q/k/v attention with biases (as in CLIP) is supported")
        attention = cls.__new__(cls)
        nn.Module.__init__(attention)
        attention.width, attention.num_heads = mha.embed_dim, mha.num_heads
        attention.in_proj = nn.Linear(mha.embed_dim, 3 * mha.embed_dim, device="meta")
        attention.in_proj.weight, attention.in_proj.bias = mha.in_proj_weight, mha.in_proj_bias
        attention.out_proj = nn.Linear(mha.embed_dim, mha.embed_dim, device="meta")
        attention.out_proj.weight, attention.out_proj.bias = mha.out_proj.weight, mha.out_proj.bias
        return attention

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attention of every token [B, L, W] -> [B, L, W]; with ``rows`` (a position per sequence, [B]) of
        that token alone, over all keys -> [B, 1, W]."""
        batch, length, width = x.shape
        heads = self.num_heads
        qkv = self.in_proj(x.reshape(-1, width))  # [B*L, 3W]
        qkv = qkv.view(batch, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        # unbind, not qkv[0..2]: each select's backward would allocate a zero tensor as large as all of qkv.
        q, k, v = qkv.unbind(0)
        if rows is not None:
            q = q[torch.arange(batch, device=x.device), :, rows].unsqueeze(2)  # [B, H, 1, hd]
            if attn_mask is not None:
                if attn_mask.dim() != 2:
                    raise CmadapterError("attention of single rows supports a [L, L] mask only")
                attn_mask = attn_mask[rows].view(batch, 1, 1, length)
        out = attention(q, k, v, attn_mask)  # [B, H, Lq, hd]
        rows = out.shape[2]
        out = self.out_proj(out.transpose(1, 2).reshape(-1, width))
        return out.view(batch, rows, width)


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """CLIP's activation, ``x * sigmoid(1.702 x)``, as autograd composes it."""
    return x * torch.sigmoid(1.702 * x)


class _QuickGELUFunction(torch.autograd.Function):
    """``x * sigmoid(1.702 x)`` keeping only ``1.702 x`` for backward (autograd would keep ``x`` and the
    sigmoid): ``x * sigmoid(1.702 x) = silu(1.702 x) / 1.702``, so the gradient is ``silu``'s at ``1.702 x``,
    one fused kernel."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        scaled = 1.702 * x
        ctx.save_for_backward(scaled)
        return torch.sigmoid(scaled).mul_(x)  # into the sigmoid's buffer: one tensor of this size fewer

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (scaled,) = ctx.saved_tensors
        return torch.ops.aten.silu_backward(grad, scaled)


class QuickGELU(nn.Module):
    """CLIP's activation with half the saved activations: the MLP hidden state is the largest tensor a
    block keeps for backward, and the sigmoid is cheap to recompute. Same forward numbers as open_clip's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _QuickGELUFunction.apply(x)
        return quick_gelu(x)


class ResidualBlock(nn.Module):
    """``x + ls_1(attn(ln_1(x)))`` then ``x + ls_2(mlp(ln_2(x)))``, as open_clip, on 2-D rows.

    ``entry`` (identity) sees the block's input first: a slot for methods that change tokens between blocks
    (deep prompts; see ``slots``). Whatever it holds must keep the sequence length: the attention mask is
    fixed for the whole tower.

    Given ``rows`` (a position per sequence) the block returns only that token of each sequence, [B, 1, W],
    attending over all of them: the last block of a tower that pools one token need not compute the
    others, whose outputs nothing reads. Everything after attention works per token, so the pooled token's
    result is the same; this saves the MLP and output projection of every other token (docs/BENCHMARKS.md
    has what that saves). ``first_token_only`` does this for the first token by default (the image
    tower's last block, which pools its class token); ``run_blocks`` passes the text tower's positions.
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        self.first_token_only = False
        self.entry = nn.Identity()
        self.ln_1 = block.ln_1
        self.attn = block.attn if isinstance(block.attn, Attention) else Attention.adopt(block.attn)
        self.ls_1 = block.ls_1
        self.ln_2 = block.ln_2
        self.mlp = block.mlp
        if type(self.mlp.gelu).__name__ == "QuickGELU" and not isinstance(self.mlp.gelu, QuickGELU):
            self.mlp.gelu = QuickGELU()
        self.ls_2 = block.ls_2

    def forward(
        self,
        q_x: torch.Tensor,
        k_x: torch.Tensor | None = None,
        v_x: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # Same signature as open_clip's block (plus `rows`): its Transformer and its checkpointing call us.
        if k_x is not None or v_x is not None:
            raise CmadapterError("cross-attention blocks are not supported")
        x = self.entry(q_x)
        if rows is None and self.first_token_only:
            rows = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        if rows is None:
            x = x + self.ls_1(self.attn(self.ln_1(x), attn_mask=attn_mask))
        else:
            picked = x[torch.arange(x.shape[0], device=x.device), rows].unsqueeze(1)
            x = picked + self.ls_1(self.attn(self.ln_1(x), attn_mask=attn_mask, rows=rows))
        rows = self.ln_2(x).reshape(-1, x.shape[-1])
        return x + self.ls_2(self.mlp(rows).view(x.shape))


def flatten_blocks(model: nn.Module) -> None:
    """Replace the residual blocks of both towers of an open_clip CLIP in place; the image tower's last
    block computes only the class token where that is all the tower reads of it."""
    from open_clip.transformer import ResidualAttentionBlock

    for transformer in (model.visual.transformer, model.transformer):
        if not getattr(transformer, "batch_first", True):
            raise CmadapterError("only batch-first transformers are supported (open_clip's default)")
        for i, block in enumerate(transformer.resblocks):
            if isinstance(block, ResidualBlock):
                continue
            if type(block) is not ResidualAttentionBlock:
                raise CmadapterError(
                    f"unsupported block type {type(block).__name__}; cmadapter supports CLIP's standard blocks"
                )
            transformer.resblocks[i] = ResidualBlock(block)
    visual = model.visual
    pools_class_token = (
        getattr(visual, "pool_type", None) == "tok"
        and getattr(visual, "attn_pool", None) is None
        and not getattr(visual, "output_tokens", False)
    )
    visual.transformer.resblocks[-1].first_token_only = pools_class_token


def run_blocks(
    transformer: nn.Module, x: torch.Tensor, attn_mask: torch.Tensor | None = None, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """open_clip's ``Transformer.forward`` over flattened blocks (gradient checkpointing included), its last
    block computing only the token at ``rows`` of each sequence ([B, L, W] -> [B, 1, W]) when given."""
    blocks = transformer.resblocks
    for i, block in enumerate(blocks):
        block_rows = rows if i == len(blocks) - 1 else None
        if transformer.grad_checkpointing:
            x = checkpoint(block, x, None, None, attn_mask, block_rows, use_reentrant=False)
        else:
            x = block(x, attn_mask=attn_mask, rows=block_rows)
    return x


def openai_key(name: str) -> str:
    """The OpenAI/open_clip state-dict name of a tensor of a flattened model."""
    return name.replace(".attn.in_proj.weight", ".attn.in_proj_weight").replace(
        ".attn.in_proj.bias", ".attn.in_proj_bias"
    )
