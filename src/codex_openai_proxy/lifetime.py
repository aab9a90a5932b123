"""A nursery per HTTP request, cancelled when the request ends (ASGI middleware).

Work a request starts in the background (its Codex runner) goes into this nursery, so it can
never outlive the request. The request ends when the ASGI call returns: the response was sent,
the client disconnected (quart-trio then cancels the handler and the body), or the server
cancelled it while shutting down. In every case the `finally` below cancels the nursery and
`async with` waits for the runner to finish stopping its child.

Why not tie the runner to the response body generator's `finally`: quart-trio only closes the
generator if it got as far as sending the response, and a generator's `finally` runs whenever
the garbage collector gets to it otherwise. An ASGI call, by contrast, always returns.
"""

from __future__ import annotations

from typing import Any

import trio

NURSERY_SCOPE_KEY = "codex_openai_proxy.request_nursery"


class RequestNurseryMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async with trio.open_nursery() as nursery:
            try:
                await self.app({**scope, NURSERY_SCOPE_KEY: nursery}, receive, send)
            finally:
                nursery.cancel_scope.cancel()


def request_nursery(scope: dict[str, Any]) -> trio.Nursery:
    return scope[NURSERY_SCOPE_KEY]
