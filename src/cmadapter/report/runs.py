"""What a run folder holds, read for a report: its config, final metrics, step log and adapter.

A training run (``cmadapter train``) leaves ``config.yaml``, ``metrics.json``, ``metrics.jsonl`` and
``best.safetensors``; a zero-shot run of ``compare`` leaves ``requested.yaml`` and ``metrics.json`` only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import RunConfig, load_config
from ..errors import CmadapterError
from ..evaluation.tables import ZERO_SHOT
from ..training.resume_check import newest_run_config

log = logging.getLogger(__name__)

CONFIG_FILES = ("config.yaml", "requested.yaml")


@dataclass
class RunFolder:
    path: Path
    config: RunConfig
    metrics: dict[str, Any] | None  # metrics.json, when the run finished
    steps: list[dict[str, Any]]  # metrics.jsonl: one record per logged step
    adapter: Path | None  # best.safetensors; None for a zero-shot run

    @property
    def label(self) -> str:
        if self.adapter is None:
            return ZERO_SHOT if self.path.name == ZERO_SHOT else f"{ZERO_SHOT} ({self.path.name})"
        method = (self.metrics or {}).get("method", {}).get("method") or self.config.model.method or "adapter"
        return method if method == self.path.name else f"{method} ({self.path.name})"

    @property
    def validation(self) -> list[dict[str, Any]]:
        return list((self.metrics or {}).get("validation") or [])


def read_run(path: str | Path) -> RunFolder:
    path = Path(path)
    if not path.is_dir():
        raise CmadapterError(f"run folder not found: {path}")
    # A resumed run's newest config.resume-<n>.yaml: a forced resume may change what the weights were trained with.
    config_path = newest_run_config(path) or next((path / n for n in CONFIG_FILES if (path / n).is_file()), None)
    if config_path is None:
        raise CmadapterError(f"{path} is not a run folder: it has neither {' nor '.join(CONFIG_FILES)}")
    config = load_config(config_path)
    metrics = None
    if (path / "metrics.json").is_file():
        try:
            metrics = json.loads((path / "metrics.json").read_text())
        except json.JSONDecodeError as exc:
            raise CmadapterError(f"{path / 'metrics.json'} is not valid JSON: {exc}") from exc
    adapter = path / "best.safetensors"
    trained = config.model.method is not None
    if trained and not adapter.is_file():
        raise CmadapterError(f"{path} trains {config.model.method!r} but has no best.safetensors (unfinished run?)")
    return RunFolder(path, config, metrics, read_steps(path / "metrics.jsonl"), adapter if trained else None)


def read_steps(path: Path) -> list[dict[str, Any]]:
    """Step records by global step; a resumed run may log a step twice, and its newest record counts."""
    if not path.is_file():
        return []
    by_step: dict[int, dict[str, Any]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = int(record["global_step"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            # A run killed mid-write leaves a torn line; the steps around it are still good.
            log.warning("%s, line %d: skipped, not a step record (%s)", path, number, exc)
            continue
        by_step[step] = record
    return [by_step[k] for k in sorted(by_step)]
