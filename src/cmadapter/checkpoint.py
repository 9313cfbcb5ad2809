"""Adapter checkpoints: only the trainable tensors plus the config that rebuilds them, in safetensors.

The config (method and options, head, backbone name and architecture, context length, versions) is
JSON in the safetensors metadata under the key ``cmadapter``, so one file is the whole adapter.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .architecture import Architecture
from .errors import CheckpointError
from .files import atomic_path

FORMAT = "cmadapter.adapter"
FORMAT_VERSION = 1
_METADATA_KEY = "cmadapter"


@dataclass
class AdapterCheckpoint:
    tensors: dict[str, torch.Tensor]
    method: str
    options: dict[str, Any]
    head: dict[str, Any]  # {"name": ..., plus the head's options}
    architecture: Architecture
    backbone_name: str | None = None
    context_length: int = 32
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. training provenance
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def num_parameters(self) -> int:
        return sum(t.numel() for t in self.tensors.values())


def save_adapter_checkpoint(checkpoint: AdapterCheckpoint, path: str | os.PathLike) -> Path:
    """Write atomically: a reader never sees half a file, a crash never leaves one behind."""
    from safetensors.torch import save_file

    path = Path(path)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": checkpoint.method,
        "options": checkpoint.options,
        "head": checkpoint.head,
        "backbone": {"name": checkpoint.backbone_name, "architecture": checkpoint.architecture.to_dict()},
        "context_length": checkpoint.context_length,
        "extra": checkpoint.extra,
        "versions": checkpoint.versions or current_versions(),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in checkpoint.tensors.items()}
    with atomic_path(path) as temporary:
        save_file(tensors, temporary, metadata={_METADATA_KEY: json.dumps(config)})
    return path


def load_adapter_checkpoint(path: str | os.PathLike) -> AdapterCheckpoint:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"adapter checkpoint not found: {path}")
    config = _read_config(path)
    try:
        tensors = load_file(str(path))
    except SafetensorError as exc:
        raise CheckpointError(f"{path}: unreadable tensors ({exc})") from exc
    try:
        backbone = config["backbone"]
        return AdapterCheckpoint(
            tensors=tensors,
            method=config["method"],
            options=config["options"],
            head=config["head"],
            architecture=Architecture.from_dict(backbone["architecture"]),
            backbone_name=backbone.get("name"),
            context_length=int(config.get("context_length", 32)),
            extra=config.get("extra", {}),
            versions=config.get("versions", {}),
        )
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: adapter config is incomplete (missing {exc})") from exc


def is_adapter_checkpoint(path: str | os.PathLike) -> bool:
    try:
        _read_config(Path(path))
    except CheckpointError:
        return False
    return True


def _read_config(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a cmadapter adapter checkpoint (not a safetensors file: {exc})") from exc
    if _METADATA_KEY not in metadata:
        raise CheckpointError(f"{path} is a safetensors file but not a cmadapter adapter checkpoint (no config)")
    try:
        config = json.loads(metadata[_METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: adapter config is not valid JSON ({exc})") from exc
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {config.get('format')!r}")
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer cmadapter (format {config['format_version']}); please upgrade"
        )
    return config


def current_versions() -> dict[str, str]:
    import open_clip

    from . import __version__

    return {"cmadapter": __version__, "torch": torch.__version__, "open_clip": open_clip.__version__}
