"""Prometheus metrics for `GET /metrics` (prometheus-client, one registry per app).

A registry of its own, not the library's global one, so that several apps in one process (the
tests start many) never share or double-register series.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: Routes as labels: a fixed set, so an unknown path cannot create a new series per request.
KNOWN_ROUTES = ("/v1/chat/completions", "/v1/responses", "/v1/models", "/healthz",
                "/metrics")
#: How a Codex child ended, as the log line and the metrics say it.
CHILD_END_REASONS = ("ok", "failed", "killed_on_disconnect", "killed_on_timeout",
                     "killed_on_shutdown")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
                    600)


def route_label(path: str) -> str:
    if path.startswith("/v1/models/"):
        return "/v1/models/{id}"
    return path if path in KNOWN_ROUTES else "other"


class ProxyMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, *, children_running: Callable[[], float],
                 queue_length: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "codex_proxy_requests", "HTTP requests answered, by route and status.",
            ["route", "status"], registry=self.registry)
        self.duration = Histogram(
            "codex_proxy_request_duration_seconds",
            "From the request's arrival to the end of its response (streams included).",
            ["route"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.time_to_first_byte = Histogram(
            "codex_proxy_time_to_first_byte_seconds",
            "From the request's arrival to the first byte of its response body.",
            ["route"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.children_ended = Counter(
            "codex_proxy_children_ended", "Codex children ended, by how they ended.",
            ["reason"], registry=self.registry)
        running = Gauge("codex_proxy_children_running", "Codex children running now.",
                        registry=self.registry)
        running.set_function(children_running)
        queued = Gauge("codex_proxy_queue_length", "Requests waiting for a free Codex slot.",
                       registry=self.registry)
        queued.set_function(queue_length)
        for reason in CHILD_END_REASONS:  # every reason visible from the start, at 0
            self.children_ended.labels(reason)

    def render(self) -> bytes:
        return generate_latest(self.registry)
