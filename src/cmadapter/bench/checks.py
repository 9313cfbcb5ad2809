"""Argument checks shared by the benchmarks: what a run would fail on, found before any model is built.

``--dry-run`` runs only these, so a machine without a GPU can check every command a GPU run will use
(benchmarks/gpu_check.sh --dry-run).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CmadapterError
from ..precision import DTYPES


def check_settings(
    *,
    backbone: str | None,
    pretrained: str | None,
    methods: list[str],
    options: dict,
    precisions: list[str],
    device: str,
    counts: dict[str, int],
) -> None:
    """Raise a one-line CmadapterError for the first bad setting (``counts``: name -> value that must be >= 1)."""
    from ..backbone import check_known_name, looks_like_path
    from ..methods import method_class
    from ..methods.base import make_options

    for name, value in counts.items():
        if value < 1:
            raise CmadapterError(f"{name} must be at least 1, got {value}")
    if not methods:
        raise CmadapterError("no method given")
    for precision in precisions:
        if precision not in DTYPES:
            raise CmadapterError(f"unknown precision {precision!r}; use bf16, fp16 or fp32")
    if device != "auto":
        try:
            kind = torch.device(device).type
        except RuntimeError:
            raise CmadapterError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
        if kind == "cpu" and "fp16" in precisions:
            raise CmadapterError("fp16 mixed precision needs a GPU; use bf16 (or fp32) on CPU")
    for method in methods:  # the options go to every method, as in the run
        make_options(method_class(method).Options, dict(options), method=method)
    if pretrained is not None and looks_like_path(pretrained):
        if not Path(pretrained).is_file():
            raise CmadapterError(f"weights file {pretrained} does not exist")
    elif backbone is None:
        raise CmadapterError("give a backbone name or a weights file")
    else:
        check_known_name(backbone)
