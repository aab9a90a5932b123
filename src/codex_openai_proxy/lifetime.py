"""Each HTTP request's lifetime: its nursery, its log line and its metrics (ASGI middleware).

Work a request starts in the background (its Codex runner) goes into a nursery owned by the
request, so it can never outlive the request. The request ends when the ASGI call returns: the
response was sent, the client disconnected (quart-trio then cancels the handler and the body),
or the server cancelled it while shutting down. In every case the `finally` below cancels the
nursery and `async with` waits for the runner to finish stopping its child. Only then is the
request logged and counted, so the line can say how the child ended.

Why not tie the runner to the response body generator's `finally`: quart-trio only closes the
generator if it got as far as sending the response, and a generator's `finally` runs whenever
the garbage collector gets to it otherwise. An ASGI call, by contrast, always returns.

Two things about sending, both because hypercorn writes to the socket under a cancel shield:

* A client that takes nothing of the response for `PROXY_WRITE_TIMEOUT_S` is dropped
  (`SendWatch`): its connection is shut down under hypercorn (`connections.py`), which then
  sees the client gone, and the request's nursery is cancelled, which stops its Codex run.
  Without it a client that stopped reading held its request, its connection and (while the
  run lasted) its slot for as long as it pleased.
* The last message of a response is sent under a shield. Sending it makes hypercorn tell
  quart-trio the request is over, and quart-trio cancels the request at once, while hypercorn
  is still, in the same call, closing the connection (`Connection: close`) or marking it idle
  for its keep-alive timer. Cancelled there, a connection was neither closed nor known to be
  idle, so a shutdown waited for it for its whole graceful timeout.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import trio

from .connections import drop_client
from .log_text import log_safe
from .metrics import ProxyMetrics, route_label

log = logging.getLogger("codex_openai_proxy.requests")

NURSERY_SCOPE_KEY = "codex_openai_proxy.request_nursery"
RUN_SCOPE_KEY = "codex_openai_proxy.run"
#: Polled by monitors, so logged only at debug level.
QUIET_PATHS = frozenset({"/healthz", "/metrics"})


class RunRecord(Protocol):
    """What the request's log line and metrics need of the run it started (`runs.Run`)."""

    @property
    def end_reason(self) -> str: ...

    def log_fields(self) -> str: ...


class SendWatch:
    """Calls `on_stall` once a send has waited `timeout_s` for the client to take it.

    One task and one cancel scope per request: the scope's deadline is moved to each send's
    limit as the send begins and back to infinity as it ends, so the task wakes only if a send
    outlives its limit."""

    def __init__(self, timeout_s: float, on_stall: Callable[[], None]) -> None:
        self._timeout_s = timeout_s
        self._on_stall = on_stall
        self._limit = trio.CancelScope()

    async def run(self) -> None:
        with self._limit:
            await trio.sleep_forever()
        self._on_stall()  # only reached when the limit passed: any other cancel goes through

    @contextmanager
    def sending(self) -> Iterator[None]:
        self._limit.deadline = trio.current_time() + self._timeout_s
        try:
            yield
        finally:
            self._limit.deadline = math.inf


class RequestLifetimeMiddleware:
    def __init__(self, app: Any, metrics: ProxyMetrics, write_timeout_s: float) -> None:
        self.app = app
        self.metrics = metrics
        self.write_timeout_s = write_timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status: int | None = None
        first_byte: float | None = None

        async def observed_send(message: dict[str, Any]) -> None:
            nonlocal status, first_byte
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and message.get("body") \
                    and first_byte is None:
                first_byte = time.monotonic() - started
            last = message["type"] == "http.response.body" and not message.get("more_body")
            with watch.sending(), trio.CancelScope(shield=last):
                await send(message)

        def drop_stalled_client() -> None:
            log.warning("%s %s: the client took nothing of the response for %g s "
                        "(PROXY_WRITE_TIMEOUT_S): disconnecting it", scope["method"],
                        scope["path"], self.write_timeout_s)
            if not drop_client(scope.get("server"), scope.get("client")):
                log.warning("the connection of %s could not be found to close it",
                            scope.get("client"))
            nursery.cancel_scope.cancel()

        request_scope = {**scope}
        try:
            async with trio.open_nursery() as nursery:
                request_scope[NURSERY_SCOPE_KEY] = nursery
                watch = SendWatch(self.write_timeout_s, drop_stalled_client)
                nursery.start_soon(watch.run)
                try:
                    await self.app(request_scope, receive, observed_send)
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            # Cancelled or not, the request is over: it is logged and counted exactly once.
            self._record(scope, request_scope.get(RUN_SCOPE_KEY), status, first_byte,
                         time.monotonic() - started)

    def _record(self, scope: dict[str, Any], run: RunRecord | None, status: int | None,
                first_byte: float | None, duration: float) -> None:
        path, route = scope["path"], route_label(scope["path"])
        # No status means the response never started: the client left first.
        status_text = str(status) if status is not None else "disconnected"
        self.metrics.requests.labels(route, status_text).inc()
        self.metrics.duration.labels(route).observe(duration)
        if first_byte is not None:
            self.metrics.time_to_first_byte.labels(route).observe(first_byte)
        # The path is the client's (percent-decoded: `%0A` is a newline by now).
        fields = [f"{log_safe(scope['method'])} {log_safe(path)} {status_text} {duration:.3f}s"]
        if run is not None:
            self.metrics.children_ended.labels(run.end_reason).inc()
            fields.append(run.log_fields())
        level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
        log.log(level, "%s", " ".join(fields))


def request_nursery(scope: dict[str, Any]) -> trio.Nursery:
    return scope[NURSERY_SCOPE_KEY]


def attach_run(scope: dict[str, Any], run: RunRecord) -> None:
    """Tell the middleware which run this request started, for its log line and metrics."""
    scope[RUN_SCOPE_KEY] = run
