"""`cmadapter bench search`: two-stage search latency, memory and recall on synthetic segment features.

The features imitate CLIP's (raw frame features of norm ~10, text ~8) with structure that makes the
exact head's ranking differ from the segment means': segments fall in clusters (similar content), and
each segment's frames vary around its own mean (a video's moments). A query is a noisy copy of one
frame of a random segment, so the head's text-conditioned pooling (which weights the matching frame)
ranks segments differently than their mean vectors do. Frame features live in an fp16 memory-mapped
file (12 GB at 1M segments x 12 x 512) made chunk by chunk, as an index's store lives on disk.

Per FAISS factory: stage-1 build time and bytes, and per query (one at a time, text encoding excluded
and timed apart) p50/p95 of stage 1 + fetching the candidates' frames + the head over them, as wall-clock
time and as the thread's CPU time (queries run on one thread, so on a machine shared with other work the
CPU time is what a query costs, the wall-clock time what it waited too); recall@10
of the two-stage top 10 against the exact head over *every* segment (computed in chunks).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..heads import TextConditionedPool
from ..search.faiss_index import AnnIndex, SearchParams
from ..search.query import two_stage

log = logging.getLogger(__name__)

FRAME_NORM, TEXT_NORM = 10.0, 8.0


@dataclass
class SearchBenchSettings:
    sizes: list[int] = field(default_factory=lambda: [10_000, 100_000, 1_000_000])
    factories: list[str] = field(default_factory=lambda: ["Flat", "SQfp16", "SQ8", "IVF1024,PQ64", "HNSW32"])
    frames: int = 12
    dim: int = 512
    queries: int = 100  # timed, and scored for recall
    k: int = 10
    candidates: int = 200
    nprobe: int = 32
    ef_search: int = 128
    chunk: int = 20_000  # segments generated / scored at a time
    seed: int = 0
    threads: int = 1  # torch and FAISS threads for queries (one query at a time; see docs/BENCHMARKS.md)
    workdir: str | None = None
    text_backbone: str | None = "ViT-B-32-quickgelu"  # random weights; None skips timing text encoding


@dataclass
class Synthetic:
    frames: np.ndarray  # float16 memmap [N, F, D]
    vectors: np.ndarray  # float32 [N, D]: the normalised mean of each segment's frames
    queries: torch.Tensor  # float32 [Q, D]


def make_features(n: int, settings: SearchBenchSettings, folder: Path) -> Synthetic:
    rng = np.random.default_rng(settings.seed)
    f, d = settings.frames, settings.dim
    centers = _unit(rng.standard_normal((max(n // 100, 10), d), dtype=np.float32))
    frames = np.lib.format.open_memmap(folder / f"frames-{n}.npy", mode="w+", dtype=np.float16, shape=(n, f, d))
    vectors = np.empty((n, d), np.float32)
    for start in range(0, n, settings.chunk):
        stop = min(start + settings.chunk, n)
        rows = stop - start
        means = centers[rng.integers(0, len(centers), rows)] + 0.7 * _unit(
            rng.standard_normal((rows, d), dtype=np.float32)
        )
        moments = _unit(rng.standard_normal((rows, f, d), dtype=np.float32))
        block = (FRAME_NORM * _unit(means[:, None] + 0.9 * moments)).astype(np.float16)
        frames[start:stop] = block
        vectors[start:stop] = _unit(block.astype(np.float32).mean(axis=1))
    frames.flush()
    picks = rng.integers(0, n, settings.queries), rng.integers(0, f, settings.queries)
    seen = frames[picks[0], picks[1]].astype(np.float32)
    queries = TEXT_NORM * _unit(_unit(seen) + 0.6 * _unit(rng.standard_normal(seen.shape, dtype=np.float32)))
    return Synthetic(frames=frames, vectors=vectors, queries=torch.from_numpy(queries))


def exact_top(head, syn: Synthetic, k: int, chunk: int) -> np.ndarray:
    """Top-k segment rows of every query under the exact head over all segments: int64 [Q, k]."""
    best_scores = torch.full((len(syn.queries), k), -float("inf"))
    best_rows = torch.zeros((len(syn.queries), k), dtype=torch.long)
    for start in range(0, len(syn.frames), chunk):
        block = torch.from_numpy(np.asarray(syn.frames[start : start + chunk], dtype=np.float32))
        mask = torch.ones(block.shape[:2], dtype=torch.bool)
        scores = head(syn.queries, block, mask, torch.ones(()))  # [Q, chunk] cosines
        rows = torch.arange(start, start + len(block)).expand_as(scores)
        merged_scores = torch.cat([best_scores, scores], dim=1)
        merged_rows = torch.cat([best_rows, rows], dim=1)
        top = torch.topk(merged_scores, k, dim=1)
        best_scores, best_rows = top.values, torch.gather(merged_rows, 1, top.indices)
    return best_rows.numpy()


def run_factory(factory: str, syn: Synthetic, reference: np.ndarray, settings: SearchBenchSettings) -> dict:
    import faiss

    head = TextConditionedPool()
    began = time.perf_counter()
    faiss.omp_set_num_threads(max(settings.threads, torch.get_num_interop_threads(), 2))  # training may use every core
    ann = AnnIndex.build(syn.vectors, np.arange(len(syn.vectors)), factory)
    faiss.omp_set_num_threads(settings.threads)
    build_seconds = time.perf_counter() - began
    params = SearchParams(nprobe=settings.nprobe, ef_search=settings.ef_search)

    def fetch(ids: np.ndarray, limit: int):
        ids = ids[:limit]
        order = np.sort(ids)  # a memmap reads sorted rows faster; give them back in the asked order
        block = torch.from_numpy(syn.frames[order][np.searchsorted(order, ids)]).float()
        return ids, block, torch.ones(block.shape[:2], dtype=torch.bool)

    latencies, cpu, stage1, recalls = [], [], [], []
    for q in range(-3, len(syn.queries)):  # three untimed warm-up queries
        text = syn.queries[max(q, 0)]
        began, began_cpu = time.perf_counter(), time.thread_time()
        ids, _, _ = two_stage(text, ann, fetch, head, candidates=settings.candidates, params=params)
        elapsed, elapsed_cpu = time.perf_counter() - began, time.thread_time() - began_cpu
        if q < 0:
            continue
        latencies.append(elapsed)
        cpu.append(elapsed_cpu)
        recalls.append(len(set(ids[: settings.k].tolist()) & set(reference[q].tolist())) / settings.k)
        began = time.perf_counter()
        ann.search(torch.nn.functional.normalize(text, dim=0).numpy()[None], settings.candidates, params)
        stage1.append(time.perf_counter() - began)
    return {
        "factory": factory,
        "segments": len(syn.vectors),
        "build_s": round(build_seconds, 2),
        "ann_mb": round(ann.nbytes() / 2**20, 1),
        "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 2),
        "p95_ms": round(1000 * float(np.percentile(latencies, 95)), 2),
        "cpu_p50_ms": round(1000 * float(np.percentile(cpu, 50)), 2),
        "cpu_p95_ms": round(1000 * float(np.percentile(cpu, 95)), 2),
        "stage1_p50_ms": round(1000 * float(np.percentile(stage1, 50)), 2),
        "recall_at_k": round(float(np.mean(recalls)), 4),
    }


def text_encoding_ms(backbone: str, repeats: int = 20) -> float:
    from ..model import build_model

    model = build_model(backbone, None, method=None).eval()
    tokens = model.tokenize(["a dog catches a frisbee in the park"])
    times = []
    with torch.no_grad():
        for _ in range(repeats + 2):
            began = time.perf_counter()
            model.encode_text(tokens)
            times.append(time.perf_counter() - began)
    return round(1000 * float(np.median(times[2:])), 2)


def benchmark(settings: SearchBenchSettings) -> dict:
    import faiss

    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    faiss.omp_set_num_threads(settings.threads)
    try:
        return _benchmark(settings)
    finally:  # the process's thread counts as they were
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)


def _benchmark(settings: SearchBenchSettings) -> dict:
    rows = []
    with tempfile.TemporaryDirectory(dir=settings.workdir, prefix="bench-search-") as tmp:
        for n in settings.sizes:
            log.info("%d segments: generating features", n)
            syn = make_features(n, settings, Path(tmp))
            began = time.perf_counter()
            reference = exact_top(TextConditionedPool(), syn, settings.k, settings.chunk)
            exhaustive_s = time.perf_counter() - began
            # How far the segment means alone are from the head: recall@k of a Flat scan with no stage 2.
            means_top = (
                np.argsort(-(syn.queries.numpy() @ syn.vectors.T), axis=1)[:, : settings.k] if n <= 100_000 else None
            )
            for factory in settings.factories:
                if ("IVF" in factory and n < 100_000) or ("HNSW" in factory and n > 100_000):
                    continue  # 1024 lists want more than 10k segments; a 1M-node graph takes too long to build here
                log.info("%d segments: %s", n, factory)
                row = run_factory(factory, syn, reference, settings)
                row["exhaustive_head_s_per_query"] = round(exhaustive_s / len(syn.queries), 3)
                if means_top is not None:
                    row["means_only_recall"] = round(
                        float(np.mean([len(set(a) & set(b)) / settings.k for a, b in zip(means_top, reference)])), 4
                    )
                rows.append(row)
                log.info("result %s", row)  # a long run's finished rows survive an interruption
            del syn
            for path in Path(tmp).glob("*.npy"):
                path.unlink()
    flat = {r["segments"]: r["ann_mb"] for r in rows if r["factory"] == "Flat"}
    for row in rows:
        if row["segments"] in flat:
            row["memory_vs_flat"] = round(row["ann_mb"] / flat[row["segments"]], 3)
    report = {"rows": rows, "settings": settings.__dict__, "threads": torch.get_num_threads()}
    if settings.text_backbone:
        report["text_encoding_ms"] = text_encoding_ms(settings.text_backbone)
    return report


def format_table(report: dict) -> str:
    lines = [
        "| segments | index | build (s) | stage-1 MB | vs Flat | p50 (ms) | p95 (ms) | CPU p50 (ms) | CPU p95 (ms) "
        "| stage 1 p50 (ms) | recall@10 |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['segments']:,} | {r['factory']} | {r['build_s']} | {r['ann_mb']} | {r.get('memory_vs_flat', '-')} "
            f"| {r['p50_ms']} | {r['p95_ms']} | {r['cpu_p50_ms']} | {r['cpu_p95_ms']} | {r['stage1_p50_ms']} "
            f"| {r['recall_at_k']:.4f} |"
        )
    if "text_encoding_ms" in report:
        lines.append(
            f"\ntext encoding (one query, {report['settings']['text_backbone']}): {report['text_encoding_ms']} ms"
        )
    return "\n".join(lines)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def indexing_throughput(
    videos: list[Path], *, backbone: str | None, pretrained: str | None, precision: str, workdir: str | None = None
) -> dict:
    """``build_index`` on real video files: videos/s and frames/s, decoding and encoding timed apart."""
    from ..search.build import BuildOptions, build_index

    with tempfile.TemporaryDirectory(dir=workdir, prefix="bench-index-") as tmp:
        began = time.perf_counter()
        report = build_index(
            videos,
            Path(tmp) / "index",
            backbone=backbone,
            pretrained=pretrained,
            options=BuildOptions(precision=precision, progress=False),
        )
        total = time.perf_counter() - began
    seconds = report.seconds
    work = sum(seconds.values())  # per-file work and FAISS; the rest is loading the model once
    return {
        "videos": report.files,
        "frames": report.frames,
        "problems": report.problems,
        "total_s": round(total, 2),
        "startup_s": round(total - work, 2),
        "seconds": {k: round(v, 4) for k, v in seconds.items()},  # a tiny test run encodes in ~5 ms
        "videos_per_s": round(report.files / work, 3),
        "frames_per_s": round(report.frames / work, 2),
        "decode_frames_per_s": round(report.frames / max(seconds["decode"], 1e-9), 2),
        "encode_frames_per_s": round(report.frames / max(seconds["encode"], 1e-9), 2),
        "backbone": backbone or pretrained,
        "precision": precision,
    }


def format_indexing(result: dict) -> str:
    s = result["seconds"]
    return (
        f"indexing {result['videos']} videos, {result['frames']} frames ({result['backbone']}, {result['precision']}): "
        f"{result['total_s']} s ({result['startup_s']} s loading the model), {result['videos_per_s']} videos/s, {result['frames_per_s']} frames/s; "
        f"decode {s['decode']} s ({result['decode_frames_per_s']} frames/s), encode {s['encode']} s "
        f"({result['encode_frames_per_s']} frames/s), hash {s['hash']} s, write {s['write']} s, FAISS {s['ann']} s"
    )
