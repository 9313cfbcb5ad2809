"""``cmadapter bench encode``: inference throughput with the adapter against the plain backbone.

Same model object, same inputs, same process: the adapter is switched on and off within each repetition
(back to back, alternating which goes first), and the ratio is the median of the per-repetition ratios,
so drift in machine speed hits both alike. Also times a 1,000 x 1,000 retrieval
(similarity through the head + metrics) from already-encoded features.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch

from .machine import describe_machine


@dataclass
class EncodeSettings:
    backbone: str | None = "ViT-B-32-quickgelu"
    pretrained: str | None = None  # random weights by default: the timing does not depend on them
    method: str = "cross-modal"
    options: dict = field(default_factory=dict)
    videos: int = 8  # per batch
    frames: int = 12
    texts: int = 256  # per batch
    repeats: int = 5
    precision: str = "bf16"
    retrieval_size: int = 1000
    device: str = "auto"


def _time(fn, device) -> float:
    began = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - began


def plan(settings: EncodeSettings) -> dict:
    """Check the settings (one-line errors) without building the model; what ``benchmark`` would run."""
    from .checks import check_settings

    check_settings(
        backbone=settings.backbone,
        pretrained=settings.pretrained,
        methods=[settings.method],
        options=settings.options,
        precisions=[settings.precision],
        device=settings.device,
        counts={
            "videos": settings.videos,
            "frames": settings.frames,
            "texts": settings.texts,
            "repeats": settings.repeats,
            "retrieval size": settings.retrieval_size,
        },
    )
    return {"benchmark": "encode", "dry_run": True, "settings": vars(settings)}


@torch.no_grad()
def benchmark(settings: EncodeSettings) -> dict:
    from ..config import EvalConfig
    from ..evaluation.evaluate import EncodedSplit, similarity_matrix
    from ..evaluation.metrics import retrieval_metrics
    from ..model import build_model
    from ..precision import autocast
    from ..training.distributed import resolve_device

    plan(settings)
    device = resolve_device(settings.device)
    torch.manual_seed(0)
    model = build_model(
        settings.backbone, settings.pretrained, method=settings.method, device=device, **settings.options
    ).eval()
    from ..precision import DTYPES

    model.store_frozen_weights(DTYPES[settings.precision])
    size = model.image_size
    frames = torch.randn(settings.videos, settings.frames, 3, size, size, device=device)
    mask = torch.ones(settings.videos, settings.frames, dtype=torch.bool, device=device)
    tokens = model.tokenize([f"caption number {i} about a video" for i in range(settings.texts)])

    def encode_video():
        with autocast(device, settings.precision):
            model.encode_video(frames, mask)

    def encode_text():
        with autocast(device, settings.precision):
            model.encode_text(tokens)

    timings = {"adapter": {"video": [], "text": []}, "plain": {"video": [], "text": []}}
    for variant in ("adapter", "plain"):  # warm-up both paths
        model.set_adapter("default" if variant == "adapter" else None)
        encode_video()
        encode_text()
    for repeat in range(settings.repeats):
        # Back to back, the order alternating: each repeat gives a ratio that a slow spell of the shared
        # machine hits on both sides.
        for variant in ("adapter", "plain") if repeat % 2 == 0 else ("plain", "adapter"):
            model.set_adapter("default" if variant == "adapter" else None)
            timings[variant]["video"].append(_time(encode_video, device))
            timings[variant]["text"].append(_time(encode_text, device))
    model.set_adapter("default")

    figures = {}
    for variant, times in timings.items():
        video, text = statistics.median(times["video"]), statistics.median(times["text"])
        figures[variant] = {
            "videos_per_second": settings.videos / video,
            "texts_per_second": settings.texts / text,
            "seconds_per_video": video / settings.videos,
            "seconds_per_text": text / settings.texts,
        }
    n, dim = settings.retrieval_size, model.clip.text_projection.shape[1]
    encoded = EncodedSplit(
        text=torch.randn(n, dim),
        video=torch.randn(n, settings.frames, dim),
        mask=torch.ones(n, settings.frames, dtype=torch.bool),
    )
    began = time.perf_counter()
    similarity = similarity_matrix(model, encoded, block_size=EvalConfig().block_size)
    retrieval_metrics(similarity, list(range(n)))
    retrieval_seconds = time.perf_counter() - began
    return {
        "benchmark": "encode",
        "settings": vars(settings),
        "machine": describe_machine(device),
        "adapter": figures["adapter"],
        "plain": figures["plain"],
        "video_time_ratio": _paired_ratio(timings, "video"),
        "text_time_ratio": _paired_ratio(timings, "text"),
        "retrieval_seconds": retrieval_seconds,
        "retrieval_size": n,
    }


def _paired_ratio(timings: dict, kind: str) -> float:
    """Median over repeats of adapter time ÷ plain time measured back to back."""
    pairs = zip(timings["adapter"][kind], timings["plain"][kind])
    return statistics.median(adapter / plain for adapter, plain in pairs)


def format_table(report: dict) -> str:
    a, p = report["adapter"], report["plain"]
    return "\n".join(
        [
            "| | videos/s | texts/s | s/video | s/text |",
            "|---|---:|---:|---:|---:|",
            f"| plain backbone | {p['videos_per_second']:.2f} | {p['texts_per_second']:.1f} "
            f"| {p['seconds_per_video']:.4f} | {p['seconds_per_text']:.5f} |",
            f"| with {report['settings']['method']} adapter | {a['videos_per_second']:.2f} | {a['texts_per_second']:.1f} "
            f"| {a['seconds_per_video']:.4f} | {a['seconds_per_text']:.5f} |",
            f"| ratio (adapter ÷ plain, median of back-to-back pairs) | | | {report['video_time_ratio']:.3f}× "
            f"| {report['text_time_ratio']:.3f}× |",
            "",
            f"{report['retrieval_size']} × {report['retrieval_size']} retrieval from encoded features "
            f"(head + metrics): {report['retrieval_seconds']:.2f} s",
        ]
    )
