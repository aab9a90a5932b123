"""The HTTP API (quart-trio): OpenAI's Chat Completions and Models endpoints over Codex runs.

Everything that can go wrong is answered in OpenAI's error shape, with a status clients know
how to treat: 4xx for the request, 429 for a full queue, 502/503/504 for Codex (those with
`x-should-retry: false`, since the OpenAI SDKs would otherwise start a fresh Codex run twice).
"""

from __future__ import annotations

import contextlib
import gc
import hmac
import json
import logging
import math
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from functools import partial
from typing import Any, Protocol

import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from . import errors
from .answer import Failed, Finished, Output
from .catalog import ModelCatalog, model_object
from .chat_request import ChatRequest, InputLimits, read_chat_request
from .codex_setup import CodexLocator
from .engines import choose_engine
from .errors import ApiError
from .lifetime import RequestLifetimeMiddleware, attach_run, request_nursery
from .log_text import log_safe
from .metrics import ProxyMetrics
from .openai_format import (
    ChunkStream,
    CompletionBuilder,
    new_completion_id,
)
from .responses_format import ResponseBuilder, ResponseObject, ResponseStream, new_response_id
from .responses_request import read_responses_request
from .runs import Run, RunManager
from .settings import Settings

log = logging.getLogger(__name__)


def _http_error(error: HTTPException, settings: Settings) -> ApiError:
    status = error.code or 500
    if status == 404:
        return errors.unknown_url(request.method, request.path)
    if status == 405:
        return errors.method_not_allowed(request.method, request.path)
    if status == 413:
        return errors.request_too_large(settings.max_body_mb)
    if status == 408:
        return errors.request_timeout()
    return errors.http_error(status, error.description or error.name)


#: Bodies larger than this are read and checked in a worker thread, with the pure-Python JSON
#: scanner: 15 MB of small messages took the event loop 6.5 s (issue 17), and even the C
#: scanner alone, which holds the GIL throughout, takes ~0.3 s. Below it, reading takes a few
#: milliseconds at most, less than handing the work to a thread would save.
OFFLOAD_BODY_BYTES = 64 * 1024
#: The GIL switch interval while a large body is read (see `_reading_apart`).
LARGE_BODY_SWITCH_INTERVAL_S = 0.0005

#: Statuses sent before the request body was read. The unread body would stall the next
#: request on the same keep-alive connection (hypercorn stops reading a body the app does not
#: consume), so these responses close the connection.
BODY_UNREAD_STATUSES = frozenset({401, 404, 405, 408, 413})


def error_response(error: ApiError) -> Response:
    response = Response(json.dumps(error.body()), status=error.status,
                        content_type="application/json")
    response.headers.update(error.headers)
    if error.status in BODY_UNREAD_STATUSES and request.http_version in ("1.0", "1.1"):
        response.headers["Connection"] = "close"
    return response


def create_app(settings: Settings, manager: RunManager, locator: CodexLocator,
               catalog: ModelCatalog) -> QuartTrio:
    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    metrics = ProxyMetrics(children_running=lambda: len(manager.active),
                           queue_length=lambda: manager.queued,
                           plan_limits=manager.plan_limits)
    app.asgi_app = RequestLifetimeMiddleware(  # type: ignore[method-assign]
        app.asgi_app, metrics, settings.write_timeout_s)
    created = int(time.time())
    limits = InputLimits(max_image_bytes=settings.max_image_bytes,
                         max_image_pixels=settings.max_image_pixels,
                         max_images_bytes=settings.max_images_bytes)
    # One large body read at a time: each reader competes with the event loop for the GIL, and
    # each sets (then restores) the switch interval.
    large_bodies = trio.CapacityLimiter(1)


    # -- errors ---------------------------------------------------------------------------

    @app.errorhandler(ApiError)
    async def on_api_error(error: ApiError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    async def on_http_error(error: HTTPException) -> Response:
        return error_response(_http_error(error, settings))

    @app.errorhandler(Exception)
    async def on_unexpected_error(error: Exception) -> Response:
        log.exception("unexpected error on %s %s", log_safe(request.method),
                      log_safe(request.path))
        return error_response(errors.internal_error(type(error).__name__))

    # -- authentication -------------------------------------------------------------------

    @app.before_request
    async def require_api_key() -> None:
        protected = request.path == "/v1" or request.path.startswith("/v1/") or (
            request.path == "/metrics" and not settings.metrics_public) or (
            request.path == "/healthz" and "verbose" in request.args)
        if not protected:
            return
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if not header:
            raise errors.missing_api_key()
        # Constant-time, so response timing says nothing about how much of a guess was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            key.strip().encode(), settings.api_key.encode()
        ):
            raise errors.invalid_api_key()

    @app.after_request
    async def show_plan_limits(response: Response) -> Response:
        # The plan's limits as the children last reported them (none until one has): a
        # client sees how much is left on every answer, before it runs out.
        response.headers.update(manager.plan_limits.headers(time.time()))
        return response

    # -- endpoints ------------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Whether the proxy can answer (`ok`: Codex found). Where Codex is, and what is wrong
        with it, name paths (CODEX_BIN, PATH): only `?verbose`, with the API key, says them."""
        install = locator.install
        found = bool(install and install.found)
        codex: dict[str, Any] = {
            "found": found,
            "version": install.capabilities.version if install else None,
        }
        if "verbose" in request.args:  # the key was checked before the request got here
            codex["path"] = install.path if install else None
            codex["problem"] = install.problem if install else None
        return {
            "ok": found,
            "codex": codex,
            "engine": choose_engine(settings, install.capabilities)
            if install and found else settings.engine,
            "default_model": catalog.default_model,
            "runs": {"active": len(manager.active), "queued": manager.queued,
                     "max_concurrent": settings.max_concurrent},
            "spares": {"ready": manager.spares.ready if manager.spares else 0,
                       "size": settings.warm_children},
        }

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), status=200, content_type=metrics.content_type)

    @app.get("/v1/usage")
    async def usage() -> dict[str, Any]:
        """The ChatGPT plan's usage limits, as Codex last reported them; `?refresh` asks
        Codex to read them from the backend first (a ChatGPT login only)."""
        problem = await manager.read_plan_limits() if "refresh" in request.args else None
        body = manager.plan_limits.as_json(time.time())
        if problem is not None:
            body["refresh_error"] = problem
        return body

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [
            model_object(model_id, entry, effort, created)
            for model_id, entry, effort in catalog.listed()
        ]}

    @app.get("/v1/models/<path:model_id>")
    async def get_model(model_id: str) -> dict[str, Any]:
        for listed_id, entry, effort in catalog.listed():
            if listed_id == model_id:
                return model_object(model_id, entry, effort, created)
        raise errors.model_not_found(model_id)

    async def read_body(reader: Callable[..., tuple[Any, dict[str, Any]]]
                        ) -> tuple[Any, dict[str, Any]]:
        """The request the body holds, read by `reader` (off the event loop when large)."""
        chunks = await _receive_body()
        read = partial(reader, chunks, default_model=catalog.default_model, limits=limits)
        if sum(map(len, chunks)) > OFFLOAD_BODY_BYTES:
            async with large_bodies:
                with _reading_apart():
                    return await trio.to_thread.run_sync(partial(_read_apart, read))
        return read()

    async def answer(turn: ChatRequest, body: dict[str, Any], stream: WireStream,
                     builder: WireBuilder) -> Any:
        """Run the turn, and answer in the request's wire format (`stream` or `builder`)."""
        turn = _apply_catalog(turn, body, catalog)
        run = await manager.start(request_nursery(request.scope), turn)
        attach_run(request.scope, run)
        if turn.stream:
            response = Response(_stream_body(run, stream, settings.keepalive_s),
                                status=200, content_type="text/event-stream")
            response.headers["Cache-Control"] = "no-cache"
            response.headers["X-Accel-Buffering"] = "no"
            # Quart cuts any response after RESPONSE_TIMEOUT (60 s); the run has its own
            # deadline, which ends the stream with a proper `timeout` error instead.
            response.timeout = None
            return response
        async for output in run.outputs:
            builder.add(output)
        match run.ending:
            case Failed(error):
                raise error
            case Finished() as finished:
                return builder.body(finished)
        raise errors.internal_error("the run ended without an answer")

    @app.post("/v1/chat/completions")
    async def chat_completions() -> Any:
        chat, body = await read_body(read_chat_request)
        completion_id, created_at = new_completion_id(), int(time.time())
        return await answer(
            chat, body, ChunkStream(completion_id, created_at, chat.model, chat.include_usage),
            CompletionBuilder(completion_id, created_at, chat.model))

    @app.post("/v1/responses")
    async def responses() -> Any:
        parsed, body = await read_body(read_responses_request)
        if parsed.dropped_tools:
            log.info("POST /v1/responses: tools Codex cannot offer the model were left out: "
                     "%s", log_safe(", ".join(parsed.dropped_tools)))
        response = ResponseObject(new_response_id(), int(time.time()), parsed.request.model,
                                  parsed.echo)
        return await answer(parsed.request, body, ResponseStream(response),
                            ResponseBuilder(response))

    return app


class WireStream(Protocol):
    """A streamed answer in one API's wire format."""

    def start(self) -> bytes: ...
    def keepalive(self) -> bytes: ...
    def render(self, output: Output) -> bytes: ...
    def end(self, ending: Finished | Failed) -> bytes: ...


class WireBuilder(Protocol):
    """An answer that does not stream, in one API's wire format."""

    def add(self, output: Output) -> None: ...
    def body(self, finished: Finished) -> dict[str, Any]: ...


async def _receive_body() -> list[bytes]:
    """The request body, in the pieces it arrived in. Joining them is left to the reader (in
    a worker thread for a large body): one copy of 16 MB holds the GIL for 10-70 ms, which the
    event loop need not spend."""
    chunks = []
    timeout = request.body_timeout if request.body_timeout is not None else math.inf
    with trio.move_on_after(timeout) as waiting:
        # quart raises RequestEntityTooLarge (413) here once MAX_CONTENT_LENGTH is passed.
        async for chunk in request.body:
            chunks.append(chunk)
    if waiting.cancelled_caught:
        raise errors.request_timeout()
    return chunks


@contextlib.contextmanager
def _reading_apart() -> Iterator[None]:
    """While a worker thread reads a large body, it and the event loop share the GIL:

    * the loop gets the GIL back only when the worker's switch interval (5 ms by default) runs
      out, and every wake-up of the loop waits that long: a shorter interval keeps the loop
      prompt (it costs nothing when no other thread wants the GIL);
    * a full garbage collection, run by whichever thread allocates at the wrong moment, walks
      every object the worker has made so far (~50 ms, measured): the collector waits until
      the read is over. The read makes no reference cycles, and a refused body is freed by
      its reference counts before the collector is back."""
    previous = sys.getswitchinterval()
    collecting = gc.isenabled()
    sys.setswitchinterval(min(previous, LARGE_BODY_SWITCH_INTERVAL_S))
    gc.disable()
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
        if collecting:
            gc.enable()


def _read_apart(read: Any) -> tuple[Any, dict[str, Any]]:
    """`read` with the interruptible scanner, in a worker thread. A refusal leaves the thread
    without the frames that hold what was decoded: freeing it is one long call (~30 ms for
    450,000 messages), which must happen here, not on the event loop that re-raises the error.
    """
    try:
        result: tuple[Any, dict[str, Any]] = read(interruptible=True)
        return result
    except ApiError as error:
        error.__traceback__ = error.__context__ = error.__cause__ = None
        raise error from None


def _apply_catalog(chat: ChatRequest, body: dict[str, Any], catalog: ModelCatalog) -> ChatRequest:
    """The Codex model and effort the request means, checked against Codex's catalog."""
    choice = catalog.resolve(chat.model)
    effort = chat.reasoning_effort or choice.effort_from_id
    if chat.reasoning_effort is not None:
        param = "reasoning_effort" if "reasoning_effort" in body else "reasoning.effort"
    else:
        param = "model"
    catalog.check_effort(choice.codex_model, effort, param)
    return replace(chat, codex_model=choice.codex_model, reasoning_effort=effort)


async def _next_output(run: Run, keepalive_s: float) -> Output | bool | None:
    """The run's next output; False after `keepalive_s` of silence; None once the outputs
    have ended (`run.ending` then says how)."""
    # A cancel scope may not be open across a `yield`, so the wait lives in this coroutine
    # and the generator below only ever yields between waits.
    with trio.move_on_after(keepalive_s):
        try:
            return await run.outputs.receive()
        except trio.EndOfChannel:
            return None
    return False


async def _stream_body(run: Run, stream: WireStream, keepalive_s: float
                       ) -> AsyncIterator[bytes]:
    yield stream.start()
    while (output := await _next_output(run, keepalive_s)) is not None:
        yield stream.keepalive() if output is False else stream.render(output)
    # The answer is complete: end the response now. The child, if it is still exiting, is
    # stopped by the request's nursery, not waited for here.
    yield stream.end(run.ending if run.ending is not None else Failed(
        errors.internal_error("the run ended without an answer")))
