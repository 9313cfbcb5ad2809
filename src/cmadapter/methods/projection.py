"""Projection tuning: only the two output projections, ``visual.proj`` and ``text_projection``.

655,360 parameters for ViT-B/32 (768x512 + 512x512): a linear re-mapping of both towers' features into
the joint space, the cheapest baseline that still adapts both modalities. Not in the paper.

These are small, freshly adapted matrices rather than a deep pretrained stack, so by default they train at
the trainer's own learning rate (``backbone_lr_scale = 1``, the rule in ``backbone_tuning``).
"""

from __future__ import annotations

import dataclasses

from ..backbone import Backbone
from .backbone_tuning import BackboneTuning
from .base import MethodOptions
from .full import check_lr_scale

PROJECTIONS = ("visual.proj", "text_projection")


@dataclasses.dataclass
class ProjectionOptions(MethodOptions):
    backbone_lr_scale: float = 1.0

    def validate(self, backbone: Backbone) -> None:
        check_lr_scale(self.backbone_lr_scale)


class ProjectionTuning(BackboneTuning):
    name = "projection"
    Options = ProjectionOptions

    def selects(self, name: str, backbone: Backbone) -> bool:
        return name in PROJECTIONS
