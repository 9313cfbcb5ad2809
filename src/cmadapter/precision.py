"""Mixed precision: the autocast context for a run's precision, and frozen weights kept in that dtype.

Under autocast every matmul casts its fp32 weight to bf16/fp16 again at every call, and for a weight that
needs no gradient the cast copy is then kept alive for backward. For a frozen backbone that is pure
overhead: ``store_frozen_weights`` casts those weights once, which gives bitwise the same results under
autocast (autocast would have made exactly these copies), halves the weights' memory and removes the
per-step copies. Trainable tensors stay fp32 masters. Only the weights autocast itself casts are touched
(Linear, convolution, the two projections); LayerNorms, embeddings and the logit scale stay fp32.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .errors import CmadapterError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def autocast(device: torch.device, precision: str):
    if precision not in DTYPES:
        raise CmadapterError(f"unknown precision {precision!r}; use bf16, fp16 or fp32")
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise CmadapterError("fp16 mixed precision needs a GPU; use bf16 (or fp32) on CPU")
    return torch.autocast(device.type, dtype=DTYPES[precision])


def native_bf16(device: str | torch.device = "cpu", cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether ``device`` multiplies bf16 natively: a CUDA GPU that supports it, or a CPU with AMX or AVX512-BF16
    (elsewhere bf16 matmuls are emulated: slower than fp32, nothing gained)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """``auto``: bf16 where ``device`` has it natively (``native_bf16``), else fp32; other names as given."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision not in DTYPES:
        raise CmadapterError(f"unknown precision {precision!r}; use auto, bf16, fp16 or fp32")
    return precision


def store_frozen_weights(clip: nn.Module, dtype: torch.dtype) -> int:
    """Cast the frozen matmul weights of ``clip`` (attached method modules included) to ``dtype``, in place.

    Returns how many tensors were cast. One way: afterwards the model must run under autocast of ``dtype``.
    """
    cast = 0
    tensors = []
    for module in clip.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            tensors += [module.weight, module.bias]
    tensors += [clip.visual.proj, clip.text_projection]
    seen = set()
    for tensor in tensors:
        if tensor is None or id(tensor) in seen or tensor.requires_grad or tensor.dtype == dtype:
            continue
        seen.add(id(tensor))
        tensor.data = tensor.data.to(dtype)
        cast += 1
    return cast


def check_autocast(device: torch.device, dtype: torch.dtype | None) -> None:
    """A model whose frozen weights are stored in ``dtype`` must run under autocast of that dtype."""
    if dtype is None:
        return
    if not torch.is_autocast_enabled(device.type) or torch.get_autocast_dtype(device.type) != dtype:
        raise CmadapterError(
            f"this model keeps its frozen weights in {dtype} (store_frozen_weights); "
            f"run it under torch.autocast({device.type!r}, dtype={dtype})"
        )
