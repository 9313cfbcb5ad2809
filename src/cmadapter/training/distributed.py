"""Multi-process training through ``torchrun``: process-group set-up and feature gathering.

Nothing happens at import. ``init_distributed`` is called by the training entry point; without the
variables torchrun sets, it returns a one-process context and needs no launcher. Under a launcher it joins
the process group even with one process (``torchrun --nproc_per_node=1``), so that a one-GPU run goes
through the same collectives (nccl) as an eight-GPU one.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ..errors import ConfigError


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    joined: bool = False  # a member of a process group (under a launcher), even if the only one

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether the collectives run: several processes, or one that a launcher started."""
        return self.world_size > 1 or self.joined


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device=cuda, but no CUDA device is available here; use auto or cpu")
        return torch.device("cuda", local_rank)
    try:
        return torch.device(preference)
    except RuntimeError:
        raise ConfigError(f"train.device must be auto, cpu, cuda or a torch device name, got {preference!r}") from None


_LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")  # what env:// initialisation reads


def init_distributed(device_preference: str = "auto") -> DistributedContext:
    """Join the process group torchrun describes (nccl on GPU, gloo on CPU), or run as one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    launched = world_size > 1 or all(name in os.environ for name in _LAUNCHER_VARIABLES)
    if launched and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return DistributedContext(
        rank=rank, world_size=world_size, local_rank=local_rank, device=device, joined=dist.is_initialized()
    )


def shutdown_distributed(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def gather_with_grad(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Concatenate every process's tensor along dim 0, rank order; gradients flow back to each owner.

    ``torch.distributed.nn.all_gather`` sums the incoming gradients over processes in backward, so
    each process's loss (the same global loss everywhere) contributes; the trainer then averages the
    parameter gradients over processes, which leaves exactly the gradient of the global loss.
    """
    if not context.enabled:
        return tensor
    import warnings

    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # deprecated in favour of a private module; still the public API
        warnings.simplefilter("ignore", FutureWarning)
        parts = all_gather(tensor.contiguous())
    return torch.cat([_ContiguousGrad.apply(part) for part in parts], dim=0)


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous.

    all_gather's backward sends each process its slice of the gradient through gloo's all-to-all,
    which reads raw memory: a strided gradient (as the text-pool head's einsums produce) arrives
    scrambled. Measured: wrong adapter gradients under torchrun without this, exact with it.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def gather_no_grad(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    if not context.enabled:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(context.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def average_gradients(parameters: list[torch.Tensor], context: DistributedContext) -> None:
    """All-reduce the gradients in one flat buffer and divide by the number of processes."""
    if not context.enabled:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= context.world_size
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()
