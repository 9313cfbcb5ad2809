"""Resumable training state in one safetensors file (tensors) with JSON metadata (everything else).

It holds the trainable tensors, the optimizer's moments, the scheduler, the grad scaler, the position in
the data (epoch, batch within it), the RNG states, the best-so-far bookkeeping and the resolved config
(which ``resume_check`` compares with the resuming run's), so a killed run
continues exactly where its last state was written. No pickles: nothing here can execute code on load.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..files import atomic_path

FORMAT = "cmadapter.train_state"
_KEY = "cmadapter"


@dataclass
class Position:
    epoch: int = 0  # the epoch in progress
    batch: int = 0  # batches of that epoch already done
    global_step: int = 0


@dataclass
class TrainState:
    position: Position
    trainable: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any]
    rng: dict[str, Any]
    bookkeeping: dict[str, Any] = field(default_factory=dict)  # best epoch, validation history, timings
    config: dict[str, Any] | None = None  # the resolved run config (resume_check compares it); None: not recorded


def capture_rng() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_train_state(state: TrainState, path: Path) -> Path:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {f"trainable.{k}": v for k, v in state.trainable.items()}
    optimizer_meta = {"param_groups": state.optimizer["param_groups"], "state": {}}
    for index, entries in state.optimizer["state"].items():
        optimizer_meta["state"][str(index)] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
                optimizer_meta["state"][str(index)][key] = {"tensor": True}
            else:
                optimizer_meta["state"][str(index)][key] = {"value": value}
    tensors["rng.torch"] = state.rng["torch"]
    for i, cuda_state in enumerate(state.rng.get("cuda", [])):
        tensors[f"rng.cuda.{i}"] = cuda_state
    name, keys, pos, has_gauss, cached = state.rng["numpy"]
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    python_version, python_internal, python_gauss = state.rng["python"]
    meta = {
        "format": FORMAT,
        "position": vars(state.position),
        "optimizer": optimizer_meta,
        "scheduler": state.scheduler,
        "scaler": state.scaler,
        "rng": {
            "python": [python_version, list(python_internal), python_gauss],
            "numpy": [name, int(pos), int(has_gauss), float(cached)],
            "cuda_devices": len(state.rng.get("cuda", [])),
        },
        "bookkeeping": state.bookkeeping,
        "config": state.config,
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as temporary:  # a kill mid-write leaves the previous state intact
        save_file(tensors, temporary, metadata={_KEY: json.dumps(meta)})
    return path


def load_train_state(path: Path) -> TrainState:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {}).get(_KEY, "{}"))
        tensors = load_file(str(path))
    except (SafetensorError, OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not a readable training state ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a cmadapter training state")
    trainable = {k[len("trainable.") :]: v for k, v in tensors.items() if k.startswith("trainable.")}
    optimizer_state: dict[int, dict[str, Any]] = {}
    for index, entries in meta["optimizer"]["state"].items():
        optimizer_state[int(index)] = {
            key: tensors[f"optimizer.{index}.{key}"] if entry.get("tensor") else entry["value"]
            for key, entry in entries.items()
        }
    name, pos, has_gauss, cached = meta["rng"]["numpy"]
    python_version, python_internal, python_gauss = meta["rng"]["python"]
    rng = {
        "python": (python_version, tuple(python_internal), python_gauss),
        "numpy": (name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached),
        "torch": tensors["rng.torch"],
    }
    if meta["rng"]["cuda_devices"]:
        rng["cuda"] = [tensors[f"rng.cuda.{i}"] for i in range(meta["rng"]["cuda_devices"])]
    return TrainState(
        position=Position(**meta["position"]),
        trainable=trainable,
        optimizer={"state": optimizer_state, "param_groups": meta["optimizer"]["param_groups"]},
        scheduler=meta["scheduler"],
        scaler=meta["scaler"],
        rng=rng,
        bookkeeping=meta.get("bookkeeping", {}),
        config=meta.get("config"),
    )


def latest_state(directory: Path) -> Path | None:
    states = sorted(directory.glob("state-step*.safetensors"))
    return states[-1] if states else None
