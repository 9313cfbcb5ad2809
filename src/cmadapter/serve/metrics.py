"""``/metrics`` in Prometheus's text format: requests and latency per route, the index generation, the model.

    cmadapter_http_requests_total{route="/api/search",method="GET",status="200"} 12
    cmadapter_http_request_duration_seconds_bucket{route="/api/search",le="0.25"} 11
    cmadapter_index_generation 42
    cmadapter_model_load_seconds 3.1
    cmadapter_text_forwards_total 5                 # text-tower forwards; queries / forwards = the mean batch
    cmadapter_text_queries_total 12

Routes are labelled by their template (``/api/thumbs/{segment_id}/{frame}.jpg``), so labels stay few whatever
the ids; the page's files are ``page``, anything else ``unmatched``. Each app has its own registry (no global
state: several servers in one process, as the tests run them, never share counters).
"""

from __future__ import annotations

import math
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})  # any other is "other"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServeMetrics:
    def __init__(self, index):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cmadapter_http_requests", "HTTP requests answered", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "cmadapter_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        generation = Gauge("cmadapter_index_generation", "The index generation searches see", registry=self.registry)
        generation.set_function(lambda: index.generation)
        load = Gauge(
            "cmadapter_model_load_seconds",
            "Seconds the backbone took to load (NaN: not loaded yet, it loads on the first query)",
            registry=self.registry,
        )
        load.set_function(lambda: math.nan if index.model_load_seconds is None else index.model_load_seconds)
        self.registry.register(_BatchCollector(index))

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _BatchCollector:
    def __init__(self, index):
        self.index = index

    def collect(self):
        texts = self.index.models.texts
        yield CounterMetricFamily("cmadapter_text_forwards", "Forwards of the text tower", value=texts.batches)
        yield CounterMetricFamily("cmadapter_text_queries", "Text queries those forwards encoded", value=texts.items)


class MetricsMiddleware:
    """Counts every answer (refusals included) and times it, labelled by the route template it matched."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, routes):
        self.app, self.metrics, self.routes = app, metrics, routes

    def route_of(self, scope: Scope) -> str:
        for route in self.routes():
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return "page" if isinstance(route, Mount) else route.path
        return "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        began, route, status = time.perf_counter(), self.route_of(scope), [500]

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            method = scope.get("method", "")
            method = method if method in METHODS else "other"  # labels stay few whatever a client sends
            self.metrics.requests.labels(route, method, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - began)
