"""Training: the paper's recipe, one process or many under torchrun, exact resume, a self-describing run folder.

    from cmadapter.config import load_config
    from cmadapter.training.trainer import train
    metrics = train(load_config("configs/msrvtt_vitb32.yaml"))

Run folder (``output_dir/name``): ``config.yaml`` (resolved), ``metrics.jsonl`` (step metrics),
TensorBoard events, ``checkpoints/`` (training states and per-epoch adapters), ``best.safetensors``
(the adapter chosen on validation, or the last one), ``metrics.json`` (final table and efficiency).
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..checkpoint import load_adapter_checkpoint
from ..config import RunConfig
from ..config_validation import validate_config
from ..errors import CmadapterError
from ..evaluation.evaluate import EvalData, evaluate
from ..evaluation.tables import summary_line
from ..model import RetrievalModel, build_model_from_config
from ..precision import DTYPES, autocast
from .data import TrainingData, build_training_data, keep_split, recorded_split, training_loader
from .distributed import (
    DistributedContext,
    barrier,
    init_distributed,
    shutdown_distributed,
)
from .memory import peak_memory_mb
from .resume_check import load_checked_state, resolved, write_run_config
from .state import Position, TrainState, capture_rng, restore_rng, save_train_state
from .stepper import build_stepper

log = logging.getLogger(__name__)

_KEEP_STATES = 2  # training states kept on disk (the newest ones)


@dataclass
class StepInfo:
    epoch: int
    batch: int  # batches of this epoch done, this one included
    global_step: int
    loss: float
    lr: float
    step_seconds: float
    data_seconds: float
    samples_per_second: float
    peak_memory_mb: float
    extras: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(
    config: RunConfig,
    data: TrainingData | None = None,
    *,
    model: RetrievalModel | None = None,
    callbacks: Sequence[Callable[[StepInfo], None]] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Train, select on validation, evaluate the test split once; returns what ``metrics.json`` holds."""
    validate_config(config, purpose="train", check_data=data is None, check_model=model is None)
    context = init_distributed(config.train.device)
    try:
        return Trainer(config, context, data=data, model=model, callbacks=callbacks, progress=progress).run()
    finally:
        shutdown_distributed(context)


class Trainer:
    def __init__(
        self,
        config: RunConfig,
        context: DistributedContext,
        *,
        data: TrainingData | None,
        model: RetrievalModel | None,
        callbacks: Sequence[Callable[[StepInfo], None]],
        progress: bool,
    ):
        config = recorded_split(config)  # a resumed run reads the split it drew
        self.config, self.context = config, context
        self.callbacks = list(callbacks)
        self.progress = progress and context.is_main
        self.run_dir = config.run_dir
        self.precision = config.train.precision
        self.resume_state, self.resume_path = load_checked_state(config)  # before anything slow
        autocast(context.device, self.precision)  # fails early on fp16 without a GPU
        seed_everything(config.train.seed)  # same seed on every process: identical adapter init
        self.model = model if model is not None else build_model_from_config(config.model, context.device)
        self.model.to(context.device)
        if self.model.method is None:
            raise CmadapterError("model.method is null: nothing to train (use `cmadapter eval` for zero-shot)")
        if config.train.grad_checkpointing:
            self.model.clip.set_grad_checkpointing(True)
        if config.train.frozen_weights_in_autocast_dtype:
            self.model.store_frozen_weights(DTYPES[self.precision])
        if data is None:
            data = build_training_data(config, self.model)
        self.data = data
        self.params = list(self.model.trainable_parameters().values())
        self._broadcast_trainable()

        batch = config.train.batch_size
        # Built once: persistent workers live across epochs (the dataset's epoch is in shared memory).
        self.loader, self.sampler = training_loader(
            self.data.train,
            self.data.collate,
            batch,
            seed=config.train.seed,
            rank=context.rank,
            world_size=context.world_size,
            device=context.device,
            workers=config.data.workers,
        )
        self.steps_per_epoch = len(self.data.train) // batch
        self.total_steps = self.steps_per_epoch * config.train.epochs
        self.stepper = build_stepper(self.model, config.optim, self.precision, context, self.total_steps)
        self.optimizer, self.scheduler, self.scaler = (
            self.stepper.optimizer,
            self.stepper.scheduler,
            self.stepper.scaler,
        )
        self.position = Position()
        self.bookkeeping: dict[str, Any] = {"validation": [], "step_seconds": [], "train_seconds": 0.0}
        self._writer = None

    # ---- set-up ---------------------------------------------------------------------------------------

    def _broadcast_trainable(self) -> None:
        if self.context.enabled:
            import torch.distributed as dist

            for tensor in self.params:
                dist.broadcast(tensor.data, src=0)

    def _resume(self) -> None:
        state, path = self.resume_state, self.resume_path
        if state is None:
            return
        self.model.method.load_tensors(state.trainable, source=str(path))
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        if state.scaler:
            self.scaler.load_state_dict(state.scaler)
        restore_rng(state.rng)
        self.position = state.position
        self.bookkeeping = state.bookkeeping
        if self.context.is_main:
            log.info("resumed from %s at epoch %d, batch %d", path, self.position.epoch, self.position.batch)

    # ---- the loop -------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        config = self.config
        if self.data.own_split is not None and "split_file" not in config.data.dataset_options:
            # The seeded split, kept with the run: eval, report and a resume read it even if the data grows.
            config = self.config = keep_split(config, self.data.own_split, write=self.context.is_main)
        if self.context.is_main:
            (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            write_run_config(config, self.run_dir, resuming=self.resume_state is not None)
        self._resume()
        self.resume_state = None  # its tensors now live in the model and optimizer
        barrier(self.context)
        if self.data.validation is None and self.context.is_main:
            log.info("no validation split: the last epoch's adapter is the one evaluated on test")
        started = time.perf_counter()
        trained_before = self.bookkeeping.get("train_seconds", 0.0)
        stop = False
        for epoch in range(self.position.epoch, config.train.epochs):
            self.sampler.set_epoch(epoch, start_batch=self.position.batch if epoch == self.position.epoch else 0)
            if epoch != self.position.epoch:
                self.position = Position(epoch=epoch, batch=0, global_step=self.position.global_step)
            stop = self._train_epoch(epoch)
            self.bookkeeping["train_seconds"] = trained_before + time.perf_counter() - started
            if stop:
                break
            self._end_epoch(epoch)
        self.bookkeeping["train_seconds"] = trained_before + time.perf_counter() - started
        results = self._finish(stopped_early=stop)
        if self._writer is not None:
            self._writer.close()
        return results

    def _train_epoch(self, epoch: int) -> bool:
        """One epoch (or its remainder); True when max_steps stopped training."""
        config, context = self.config, self.context
        self.model.train()
        if hasattr(self.data.train, "set_epoch"):
            self.data.train.set_epoch(epoch)
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=self.position.batch,
            desc=f"epoch {epoch + 1}/{config.train.epochs}",
            disable=not self.progress,
        )
        waited = time.perf_counter()
        for tokens, frames, mask, _ids in self.loader:
            data_seconds = time.perf_counter() - waited
            began = time.perf_counter()
            loss = self._step(tokens, frames, mask)
            step_seconds = time.perf_counter() - began
            self.position.batch += 1
            self.position.global_step += 1
            info = StepInfo(
                epoch=epoch,
                batch=self.position.batch,
                global_step=self.position.global_step,
                loss=loss,
                lr=self.optimizer.param_groups[0]["lr"],
                step_seconds=step_seconds,
                data_seconds=data_seconds,
                samples_per_second=config.train.batch_size / (step_seconds + data_seconds),
                peak_memory_mb=peak_memory_mb(context.device),
            )
            self.bookkeeping["step_seconds"].append(step_seconds)
            self._log_step(info)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if config.train.save_every_steps and self.position.global_step % config.train.save_every_steps == 0:
                self._save_state()
            for callback in self.callbacks:
                callback(info)
            if config.train.max_steps is not None and self.position.global_step >= config.train.max_steps:
                bar.close()
                return True
            waited = time.perf_counter()
        bar.close()
        return False

    def _step(self, tokens: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor) -> float:
        loss = self.stepper.compute_gradients(tokens, frames, mask, step=self.position.global_step + 1)
        self.stepper.apply_gradients()
        return loss

    # ---- logging and checkpoints ----------------------------------------------------------------------

    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.run_dir))
        return self._writer

    def _log_step(self, info: StepInfo) -> None:
        if not self.context.is_main:
            return
        every = self.config.train.log_every_steps
        if info.global_step % every and info.batch != self.steps_per_epoch and info.global_step != 1:
            return
        record = {k: v for k, v in vars(info).items() if k != "extras"}
        with open(self.run_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        for key in ("loss", "lr", "samples_per_second", "step_seconds", "peak_memory_mb"):
            self.writer.add_scalar(f"train/{key}", record[key], info.global_step)

    def _save_state(self) -> None:
        if not self.context.is_main:
            return
        state = TrainState(
            position=self.position,
            trainable={k: v.detach() for k, v in self.model.method.trainable_tensors().items()},
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            rng=capture_rng(),
            bookkeeping=self.bookkeeping,
            config=resolved(self.config),
        )
        directory = self.run_dir / "checkpoints"
        save_train_state(state, directory / f"state-step{self.position.global_step:08d}.safetensors")
        for old in sorted(directory.glob("state-step*.safetensors"))[:-_KEEP_STATES]:
            old.unlink()

    def _end_epoch(self, epoch: int) -> None:
        """Adapter checkpoint, validation, best-so-far; then the state that resumes at the next epoch."""
        self.position = Position(epoch=epoch + 1, batch=0, global_step=self.position.global_step)
        directory = self.run_dir / "checkpoints"
        adapter = directory / f"epoch{epoch + 1:03d}.safetensors"
        if self.context.is_main:
            self.model.save_adapter(adapter, extra={"epoch": epoch + 1, "global_step": self.position.global_step})
        if self.data.validation is not None and (epoch + 1) % self.config.eval.every_epochs == 0:
            metrics = self._evaluate(self.data.validation)
            entry = {"epoch": epoch + 1, **metrics}
            self.bookkeeping["validation"].append(entry)
            t2v = metrics["t2v"]
            # Every process computed the same metrics from the gathered features: all agree on the best.
            improved = _better(entry, self.bookkeeping.get("best"))
            if improved:
                self.bookkeeping["best"] = {"epoch": epoch + 1, "t2v": t2v}
            if self.context.is_main:
                log.info(
                    "epoch %d validation t2v R@1 %.1f R@5 %.1f R@10 %.1f", epoch + 1, t2v["R1"], t2v["R5"], t2v["R10"]
                )
                for key in ("R1", "R5", "R10", "MnR"):
                    self.writer.add_scalar(f"val/t2v_{key}", t2v[key], self.position.global_step)
                if improved:
                    shutil.copyfile(adapter, self.run_dir / "best.safetensors")
        if self.context.is_main and self.model.method.modifies_backbone:
            # Whole-backbone "adapters" are large: keep the newest epoch only (best is copied out).
            for old in sorted(directory.glob("epoch*.safetensors"))[:-1]:
                old.unlink()
        self._save_state()
        barrier(self.context)

    def _evaluate(self, data: EvalData) -> dict[str, Any]:
        return evaluate(
            self.model,
            data,
            self.config.eval,
            precision=self.precision,
            context=self.context,
            workers=self.config.data.workers,
            progress=self.progress,
        )

    def _finish(self, *, stopped_early: bool) -> dict[str, Any]:
        config, context = self.config, self.context
        best = self.bookkeeping.get("best")
        if best is not None:
            selection = f"validation t2v R@1 (epoch {best['epoch']})"
            chosen = self.run_dir / "best.safetensors"
            self.model.method.load_tensors(load_adapter_checkpoint(chosen).tensors, source=str(chosen))
        else:
            selection = "last epoch (no validation split)" if self.data.validation is None else "last step"
            if context.is_main:
                self.model.save_adapter(
                    self.run_dir / "best.safetensors", extra={"global_step": self.position.global_step}
                )
        barrier(context)
        test = self._evaluate(self.data.test) if self.data.test is not None else None
        steps = self.bookkeeping["step_seconds"]
        counts = self.model.num_parameters()
        results = {
            "run": config.name,
            "dataset": config.data.dataset,
            "method": self.model.method.describe(),
            "head": self.model.head_spec(),
            "selection": selection,
            "stopped_early": stopped_early,
            "global_step": self.position.global_step,
            "test": test,
            "validation": self.bookkeeping["validation"],
            "efficiency": {
                "trainable_params": counts["trainable_params"],
                "total_params": counts["total_params"],
                "processes": context.world_size,
                "global_batch_size": config.train.batch_size,
                "precision": self.precision,
                "step_seconds_median": statistics.median(steps) if steps else math.nan,
                "samples_per_second": config.train.batch_size / statistics.median(steps) if steps else math.nan,
                "train_seconds": self.bookkeeping["train_seconds"],
                "peak_memory_mb": peak_memory_mb(context.device),
            },
        }
        if context.is_main:
            (self.run_dir / "metrics.json").write_text(json.dumps(results, indent=2))
            log.info(summary_line(results))
        return results


def _better(entry: dict[str, Any], best: dict[str, Any] | None) -> bool:
    if best is None:
        return True
    key = lambda m: (m["R1"], m["R5"], m["R10"])
    return key(entry["t2v"]) > key(best["t2v"])
