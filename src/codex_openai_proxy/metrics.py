"""Prometheus metrics for `GET /metrics` (prometheus-client, one registry per app).

A registry of its own, not the library's global one, so that several apps in one process (the
tests start many) never share or double-register series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from .plan_limits import PlanLimits

#: Routes as labels: a fixed set, so an unknown path cannot create a new series per request.
KNOWN_ROUTES = ("/v1/chat/completions", "/v1/responses", "/v1/models", "/v1/usage",
                "/healthz", "/metrics")
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
                 queue_length: Callable[[], float],
                 plan_limits: PlanLimits) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(PlanLimitsCollector(plan_limits))
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


#: The plan's limits as gauges: (name, help), by `PlanLimits.gauges`' metric.
PLAN_LIMIT_GAUGES = {
    "used_percent": ("codex_plan_limit_used_percent",
                     "Share of the ChatGPT plan's usage window used, as Codex last reported."),
    "window_minutes": ("codex_plan_limit_window_minutes", "Length of the usage window."),
    "resets_at_seconds": ("codex_plan_limit_resets_at_seconds",
                          "When the usage window resets (Unix time)."),
}


class PlanLimitsCollector(Collector):
    """The ChatGPT plan's limits, read at each scrape; a series appears once Codex has
    reported it (labels: `limit`, Codex's limit id, `codex` for the plan's own; `window`,
    `primary` or `secondary`)."""

    def __init__(self, limits: PlanLimits) -> None:
        self._limits = limits

    def collect(self) -> Iterator[Metric]:
        families = {metric: GaugeMetricFamily(name, text, labels=["limit", "window"])
                    for metric, (name, text) in PLAN_LIMIT_GAUGES.items()}
        for metric, limit_id, window, value in self._limits.gauges():
            families[metric].add_metric([limit_id, window], value)
        yield from families.values()
        balance = GaugeMetricFamily("codex_plan_credits_balance",
                                    "The ChatGPT plan's credits balance, as Codex last reported.")
        if (credits := self._limits.credits_balance()) is not None:
            balance.add_metric([], credits)
        yield balance
