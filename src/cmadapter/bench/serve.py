"""``cmadapter bench serve``: a bounded load test of the web API on 127.0.0.1 (queries from concurrent clients).

The server runs in this process on a free local port; the clients are threads sending ``/api/search``
requests over HTTP, so the figures include HTTP, JSON and FastAPI's thread pool, not only the search.
"""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from .machine import describe_machine

QUERIES = (
    "a red square appears and then a blue ring",
    "a green circle",
    "a white cross and a yellow star",
    "something purple moves to the left",
    "an orange diamond then a cyan triangle",
)


@dataclass(frozen=True)
class ServeBenchSettings:
    index: Path
    queries: int = 200
    clients: int = 8
    k: int = 10
    timeout: float = 60.0


def benchmark(settings: ServeBenchSettings) -> dict:
    import httpx

    from ..serve.app import create_app
    from ..serve.local_server import running_server

    app = create_app(settings.index)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(i: int, client: httpx.Client) -> None:
        began = time.perf_counter()
        try:
            response = client.get("/api/search", params={"q": QUERIES[i % len(QUERIES)], "k": settings.k})
            ok = response.status_code == 200 and "results" in response.json()
            failure = None if ok else f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            failure = f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - began
        with lock:
            latencies.append(elapsed)
            if failure:
                errors.append(failure)

    with running_server(app) as url, httpx.Client(base_url=url, timeout=settings.timeout) as client:
        one(0, client)  # the model and FAISS index load on the first query: not part of the figures
        latencies.clear()
        began = time.perf_counter()
        with ThreadPoolExecutor(settings.clients) as pool:
            list(pool.map(lambda i: one(i, client), range(settings.queries)))
        wall = time.perf_counter() - began
    ordered = sorted(latencies)
    return {
        "machine": describe_machine(torch.device("cpu")),
        "index": str(settings.index),
        "queries": settings.queries,
        "clients": settings.clients,
        "k": settings.k,
        "errors": len(errors),
        "first_errors": errors[:5],
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "max_ms": 1000 * ordered[-1],
        "queries_per_second": settings.queries / wall,
    }


def format_table(report: dict) -> str:
    return (
        f"{report['queries']} queries from {report['clients']} clients on 127.0.0.1, k={report['k']}: "
        f"{report['errors']} errors, p50 {report['p50_ms']:.1f} ms, p95 {report['p95_ms']:.1f} ms, "
        f"max {report['max_ms']:.1f} ms, {report['queries_per_second']:.1f} queries/s"
    )
