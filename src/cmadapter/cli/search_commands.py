"""`index` and `search`: index a folder of your own videos, search it by text."""

from __future__ import annotations

import argparse
import json
import os
import time

from ..errors import CmadapterError
from ..search.files import display_path
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
        decode_workers=args.decode_workers,
        skip_similar=args.skip_similar,
        wait=None if args.wait is not None and args.wait < 0 else args.wait or 0.0,
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
        f"{display_path(args.out)}: {report.files} files, {report.segments} segments, {report.frames} frames "
        f"({len(report.new)} new, {len(report.changed)} changed, {report.unchanged} unchanged, "
        f"{len(report.deleted)} removed) in {seconds:.1f} s; encoded {encoded}; FAISS {report.factory or '-'}"
    )
    if report.skipped_other:
        print(f"skipped {report.skipped_other} files that are not videos")
    if report.renamed:
        print(f"{len(report.renamed)} files were renamed (their features kept)")
    if report.problems:
        print(f"{len(report.problems)} files could not be indexed:")
        for path, reason in report.problems.items():
            print(f"  {display_path(path)}: {reason}")
    return 0


def run_search(args: argparse.Namespace) -> int:
    from ..search.api import VideoIndex
    from ..search.faiss_index import SearchParams
    from ..search.queries import parse_moment

    given = [
        f for f, value in (("QUERY", args.query), ("--image", args.image), ("--like", args.like)) if value is not None
    ]
    if len(given) != 1:
        raise CmadapterError(
            f"search needs one of QUERY (words), --image PHOTO or --like VIDEO@TIME, got {given or 'none'}"
        )
    if args.vector and args.query is None:
        raise CmadapterError("--vector prints the stage-1 vector of words: give QUERY")
    params = SearchParams(nprobe=args.nprobe, ef_search=args.ef_search)
    options = {"adapter": args.adapter, "candidates": args.candidates}
    with VideoIndex.open(args.index, device=args.device, params=params) as index:
        if args.vector:
            adapter, vector = index.query_vector(args.query, adapter=args.adapter)
            print(json.dumps({"query": args.query, "adapter": adapter, "vector": [round(float(v), 7) for v in vector]}))
            return 0
        if args.image:
            found = index.search_image(args.image, args.k, **options)
        elif args.like:
            video, seconds = parse_moment(args.like)
            found = index.search_like(video, seconds, args.k, **options)
        else:
            found = index.search(args.query, args.k, **options)
    if args.json:
        print(json.dumps(found.to_dict()))
        return 0
    what = {"text": repr(found.query), "image": f"the picture {found.query}", "like": f"like {found.query}"}[found.kind]
    print(f"{len(found.results)} videos for {what} (adapter {found.adapter}, {1000 * found.seconds['total']:.0f} ms)")
    for rank, video in enumerate(found.results, 1):
        best = video.best
        more = f"  (+{len(video.others)} more segments)" if video.others else ""
        print(
            f"{rank:>3}. {best.score:.4f}  {display_path(best.video)}  {_clock(best.start)}-{_clock(best.end)}"
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
    p.add_argument("--decode-workers", type=int, default=1, help="threads decoding while the model encodes")
    p.add_argument(
        "--skip-similar",
        type=float,
        default=0.0,
        metavar="LEVELS",
        help="reuse the features of the last encoded frame for a frame whose 16x16 gray thumbnail differs from "
        "it by less than LEVELS (0-255, mean absolute difference); 0 encodes every frame",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="encoding precision, fixed when the index is created (auto: bf16 on a GPU or a CPU with AMX or "
        "AVX512-BF16, else fp32)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--wait",
        type=float,
        nargs="?",
        const=-1,
        default=None,
        metavar="SECONDS",
        help="when another `index` run is updating the folder, wait for it (for SECONDS, or as long as it takes) "
        "instead of stopping",
    )
    p.add_argument("--json", action="store_true", help="print the build report as one JSON object")
    add_ray_option(p, "decode and encode on Ray: a task per file, model actors (one per GPU)")


def add_search(sub) -> None:
    p = sub.add_parser("search", help="search an index by text, by a picture, or by a moment of an indexed video")
    p.set_defaults(run=run_search)
    p.add_argument("index", help="an index folder written by `cmadapter index`")
    p.add_argument("query", nargs="?", help="what to look for, in words")
    p.add_argument("--image", metavar="PHOTO", help="look for what a picture shows (JPEG, PNG, WebP, BMP, GIF)")
    p.add_argument(
        "--like",
        metavar="VIDEO@TIME",
        help="look for moments like this one of an indexed video (its path or id; TIME: seconds or m:ss)",
    )
    p.add_argument(
        "--vector", action="store_true", help="print the words' stage-1 vector as JSON (to query an export elsewhere)"
    )
    p.add_argument("-k", type=int, default=10, help="videos to return")
    p.add_argument("--adapter", default=None, help="which of the index's adapters (default: the first indexed)")
    p.add_argument("--candidates", type=int, default=None, help="segments stage 2 re-ranks (default max(200, 10k))")
    p.add_argument("--nprobe", type=int, default=32, help="IVF lists to visit")
    p.add_argument("--ef-search", type=int, default=128, help="HNSW search depth")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help='print {"results": [{"video", "start", "end", "score", …}]}')
