"""The official code's optimizer: Adam without bias correction, weight decay inside the update.

The official Cross-Modal Adapter code trains with CLIP4Clip's ``BertAdam``. For each tensor ``p`` with
gradient ``g``, its group's (already scheduled) learning rate ``lr``, betas ``b1, b2``, ``eps`` and
weight decay ``wd``:

    m = b1·m + (1 − b1)·g
    v = b2·v + (1 − b2)·g²
    update = m / (sqrt(v) + eps) + wd·p
    p = p − lr·update

Unlike ``torch.optim.AdamW`` there is no division by ``1 − b^t``. For a steady gradient and betas
(0.9, 0.98) a step is then ``(1 − 0.9^t) / sqrt(1 − 0.98^t)`` times Adam's: 0.71× at the first, 1.5× around
steps 10 to 20 (the second moment fills more slowly than the first), within 1% of Adam's after ~200.
The decay is AdamW's in exact arithmetic (``p`` loses ``lr·wd·p`` a step; only the rounding differs), so
the bias correction is the whole difference between the two rules. The official optimizer also held its
schedule; here a separate ``LambdaLR`` sets each group's ``lr`` before the step (``warmup-cosine-total``
in ``optim.py`` is the official schedule). Gradient clipping stays outside, as in the official code (its
clipping inside the optimizer is commented out). Our code, written from the formulas above.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from ..errors import CmadapterError


class BertAdam(torch.optim.Optimizer):
    """``foreach``: update a group's tensors with ``torch._foreach_*`` calls (one per operation for many
    tensors, in chunks) rather than one tensor at a time; ``None`` uses it on CPU and CUDA. Both give
    bitwise the same numbers; docs/BENCHMARKS.md has what their speed was measured to be."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise CmadapterError(f"bert-adam needs lr, eps and weight_decay >= 0, got {lr}, {eps}, {weight_decay}")
        if len(betas) != 2 or not all(0.0 <= beta < 1.0 for beta in betas):
            raise CmadapterError(f"bert-adam needs two betas in [0, 1), got {betas}")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "foreach": foreach}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, exp_avgs, exp_avg_sqs = [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue  # as the official code: a tensor without a gradient keeps its moments too
                if p.grad.is_sparse:
                    raise RuntimeError("BertAdam does not take sparse gradients")
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                params.append(p)
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
            if not params:
                continue
            foreach = group["foreach"]
            if foreach is None:
                foreach = _foreach_pays(params)
            beta1, beta2 = group["betas"]
            hyper = {"lr": group["lr"], "eps": group["eps"], "weight_decay": group["weight_decay"]}
            hyper |= {"beta1": beta1, "beta2": beta2}
            if not foreach:
                _single_tensor_update(params, grads, exp_avgs, exp_avg_sqs, **hyper)
                continue
            for part in _chunks(params, FOREACH_CHUNK_ELEMENTS):
                _foreach_update(params[part], grads[part], exp_avgs[part], exp_avg_sqs[part], **hyper)
        return loss


# foreach keeps two temporaries as large as the tensors it updates at once: in chunks of this many
# elements (64 MB in fp32) full fine-tuning's step does not need 1 GB more, and a chunk is still large
# enough that the Python round trips stay few.
FOREACH_CHUNK_ELEMENTS = 1 << 24


def _chunks(tensors: list[torch.Tensor], limit: int) -> list[slice]:
    """Consecutive runs of ``tensors`` of at most ``limit`` elements (a larger tensor is a run alone)."""
    parts, start, count = [], 0, 0
    for i, tensor in enumerate(tensors):
        if count and count + tensor.numel() > limit:
            parts.append(slice(start, i))
            start, count = i, 0
        count += tensor.numel()
    parts.append(slice(start, len(tensors)))
    return parts


def _foreach_pays(params: list[torch.Tensor]) -> bool:
    # On CUDA foreach launches one multi-tensor kernel per operation instead of one per tensor; on CPU it
    # runs the same per-tensor kernels without the Python loop between them (not measurably faster on our
    # shared 2-core machine, never slower), so it is the default on both.
    return all(p.device.type in ("cpu", "cuda") for p in params)


def _single_tensor_update(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs, strict=True):
        m.mul_(beta1).add_(g, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        update = m / v.sqrt().add_(eps)
        if weight_decay:
            update.add_(p, alpha=weight_decay)
        p.add_(update, alpha=-lr)


def _foreach_update(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    # The same operations as _single_tensor_update, in the same order, each over the whole list.
    torch._foreach_mul_(exp_avgs, beta1)
    torch._foreach_add_(exp_avgs, grads, alpha=1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    denominators = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_add_(denominators, eps)
    updates = torch._foreach_div(exp_avgs, denominators)
    del denominators
    if weight_decay:
        torch._foreach_add_(updates, params, alpha=weight_decay)
    torch._foreach_add_(params, updates, alpha=-lr)
