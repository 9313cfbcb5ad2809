"""Adaptation methods behind one interface (see ``base.Method``), by name."""

from __future__ import annotations

from typing import Any

from ..backbone import Backbone
from ..errors import CmadapterError
from .adaptformer import AdaptFormer
from .base import Method, MethodOptions, make_options
from .coop import CoOp
from .cross_modal import AttentionAdapter, CrossModalAdapter, UniModalAdapter
from .full import FullFineTuning
from .lora import LoRA
from .maple import MaPLe
from .partial import PartialFineTuning
from .projection import ProjectionTuning
from .vl_prompt import VLPrompt
from .vpt import VPT

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (
        CrossModalAdapter,
        UniModalAdapter,
        AttentionAdapter,
        AdaptFormer,
        LoRA,
        CoOp,
        VPT,
        VLPrompt,
        MaPLe,
        PartialFineTuning,
        ProjectionTuning,
        FullFineTuning,
    )
}


def method_class(name: str) -> type[Method]:
    try:
        return METHODS[name]
    except KeyError:
        raise CmadapterError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None


def create_method(name: str, backbone: Backbone, options: dict[str, Any] | None = None) -> Method:
    cls = method_class(name)
    return cls(backbone, make_options(cls.Options, dict(options or {}), method=name))


__all__ = ["METHODS", "Method", "MethodOptions", "create_method", "method_class"]
