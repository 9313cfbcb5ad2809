"""The load ``cmadapter bench serve`` puts on a server: concurrent clients sending ``/api/search`` over HTTP.

Also a script, run by path with any cmadapter on ``PYTHONPATH``, so that today's code and an older checkout are
measured by the same load and the same clock, back to back:

    PYTHONPATH=/old/checkout/src python src/cmadapter/bench/serve_load.py INDEX --clients 1,8,32 --queries 200

It uses only what every version of the server has (``create_app``, ``running_server``), imports ``cmadapter``
absolutely, and prints one JSON object. Every request asks for different words (no answer comes from a cache),
the same sequence for every server. Besides latency and throughput it reports the process's CPU time over the
timed window (server and client threads together): on a shared machine, CPU seconds per query says what the
work costs when the wall clock is stretched by other processes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import product

if __name__ == "__main__" and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]  # run by path: this folder's serve.py, search.py … must not shadow anything

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "white")
SHAPES = ("square", "circle", "triangle", "cross", "ring", "diamond", "star")
MOTIONS = ("appears", "moves to the left", "spins slowly", "grows", "fades out", "bounces")
PLACES = ("in the corner", "at the top", "near the middle", "on a grey background", "twice")
QUERIES = tuple(f"a {c} {s} {m} {p}" for p, m, c, s in product(PLACES, MOTIONS, COLOURS, SHAPES))  # 1,680 phrases


def query(i: int) -> str:
    """The ``i``-th query's words: all different for the first 1,680, then with a number added."""
    words = QUERIES[i % len(QUERIES)]
    return words if i < len(QUERIES) else f"{words} {i // len(QUERIES)}"


def run_load(app, clients: list[int], queries: int, k: int = 10, timeout: float = 120.0) -> list[dict]:
    """Serve ``app`` on 127.0.0.1 and, for each client count in turn, send ``queries`` searches from that many
    concurrent clients (threads sharing one connection pool); one result per client count."""
    import httpx

    from cmadapter.serve.local_server import running_server

    results = []
    with running_server(app) as url, httpx.Client(base_url=url, timeout=timeout) as client:
        lock = threading.Lock()
        issued = [0]

        def one(latencies: list[float], errors: list[str]) -> None:
            with lock:
                number = issued[0]
                issued[0] += 1
            began = time.perf_counter()
            try:
                response = client.get("/api/search", params={"q": query(number), "k": k})
                ok = response.status_code == 200 and "results" in response.json()
                failure = None if ok else f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                failure = f"{type(exc).__name__}: {exc}"
            elapsed = time.perf_counter() - began
            with lock:
                latencies.append(elapsed)
                if failure:
                    errors.append(failure)

        for _ in range(2):  # the model and the FAISS index load on the first query: not part of the figures
            one([], [])
        for count in clients:
            latencies: list[float] = []
            errors: list[str] = []
            load = os.getloadavg()[0]
            cpu, began = time.process_time(), time.perf_counter()
            with ThreadPoolExecutor(count) as pool:
                list(pool.map(lambda _, a=latencies, b=errors: one(a, b), range(queries)))
            wall, cpu = time.perf_counter() - began, time.process_time() - cpu
            ordered = sorted(latencies)
            results.append(
                {
                    "clients": count,
                    "queries": queries,
                    "k": k,
                    "errors": len(errors),
                    "first_errors": errors[:5],
                    "p50_ms": 1000 * statistics.median(ordered),
                    "p95_ms": 1000 * ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
                    "max_ms": 1000 * ordered[-1],
                    "queries_per_second": queries / wall,
                    "wall_seconds": wall,
                    "cpu_seconds": cpu,
                    "cpu_ms_per_query": 1000 * cpu / queries,
                    "load_average": [load, os.getloadavg()[0]],
                }
            )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--max-batch", type=int, default=None, help="text queries per forward (servers that batch)")
    args = parser.parse_args(argv)
    import torch

    import cmadapter
    from cmadapter.serve.app import create_app

    if args.threads:
        torch.set_num_threads(args.threads)
    options = {}
    if args.max_batch is not None:
        from cmadapter.search.batching import BatchOptions
        from cmadapter.serve.app import ServeOptions

        options["options"] = ServeOptions(batching=BatchOptions(max_batch=args.max_batch))
    began = time.perf_counter()
    app = create_app(args.index, **options)
    results = run_load(app, [int(c) for c in args.clients.split(",")], args.queries, args.k)
    report = {
        "code": os.path.dirname(os.path.dirname(cmadapter.__file__)),
        "torch_threads": torch.get_num_threads(),
        "max_batch": args.max_batch,
        "seconds": time.perf_counter() - began,
        "results": results,
    }
    print(json.dumps(report))
    return 0 if all(r["errors"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
