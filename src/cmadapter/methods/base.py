"""The interface every adaptation method implements.

A method is built against a backbone (it reads tensor shapes off it), owns its trainable tensors under
stable names, and attaches itself to the backbone (puts its modules into the backbone's slots or in place
of its layers, as ``placements`` lists them) or detaches (puts back what was there, which this base class
keeps for every method, as peft's ``BaseTuner`` does). Checkpoints store ``trainable_tensors()`` and
``describe()`` and nothing else.
"""

from __future__ import annotations

import dataclasses
import typing
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ..backbone import Backbone
from ..errors import CheckpointError, CmadapterError
from ..slots import plug


@dataclasses.dataclass
class MethodOptions:
    """Options of a method; each method subclasses this with its own fields and paper defaults."""

    def validate(self, backbone: Backbone) -> None:  # pragma: no cover - overridden where needed
        pass


class Method(nn.Module, ABC):
    name: ClassVar[str]
    Options: ClassVar[type[MethodOptions]]
    # True for methods that train backbone tensors in place (full, partial, projection): those cannot
    # be switched on a shared backbone without reloading it.
    modifies_backbone: ClassVar[bool] = False

    # How ``attach`` places a module: "slot" puts it into an identity slot (``slots.plug``: after what a
    # non-empty slot already holds); "replace" puts it where the backbone's own layer was.
    placement: ClassVar[Literal["slot", "replace"]] = "slot"

    def __init__(self, backbone: Backbone, options: MethodOptions):
        super().__init__()
        options.validate(backbone)
        self.options = options
        self.attached = False
        # What attach displaced, as (parent, attribute, original), for detach to put back. A plain list,
        # not registered: the originals belong to the backbone.
        self._originals: list[tuple[nn.Module, str, nn.Module]] = []

    def placements(self, backbone: Backbone) -> Iterator[tuple[nn.Module, str, nn.Module]]:
        """Where this method's modules go: (parent, attribute, module), in order."""
        return iter(())

    def attach(self, backbone: Backbone) -> None:
        """Put this method's modules into the backbone; afterwards the backbone computes the adapted model."""
        if self.attached:
            raise RuntimeError(f"method {self.name!r} is already attached")
        for parent, attribute, module in self.placements(backbone):
            if self.placement == "slot":
                original = plug(parent, attribute, module)
            else:
                original = getattr(parent, attribute)
                setattr(parent, attribute, module)
            self._originals.append((parent, attribute, original))
        self.attached = True

    def detach(self, backbone: Backbone) -> None:
        """Undo ``attach``: the backbone computes the plain model again."""
        for parent, attribute, original in reversed(self._originals):
            setattr(parent, attribute, original)
        self._originals.clear()
        self.attached = False

    @abstractmethod
    def trainable_tensors(self) -> dict[str, nn.Parameter]:
        """Every tensor this method trains, each once, under a stable name used in checkpoints."""

    # Parts always listed in the breakdown, even when empty (e.g. "shared" of the uni-modal adapter).
    breakdown_parts: ClassVar[tuple[str, ...]] = ()

    def parameter_breakdown(self) -> dict[str, int]:
        """Trainable parameter counts by part: the first component of the tensor names (vision, text, …)."""
        counts = dict.fromkeys(self.breakdown_parts, 0)
        for name, tensor in self.trainable_tensors().items():
            part = name.split(".", 1)[0]
            counts[part] = counts.get(part, 0) + tensor.numel()
        return counts

    def submodule_tensors(self, *attributes: str) -> dict[str, nn.Parameter]:
        """``trainable_tensors`` for methods whose parameters all live in sub-modules named after towers."""
        return {
            f"{attribute}.{name}": tensor
            for attribute in attributes
            for name, tensor in getattr(self, attribute).named_parameters()
        }

    def num_trainable(self) -> int:
        return sum(t.numel() for t in self.trainable_tensors().values())

    def decays(self, name: str, tensor: torch.Tensor) -> bool:
        """Whether decoupled weight decay applies: matrices yes; biases, norms, embeddings and scales no."""
        return tensor.ndim >= 2 and not name.endswith(("bias", "embedding", "logit_scale"))

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer groups over the trainable tensors: decoupled weight decay on matrices only.

        Methods that need their own learning rates for some tensors (full fine-tuning's backbone)
        override this; the trainer uses whatever groups come back.
        """
        decay, no_decay = [], []
        for name, tensor in self.trainable_tensors().items():
            (decay if self.decays(name, tensor) else no_decay).append(tensor)
        groups = [
            {"name": "decay", "params": decay, "lr": lr, "weight_decay": weight_decay},
            {"name": "no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0},
        ]
        return [g for g in groups if g["params"]]

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "options": dataclasses.asdict(self.options)}

    @torch.no_grad()
    def load_tensors(self, tensors: dict[str, torch.Tensor], *, source: str) -> None:
        """Copy saved tensors in; the set of names and every shape must match exactly."""
        own = self.trainable_tensors()
        missing = sorted(set(own) - set(tensors))
        unexpected = sorted(set(tensors) - set(own))
        if missing or unexpected:
            raise CheckpointError(
                f"{source} does not fit method {self.name!r}: "
                f"{len(missing)} tensors missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
                f"(e.g. {unexpected[:3]})"
            )
        for key, parameter in own.items():
            if tensors[key].shape != parameter.shape:
                raise CheckpointError(
                    f"{source}: tensor {key} has shape {tuple(tensors[key].shape)}, "
                    f"the model expects {tuple(parameter.shape)}"
                )
            parameter.copy_(tensors[key].to(parameter.dtype))


def make_options(cls: type[MethodOptions], values: dict[str, Any], *, method: str) -> MethodOptions:
    """Options from plain values, with clear errors for unknown names and wrong types."""
    from ..config import check_type

    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise CmadapterError(
            f"method {method!r} has no option {unknown[0]!r}; its options are {', '.join(sorted(hints)) or 'none'}"
        )
    where = f"method {method!r}"
    return cls(**{key: check_type(value, hints[key], key, where) for key, value in values.items()})
