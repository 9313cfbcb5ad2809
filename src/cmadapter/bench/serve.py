"""``cmadapter bench serve``: a bounded load test of the web API on 127.0.0.1, and a comparison with older code.

    cmadapter bench serve INDEX --clients 8                         # this code, in this process
    cmadapter bench serve INDEX --build                             # first make INDEX: ViT-B/32, random weights
    cmadapter bench serve INDEX --clients 1,8,32 --against /old/checkout/src --rounds 2
    cmadapter bench serve INDEX --against /old/checkout/src --against-index OLD_INDEX    # an older index version

The clients are threads sending ``/api/search`` requests over HTTP (``serve_load.py``), so the figures include
HTTP, JSON and the server's thread pool, not only the search; every request asks for different words. With
``--against SRC`` each round runs this code and the code under SRC in fresh processes, one after the other (the
order alternating between rounds), each with the same load script and the same torch threads, and reports both,
with their CPU time per query. Code that cannot read this code's index version serves ``--against-index``, the
same videos indexed by that code with the same weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..errors import CmadapterError
from .machine import describe_machine

LOAD_SCRIPT = Path(__file__).with_name("serve_load.py")
THIS_CODE = Path(__file__).resolve().parents[2]  # the folder that holds the cmadapter package


@dataclass(frozen=True)
class ServeBenchSettings:
    index: Path
    queries: int = 200
    clients: int | tuple[int, ...] = 8
    k: int = 10
    timeout: float = 120.0
    against_index: Path | None = None  # the baseline's own index, when it cannot read ``index``


def benchmark(settings: ServeBenchSettings) -> dict:
    """This code's server in this process, under each client count in turn."""
    from ..serve.app import create_app
    from .serve_load import run_load

    clients = (settings.clients,) if isinstance(settings.clients, int) else settings.clients
    results = run_load(create_app(settings.index), list(clients), settings.queries, settings.k, settings.timeout)
    return {
        "machine": describe_machine(torch.device("cpu")),
        "index": str(settings.index),
        **(results[0] if len(results) == 1 else {"results": results}),
    }


def compare(settings: ServeBenchSettings, against: Path, *, rounds: int = 1, threads: int | None = None) -> dict:
    """This code and the code under ``against`` (a ``src`` folder), each in fresh processes, back to back."""
    if not (Path(against) / "cmadapter" / "serve" / "app.py").is_file():
        raise CmadapterError(f"--against {against}: not a source folder holding cmadapter/serve/app.py")
    clients = (settings.clients,) if isinstance(settings.clients, int) else settings.clients
    codes = {"this": THIS_CODE, "baseline": Path(against).resolve()}
    runs: dict[str, list[dict]] = {name: [] for name in codes}
    for round_number in range(rounds):
        order = list(codes) if round_number % 2 == 0 else list(reversed(codes))
        for name in order:
            index = settings.against_index if name == "baseline" and settings.against_index else settings.index
            runs[name].append(_run_child(codes[name], index, settings, clients, threads))
    return {
        "machine": describe_machine(torch.device("cpu")),
        "index": str(settings.index),
        "baseline_index": str(settings.against_index or settings.index),
        "codes": {name: str(path) for name, path in codes.items()},
        "rounds": rounds,
        "torch_threads": threads,
        "runs": runs,
        "summary": _summary(runs, clients),
    }


def _run_child(code: Path, index: Path, settings: ServeBenchSettings, clients, threads: int | None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code)}
    command = [sys.executable, str(LOAD_SCRIPT), str(index), "--clients", ",".join(map(str, clients))]
    command += ["--queries", str(settings.queries), "-k", str(settings.k)]
    if threads:
        command += ["--threads", str(threads)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as exc:
        raise CmadapterError(f"the load run of {code} failed: {done.stderr.strip()[-800:]}") from exc


def _summary(runs: dict[str, list[dict]], clients) -> list[dict]:
    """Per client count and code: the median over rounds of each figure, and this code's ratios."""
    rows = []
    for count in clients:
        row: dict = {"clients": count}
        for name, reports in runs.items():
            results = [next(r for r in report["results"] if r["clients"] == count) for report in reports]
            row[name] = {
                key: float(np.median([r[key] for r in results]))
                for key in ("p50_ms", "p95_ms", "queries_per_second", "cpu_ms_per_query")
            }
            row[name]["errors"] = sum(r["errors"] for r in results)
        row["throughput_ratio"] = row["this"]["queries_per_second"] / row["baseline"]["queries_per_second"]
        row["cpu_per_query_ratio"] = row["baseline"]["cpu_ms_per_query"] / row["this"]["cpu_ms_per_query"]
        rows.append(row)
    return rows


def build_bench_index(index: Path, *, videos: int = 24, seconds: int = 30, backbone: str = "ViT-B-32-quickgelu"):
    """An index of ``videos`` synthetic clips (colour-block patterns at 1 fps) encoded by ``backbone`` with random
    weights, saved beside it (``weights.pt``) so that the server loads the very weights the frames were encoded with."""
    import av

    from ..search.api import VideoIndex
    from ..search.build import BuildOptions
    from .random_weights import save_random_weights

    folder = Path(index).parent / f"{Path(index).name}-videos"
    weights = Path(index).parent / f"{Path(index).name}-weights.pt"
    if not weights.is_file():
        save_random_weights(backbone, weights)
    for number in range(videos):
        path = folder / f"clip{number:03d}.mp4"
        if path.is_file():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(number)
        blocks = rng.integers(0, 256, (6, 16, 3), dtype=np.uint8)
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=1)
            stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
            for second in range(seconds):
                picture = np.roll(blocks, -second, axis=1)[:, :8].repeat(40, axis=0).repeat(40, axis=1)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
                frame.pts, frame.time_base = second, Fraction(1, 1)
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
    return VideoIndex.build([folder], index, pretrained=str(weights), options=BuildOptions(progress=False))


def format_table(report: dict) -> str:
    if "summary" in report:
        lines = [
            "| clients | code | p50 | p95 | queries/s | CPU ms/query | errors |",
            "|---:|---|---:|---:|---:|---:|---:|",
        ]
        for row in report["summary"]:
            for name in ("baseline", "this"):
                r = row[name]
                lines.append(
                    f"| {row['clients']} | {name} | {r['p50_ms']:.0f} ms | {r['p95_ms']:.0f} ms |"
                    f" {r['queries_per_second']:.1f} | {r['cpu_ms_per_query']:.1f} | {r['errors']} |"
                )
            lines.append(
                f"| {row['clients']} | ratio | | | {row['throughput_ratio']:.2f}x | {row['cpu_per_query_ratio']:.2f}x less | |"
            )
        return "\n".join(lines)
    results = report.get("results", [report])
    return "\n".join(
        f"{r['queries']} queries from {r['clients']} clients on 127.0.0.1, k={r['k']}: {r['errors']} errors, "
        f"p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, max {r['max_ms']:.1f} ms, "
        f"{r['queries_per_second']:.1f} queries/s, {r['cpu_ms_per_query']:.1f} ms CPU per query"
        for r in results
    )
