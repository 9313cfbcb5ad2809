"""`prepare`: decode a dataset's videos once into a frame cache."""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import CmadapterError
from .arguments import parse_assignments


def run_prepare(args: argparse.Namespace) -> int:
    import os

    from ..datasets import get_dataset, load_split
    from ..datasets.annotations import AnnotationFileMissing
    from ..video.cache import PrepareOptions, prepare_cache
    from ..video.sources import VideoFolder, VideoPaths

    log = logging.getLogger("cmadapter.prepare")
    spec = get_dataset(args.dataset)
    options = parse_assignments(args.option, "--option")
    if spec.annotations == "shards":
        return _prepare_shards(args, options)
    if args.videos is None:
        raise CmadapterError(f"prepare {args.dataset} needs --videos: the folder of its videos")
    splits = args.splits.split(",") if args.splits else list(spec.splits)
    video_ids: list[str] = []
    for split in splits:
        try:
            records = load_split(args.dataset, args.annotations, split, allow_empty=not args.splits, **options)
        except AnnotationFileMissing as exc:
            if args.splits:
                raise
            log.info("skipping %s/%s: %s", args.dataset, split, exc)
            continue
        if not records:  # e.g. a Karpathy file without val images
            log.info("skipping %s/%s: no records in the annotation files", args.dataset, split)
            continue
        items = len({r.video_id for r in records})
        log.info("%s/%s: %d records, %d %ss", args.dataset, split, len(records), items, spec.media)
        video_ids += [r.video_id for r in records]
    if not video_ids:
        raise CmadapterError(f"no {args.dataset} annotation files found in {args.annotations}")
    workers = args.workers if args.workers is not None else min(os.cpu_count() or 1, 8)
    if spec.ids_are_paths:  # a captions table: its video ids are paths under --videos
        videos = VideoPaths(args.videos, folder_fps=args.folder_fps)
    else:
        videos = VideoFolder(args.videos, aliases=spec.file_aliases, folder_fps=args.folder_fps)
    options = PrepareOptions(
        fps=args.fps, short_side=args.short_side, workers=workers, allow_truncated=args.allow_truncated
    )
    if args.ray is not None:
        from ..cluster.prepare import prepare_on_ray

        report = prepare_on_ray(video_ids, videos, args.out, options, address=args.ray)
    else:
        report = prepare_cache(video_ids, videos, args.out, options)
    truncated = f", {len(report.truncated)} truncated" + (" (cached as decoded)" if args.allow_truncated else "")
    print(
        f"{args.out}: {report.written} {spec.media}s decoded, {report.skipped} already cached, "
        f"{len(report.missing)} missing, {len(report.undecodable)} undecodable{truncated}"
    )
    if report.problems:
        print(f"the {spec.media}s not cached, or cached truncated, are listed in {report.report_file}", file=sys.stderr)
    return 0


def _prepare_shards(args: argparse.Namespace, options: dict) -> int:
    """Every sample of the shards (all splits) decoded into the cache; the scan's problems are reported."""
    import os

    from ..datasets.shard_cache import prepare_shard_cache
    from ..datasets.webdataset import shard_set
    from ..video.cache import PrepareOptions

    if args.ray is not None:
        raise CmadapterError("prepare webdataset decodes shard by shard on this machine; --ray is for video folders")
    shards = shard_set(args.annotations, options, "drop")
    workers = args.workers if args.workers is not None else min(os.cpu_count() or 1, 8)
    prepare = PrepareOptions(
        fps=args.fps, short_side=args.short_side, workers=workers, allow_truncated=args.allow_truncated
    )
    report = prepare_shard_cache(shards, list(shards.samples), args.out, prepare)
    print(
        f"{args.out}: {report.written} samples decoded, {report.skipped} already cached, "
        f"{len(report.missing)} refused by the scan, {len(report.undecodable)} undecodable, {len(report.truncated)} truncated"
    )
    if report.problems:
        print(f"the samples not cached are listed with shard and key in {report.report_file}", file=sys.stderr)
    return 0


def add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="decode every video of a dataset once into a frame cache")
    p.set_defaults(run=run_prepare)
    p.add_argument(
        "dataset", help="msrvtt, msvd, vatex, didemo, activitynet, flickr30k, mscoco, captions or webdataset"
    )
    p.add_argument(
        "--annotations",
        required=True,
        help="folder with the dataset's annotation files (captions: the table; webdataset: the shards)",
    )
    p.add_argument(
        "--videos", default=None, help="folder with the videos or images (any depth), or frame folders (not for shards)"
    )
    p.add_argument("--out", required=True, help="cache folder to create or complete")
    p.add_argument("--fps", type=float, default=1.0, help="grid points per second (default 1)")
    p.add_argument("--short-side", type=int, default=224, help="stored frame size: the model's input size")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: CPUs, at most 8)")
    p.add_argument("--splits", default=None, help="comma-separated splits (default: all with annotation files)")
    p.add_argument("--folder-fps", type=float, default=None, help="rate of pre-extracted frame folders (default --fps)")
    p.add_argument(
        "--allow-truncated",
        action="store_true",
        help="cache what decoded of videos that end before their declared duration (still listed in the report)",
    )
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="dataset reader options")
    add_ray_option(p, "decode on Ray: one task per video")


def add_ray_option(p, what: str) -> None:
    from ..cluster.ray_session import LOCAL

    p.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL,
        default=None,
        metavar="ADDRESS",
        help=f"{what}; ADDRESS of a running cluster ('auto' finds it), none: start Ray on this machine "
        "(pip install 'cmadapter[ray]')",
    )
