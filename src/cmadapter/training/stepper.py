"""One optimisation step over a global batch, shared by the trainer and the training-step benchmark."""

from __future__ import annotations

import torch

from ..config import OptimConfig
from ..errors import CmadapterError
from ..model import RetrievalModel
from ..precision import autocast
from .distributed import DistributedContext, average_gradients, gather_no_grad, gather_with_grad
from .loss import symmetric_infonce
from .optim import build_optimizer, build_scheduler


class Stepper:
    """One optimisation step over a (global) batch: what the trainer runs and the benchmark times."""

    def __init__(
        self,
        model: RetrievalModel,
        optimizer: torch.optim.Optimizer,
        scheduler,
        scaler: torch.amp.GradScaler,
        precision: str,
        context: DistributedContext,
        grad_clip: float | None,
    ):
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.precision, self.context, self.grad_clip = precision, context, grad_clip
        self.params = list(model.trainable_parameters().values())

    def compute_gradients(self, tokens: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor, step: int = 0) -> float:
        """Forward and backward of the global-batch loss; afterwards every process holds the same gradients."""
        device, context, model = self.context.device, self.context, self.model
        tokens = tokens.to(device, non_blocking=True)
        frames = frames.to(device, non_blocking=True)
        mask = mask.to(device, non_blocking=True)
        with autocast(device, self.precision):
            text = model.encode_text(tokens)
            video = model.encode_video(frames, mask)
        # The loss is over the global batch: every process sees every feature, gradients flow home.
        text, video = gather_with_grad(text, context), gather_with_grad(video, context)
        mask = gather_no_grad(mask, context)
        loss = symmetric_infonce(model.similarity(text, video, mask))
        if not torch.isfinite(loss):
            raise CmadapterError(f"loss is {loss.item()} at step {step}; lower the learning rate or use fp32")
        self.scaler.scale(loss).backward()
        average_gradients(self.params, context)
        return loss.item()

    def apply_gradients(self) -> None:
        self.scaler.unscale_(self.optimizer)
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)


def build_stepper(
    model: RetrievalModel,
    optim: OptimConfig,
    precision: str,
    context: DistributedContext,
    total_steps: int | None = None,
) -> Stepper:
    """A Stepper with its optimizer (AdamW over the method's groups), learning-rate schedule over
    ``total_steps`` (none without them: a constant rate) and grad scaler (active for fp16 only)."""
    optimizer = build_optimizer(model.method, optim)
    scheduler = build_scheduler(optimizer, optim, total_steps) if total_steps is not None else None
    scaler = torch.amp.GradScaler(context.device.type, enabled=precision == "fp16")
    return Stepper(model, optimizer, scheduler, scaler, precision, context, optim.grad_clip)
