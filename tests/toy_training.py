"""Runs toy training in its own process: killed mid-run, resumed, or under torchrun (see test_train.py)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))

from cmadapter.config import load_config
from cmadapter.tokenizer import Tokenizer
from cmadapter.training.distributed import init_distributed, shutdown_distributed
from cmadapter.training.trainer import Trainer, train
from toy_data import colour_data


def toy_config(weights: str, out: str, **overrides):
    values = {
        "name": "toy",
        "output_dir": out,
        "model.backbone": None,
        "model.pretrained": weights,
        "model.method_options": {"r": 8, "shared_dim": 16},
        "train.batch_size": 8,
        "train.epochs": 3,
        "train.precision": "fp32",
        "train.device": "cpu",
        "train.save_every_steps": 1,
        "optim.lr": 1e-2,
        "data.workers": 0,
    }
    values.update(overrides)
    return load_config(None, values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["train", "grads", "encode"])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--kill-after", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--save-every", type=int, default=1, help="train.save_every_steps")
    parser.add_argument("--videos", type=int, default=5, help="encode: how many videos")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--optim", nargs=2, default=("adamw", "cosine"), metavar=("NAME", "SCHEDULE"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    resume = "auto" if args.resume else None
    name, schedule = args.optim
    overrides = {
        "train.save_every_steps": args.save_every,
        "train.device": args.device,
        "train.precision": args.precision,
        "optim.name": name,
        "optim.schedule": schedule,
    }
    config = toy_config(args.weights, args.out, resume=resume, **overrides)
    data = colour_data(Tokenizer(None, 32))
    if args.mode == "encode":
        encode(args, data)
        return

    if args.mode == "train":
        callbacks = []
        if args.kill_after is not None:

            def kill(info):
                if info.global_step == args.kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)  # a real, unannounced death

            callbacks.append(kill)
        train(config, data, callbacks=callbacks, progress=False)
        return

    context = init_distributed(args.device)
    try:
        trainer = Trainer(config, context, data=data, model=None, callbacks=(), progress=False)
        trainer.sampler.set_epoch(0)
        tokens, frames, mask, _ids = next(iter(trainer.loader))
        loss = trainer.stepper.compute_gradients(tokens, frames, mask)
        if context.is_main:
            grads = {k: v.grad.cpu() for k, v in trainer.model.trainable_parameters().items()}
            backend = torch.distributed.get_backend() if context.joined else None
            result = {"loss": loss, "grads": grads, "world_size": context.world_size, "backend": backend}
            torch.save(result, os.path.join(args.out, "grads.pt"))
    finally:
        shutdown_distributed(context)


def encode(args, data) -> None:
    """Encode the first ``--videos`` test videos (sharded under torchrun) with a perturbed adapter; rank 0
    saves the video features, masks and the metrics."""
    from torch.utils.data import Subset

    from cmadapter import build_model
    from cmadapter.config import EvalConfig
    from cmadapter.evaluation.evaluate import EvalData, encode_videos, evaluate
    from helpers import perturb

    context = init_distributed("cpu")
    try:
        torch.manual_seed(0)  # the same adapter in every process
        model = build_model(pretrained=args.weights, r=8, shared_dim=16)
        perturb(model.method)
        test = data.test
        n = args.videos
        subset = EvalData(
            name="first",
            video_ids=test.video_ids[:n],
            captions=test.captions[:n],
            caption_video=test.caption_video[:n],
            clips=Subset(test.clips, range(n)),
        )
        video, mask = encode_videos(model, subset.clips, batch_size=1, precision="fp32", context=context)
        metrics = evaluate(model, subset, EvalConfig(batch_size=1), context=context, progress=False)
        if context.is_main:
            torch.save({"video": video, "mask": mask, "world_size": context.world_size}, f"{args.out}/encoded.pt")
            with open(f"{args.out}/metrics.json", "w") as handle:
                json.dump(metrics, handle)
    finally:
        shutdown_distributed(context)


if __name__ == "__main__":
    main()
