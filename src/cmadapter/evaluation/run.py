"""``cmadapter eval``: an adapter checkpoint (or the frozen backbone, zero-shot) on a split of a config's data."""

from __future__ import annotations

from typing import Any

from ..config import RunConfig
from ..model import build_model
from ..training.data import build_eval_data
from ..training.distributed import init_distributed, shutdown_distributed
from ..training.memory import peak_memory_mb
from .evaluate import evaluate


def evaluate_config(
    config: RunConfig, *, adapter: str | None = None, split: str | None = None, progress: bool = True
) -> dict[str, Any]:
    context = init_distributed(config.train.device)
    try:
        m = config.model
        if adapter is not None:
            model = build_model(m.backbone, m.pretrained, adapter=adapter, device=context.device)
            label = f"adapter {adapter}"
        else:
            model = build_model(
                m.backbone,
                m.pretrained,
                method=None,
                head=m.head,
                context_length=m.context_length,
                temperature=m.temperature if m.head == "text-pool" else None,
                device=context.device,
            )
            label = f"zero-shot {m.backbone or m.pretrained}"
        split = split or config.data.test_split
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
