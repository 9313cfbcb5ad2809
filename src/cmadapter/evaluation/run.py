"""``cmadapter eval``: an adapter checkpoint (or the frozen backbone, zero-shot) on a split of a config's data."""

from __future__ import annotations

from typing import Any

from ..config import RunConfig
from ..config_validation import validate_config
from ..datasets import get_dataset
from ..errors import CmadapterError
from ..model import build_model_from_config
from ..training.data import build_eval_data
from ..training.distributed import init_distributed, shutdown_distributed
from ..training.memory import peak_memory_mb
from .evaluate import evaluate


def build_run_model(config: RunConfig, adapter: str | None, *, device="cpu") -> tuple[Any, str]:
    """The model a config evaluates with an adapter checkpoint, or zero-shot (the frozen backbone with the
    config's head) without one; and a label for it."""
    model = build_model_from_config(config.model, device, adapter=adapter, method=None)
    m = config.model
    return model, f"adapter {adapter}" if adapter is not None else f"zero-shot {m.backbone or m.pretrained}"


def evaluate_config(
    config: RunConfig, *, adapter: str | None = None, split: str | None = None, progress: bool = True
) -> dict[str, Any]:
    validate_config(config, purpose="eval")
    context = init_distributed(config.train.device)
    try:
        model, label = build_run_model(config, adapter, device=context.device)
        split = split or config.data.test_split
        if split is None:
            raise CmadapterError("the config has no test split (data.test_split is null): give --split")
        data = build_eval_data(config, model, split)
        metrics = evaluate(
            model,
            data,
            config.eval,
            precision=config.train.precision,
            context=context,
            workers=config.data.workers,
            progress=progress and context.is_main,
        )
        counts = model.num_parameters()
        return {
            "split": data.name,
            "media": get_dataset(config.data.dataset).media,
            "model": label,
            "test": metrics,
            "efficiency": {
                "trainable_params": counts["trainable_params"],
                "total_params": counts["total_params"],
                "train_seconds": 0.0,
                "peak_memory_mb": peak_memory_mb(context.device),
            },
        }
    finally:
        shutdown_distributed(context)
