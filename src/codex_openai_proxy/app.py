"""The HTTP API (quart-trio): OpenAI's Chat Completions and Models endpoints over Codex runs.

Everything that can go wrong is answered in OpenAI's error shape, with a status clients know
how to treat: 4xx for the request, 429 for a full queue, 502/503/504 for Codex (those with
`x-should-retry: false`, since the OpenAI SDKs would otherwise start a fresh Codex run twice).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from . import errors
from .answer import Failed, Finished, Output
from .catalog import ModelCatalog, model_object
from .chat_request import ChatRequest, parse_chat_request
from .engines import choose_engine
from .errors import ApiError
from .lifetime import RequestLifetimeMiddleware, attach_run, request_nursery
from .metrics import ProxyMetrics
from .openai_format import (
    KEEPALIVE,
    ChunkStream,
    CompletionBuilder,
    error_event,
    new_completion_id,
)
from .runs import CodexLocator, Run, RunManager
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
                           queue_length=lambda: manager.queued)
    app.asgi_app = RequestLifetimeMiddleware(  # type: ignore[method-assign]
        app.asgi_app, metrics, settings.write_timeout_s)
    created = int(time.time())


    # -- errors ---------------------------------------------------------------------------

    @app.errorhandler(ApiError)
    async def on_api_error(error: ApiError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    async def on_http_error(error: HTTPException) -> Response:
        return error_response(_http_error(error, settings))

    @app.errorhandler(Exception)
    async def on_unexpected_error(error: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
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
            "runs": {"active": len(manager.active), "queued": manager.queued,
                     "max_concurrent": settings.max_concurrent},
        }

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), status=200, content_type=metrics.content_type)

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

    @app.post("/v1/chat/completions")
    async def chat_completions() -> Any:
        raw = await request.get_data(cache=False)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise errors.invalid(f"The request body is not valid JSON: {error}", None,
                                 "invalid_json") from None
        chat = parse_chat_request(body, default_model=settings.codex_model,
                                  max_image_bytes=settings.max_image_bytes)
        chat = _apply_catalog(chat, body, catalog)
        run = await manager.start(request_nursery(request.scope), chat)
        attach_run(request.scope, run)
        completion_id, created_at = new_completion_id(), int(time.time())
        if chat.stream:
            chunks = ChunkStream(completion_id, created_at, chat.model, chat.include_usage)
            response = Response(_stream_body(run, chunks, settings.keepalive_s),
                                status=200, content_type="text/event-stream")
            response.headers["Cache-Control"] = "no-cache"
            response.headers["X-Accel-Buffering"] = "no"
            # Quart cuts any response after RESPONSE_TIMEOUT (60 s); the run has its own
            # deadline, which ends the stream with a proper `timeout` error instead.
            response.timeout = None
            return response
        builder = CompletionBuilder(completion_id, created_at, chat.model)
        async for output in run.outputs:
            builder.add(output)
        match run.ending:
            case Failed(error):
                raise error
            case Finished() as finished:
                return builder.body(finished)
        raise errors.internal_error("the run ended without an answer")

    return app


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


async def _next_output(run: Run, keepalive_s: float) -> Output | bytes | None:
    """The run's next output; KEEPALIVE after `keepalive_s` of silence; None once the outputs
    have ended (`run.ending` then says how)."""
    # A cancel scope may not be open across a `yield`, so the wait lives in this coroutine
    # and the generator below only ever yields between waits.
    with trio.move_on_after(keepalive_s):
        try:
            return await run.outputs.receive()
        except trio.EndOfChannel:
            return None
    return KEEPALIVE


async def _stream_body(run: Run, chunks: ChunkStream, keepalive_s: float) -> AsyncIterator[bytes]:
    yield chunks.start()
    while (output := await _next_output(run, keepalive_s)) is not None:
        yield output if isinstance(output, bytes) else chunks.render(output)
    # The answer is complete: end the response now. The child, if it is still exiting, is
    # stopped by the request's nursery, not waited for here.
    yield chunks.render(run.ending) if run.ending is not None else error_event(
        errors.internal_error("the run ended without an answer"))
