"""Is the synthetic demo task learnable? Zero-shot tiny CLIP vs a quick Cross-Modal Adapter fine-tune.

Generates the synthetic dataset (or reuses it), decodes the frames a 1-fps sampler takes (one per
object), pretrains the tiny CLIP (or reuses it), then prints text->video R@1 on the test split for the
zero-shot backbone and after a short adapter fine-tune (AdamW, warmup + cosine, symmetric InfoNCE), with
the wall time of each stage. A plausibility check for `cmadapter demo`, not the demo itself.

    python benchmarks/synthetic_task.py [--quick] [--steps N] [--lr LR] [--in-memory] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path

import av
import numpy as np
import torch

from cmadapter import build_model
from cmadapter.demo.dataset_files import generate_dataset
from cmadapter.demo.pretrain import PretrainConfig, frames_to_tensor, pretrain
from cmadapter.demo.synthetic import SyntheticConfig, render_video, sample_frames, video_specs
from cmadapter.training.loss import symmetric_infonce


def video_tensor(specs, config: SyntheticConfig, dataset=None) -> torch.Tensor:
    """[B, T, 3, H, W] frames a 1-fps sampler takes: decoded from the mp4 files, or rendered in memory."""
    keep = sample_frames(config)
    if dataset is None:
        return frames_to_tensor(np.stack([render_video(s, config)[keep] for s in specs]))
    videos = []
    for spec in specs:
        with av.open(str(dataset.video_path(spec.video_id))) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        videos.append(np.stack(frames)[keep])
    return frames_to_tensor(np.stack(videos))


@torch.no_grad()
def text_to_video_r1(model, captions: list[str], videos: torch.Tensor) -> float:
    model.eval()
    text = model.encode_text(model.tokenize(captions))
    video = torch.cat([model.encode_video(chunk) for chunk in videos.split(50)])
    logits = model.similarity(text, video)
    correct = logits.diagonal()[:, None]
    rank = (logits > correct).sum(1) + (logits == correct).sum(1) - 1  # ties count against us
    return float((rank == 0).float().mean() * 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the quick presets of data and pretraining")
    parser.add_argument("--steps", type=int, default=None, help="fine-tuning steps (600, quick 300)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--method", default="cross-modal", help="cross-modal or uni-modal")
    parser.add_argument("--head", default="text-pool")
    parser.add_argument("--seed", type=int, default=0, help="fine-tuning seed")
    parser.add_argument("--in-memory", action="store_true", help="render frames instead of writing/decoding mp4")
    parser.add_argument("--pretrain-steps", type=int, default=None)
    parser.add_argument("--pretrain-seed", type=int, default=0)
    parser.add_argument("--feature-norm", type=float, default=PretrainConfig.feature_norm)
    parser.add_argument("--max-objects", type=int, default=PretrainConfig.max_objects)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--out", default="runs/synthetic_task")
    args = parser.parse_args()

    synthetic = SyntheticConfig.quick() if args.quick else SyntheticConfig()
    pre = PretrainConfig.quick() if args.quick else PretrainConfig()
    pre = dataclasses.replace(
        pre, feature_norm=args.feature_norm, max_objects=args.max_objects, seed=args.pretrain_seed
    )
    if args.pretrain_steps:
        pre = dataclasses.replace(pre, steps=args.pretrain_steps, warmup_steps=args.pretrain_steps // 10)
    steps = args.steps or (300 if args.quick else 600)
    out = Path(args.out)
    torch.manual_seed(args.seed)

    t0 = time.perf_counter()
    dataset = None
    if not args.in_memory:
        dataset = generate_dataset(out / f"data-{synthetic.num_videos}", synthetic, progress=False)  # or reuse
        print(f"{synthetic.num_videos} mp4 videos generated (or reused) in {time.perf_counter() - t0:.1f}s")
    specs = video_specs(synthetic)
    train = [s for s in specs if s.split == "train"]
    test = [s for s in specs if s.split == "test"]
    train_videos, test_videos = video_tensor(train, synthetic, dataset), video_tensor(test, synthetic, dataset)
    print(f"frames ready after {time.perf_counter() - t0:.1f}s: {tuple(train_videos.shape)} train")

    key = hashlib.sha1(json.dumps([pre.to_dict(), synthetic.to_dict()], sort_keys=True).encode()).hexdigest()[:10]
    result = pretrain(out / f"tiny-clip-{key}.pt", pre, synthetic, progress=False)  # reused when already trained
    losses = f"loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}, " if result.losses else "reused, "
    print(
        f"pretrain {pre.steps} steps: {result.seconds:.1f}s, {losses}"
        f"frame accuracy {result.frame_accuracy:.3f}, logit scale {result.logit_scale:.1f}"
    )
    test_captions = [s.captions[0] for s in test]
    zero_shot = build_model(pretrained=result.path, method=None, head=args.head)
    print(f"zero-shot t2v R@1 {text_to_video_r1(zero_shot, test_captions, test_videos):.1f} ({len(test)} test videos)")

    options = {"r": 8, "shared_dim": 16} if args.method == "cross-modal" else {"r": 8}
    model = build_model(pretrained=result.path, method=args.method, head=args.head, **options)
    params = list(model.trainable_parameters().values())
    counts = model.num_parameters()
    print(f"{args.method}: {counts['trainable_params']:,} trainable of {counts['total_params']:,}")
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    warmup = max(1, steps // 10)  # linear warmup over 10% of the steps, then cosine, as the paper's recipe

    def factor(i: int) -> float:
        return (i + 1) / warmup if i < warmup else 0.5 * (1 + math.cos(math.pi * (i - warmup) / (steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    rng = np.random.default_rng(args.seed)
    t1 = time.perf_counter()
    for step in range(steps):
        model.train()
        batch = rng.choice(len(train), args.batch, replace=False)
        captions = [train[i].captions[rng.integers(len(train[i].captions))] for i in batch]
        loss = symmetric_infonce(model(model.tokenize(captions), train_videos[batch], None))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % args.eval_every == 0 and step != steps - 1:
            r1 = text_to_video_r1(model, test_captions, test_videos)
            fit = text_to_video_r1(model, [s.captions[0] for s in train[:100]], train_videos[:100])
            elapsed = time.perf_counter() - t1
            print(f"step {step + 1} loss {loss.item():.3f} test R@1 {r1:.1f} train R@1 {fit:.1f} ({elapsed:.0f}s)")
    train_seconds = time.perf_counter() - t1
    print(
        f"{args.method} t2v R@1 {text_to_video_r1(model, test_captions, test_videos):.1f} "
        f"after {steps} steps x {args.batch} videos in {train_seconds:.1f}s (evaluations included)"
    )


if __name__ == "__main__":
    main()
