"""`index` and `search`: index a folder of your own videos, search it by text."""

from __future__ import annotations

import argparse
import json
import os
import time

from ..errors import CmadapterError
from .data_commands import add_ray_option

# Tests set this to slow `index` down (seconds inside each file's transaction) so they can kill it mid-run.
_TEST_DELAY = "CMADAPTER_INDEX_TEST_DELAY"


def run_index(args: argparse.Namespace) -> int:
    from ..search.build import BuildOptions, build_index

    adapters = {}
    for item in args.adapter:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise CmadapterError(f"--adapter must look like NAME=PATH, got {item!r}")
        adapters[name] = path
    delay = float(os.environ.get(_TEST_DELAY, "0") or 0)
    options = BuildOptions(
        fps=args.fps,
        window=args.window,
        stride=args.stride,
        factory=args.index_type,
        batch_size=args.batch_size,
        precision=args.precision,
        device=args.device,
        progress=not args.quiet,
    )
    started = time.perf_counter()
    build = build_index
    if args.ray is not None:
        from ..cluster.index import index_on_ray

        build = lambda *a, **k: index_on_ray(*a, address=args.ray, **k)
    report = build(
        args.videos,
        args.out,
        backbone=args.backbone,
        pretrained=args.pretrained,
        adapters=adapters,
        zero_shot=args.zero_shot,
        options=options,
        on_file=(lambda path: time.sleep(delay)) if delay else None,
    )
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    seconds = time.perf_counter() - started
    encoded = ", ".join(f"{name}: {e['files']} files, {e['frames']} frames" for name, e in report.encoded.items())
    print(
        f"{args.out}: {report.files} files, {report.segments} segments, {report.frames} frames "
        f"({len(report.new)} new, {len(report.changed)} changed, {report.unchanged} unchanged, "
        f"{len(report.deleted)} removed) in {seconds:.1f} s; encoded {encoded}; FAISS {report.factory or '-'}"
    )
    if report.skipped_other:
        print(f"skipped {report.skipped_other} files that are not videos")
    if report.problems:
        print(f"{len(report.problems)} files could not be indexed:")
        for path, reason in report.problems.items():
            print(f"  {path}: {reason}")
    return 0


def run_search(args: argparse.Namespace) -> int:
    from ..search.api import VideoIndex
    from ..search.faiss_index import SearchParams

    params = SearchParams(nprobe=args.nprobe, ef_search=args.ef_search)
    with VideoIndex.open(args.index, device=args.device, params=params) as index:
        found = index.search(args.query, args.k, adapter=args.adapter, candidates=args.candidates)
    if args.json:
        print(json.dumps(found.to_dict()))
        return 0
    print(
        f"{len(found.results)} videos for {args.query!r} (adapter {found.adapter}, {1000 * found.seconds['total']:.0f} ms)"
    )
    for rank, video in enumerate(found.results, 1):
        best = video.best
        more = f"  (+{len(video.others)} more segments)" if video.others else ""
        print(
            f"{rank:>3}. {best.score:.4f}  {best.video}  {_clock(best.start)}-{_clock(best.end)}"
            f"  best frame {_clock(best.best_frame_time)}{more}"
        )
    return 0


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:04.1f}"


def add_index(sub) -> None:
    p = sub.add_parser("index", help="index your own videos for text search (incremental, resumable)")
    p.set_defaults(run=run_index)
    p.add_argument("videos", nargs="+", help="video files or folders (walked recursively; frame folders too)")
    p.add_argument("--out", required=True, help="the index folder (created, or updated when it exists)")
    p.add_argument("--backbone", default=None, help="open_clip model name")
    p.add_argument("--pretrained", default=None, help="CLIP weights file (architecture read off it) or open_clip tag")
    p.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH", help="an adapter to index with")
    p.add_argument("--zero-shot", action="store_true", help="also index with the plain backbone")
    p.add_argument("--fps", type=float, default=None, help="frames per second (default 1)")
    p.add_argument("--window", type=float, default=None, help="segment length, seconds (default 12 frames' worth)")
    p.add_argument("--stride", type=float, default=None, help="segment step, seconds (default half a window)")
    p.add_argument("--index-type", default=None, help="FAISS factory string: Flat, SQfp16, SQ8, IVF1024,PQ64, HNSW32")
    p.add_argument("--batch-size", type=int, default=64, help="frames per encoder batch")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the build report as one JSON object")
    add_ray_option(p, "decode and encode on Ray: a task per file, model actors (one per GPU)")


def add_search(sub) -> None:
    p = sub.add_parser("search", help="search an index by text")
    p.set_defaults(run=run_search)
    p.add_argument("index", help="an index folder written by `cmadapter index`")
    p.add_argument("query", help="what to look for")
    p.add_argument("-k", type=int, default=10, help="videos to return")
    p.add_argument("--adapter", default=None, help="which of the index's adapters (default: the first indexed)")
    p.add_argument("--candidates", type=int, default=None, help="segments stage 2 re-ranks (default max(200, 10k))")
    p.add_argument("--nprobe", type=int, default=32, help="IVF lists to visit")
    p.add_argument("--ef-search", type=int, default=128, help="HNSW search depth")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help='print {"results": [{"video", "start", "end", "score", …}]}')
