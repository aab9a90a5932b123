"""Input a client should not send, sent to a real server (issue 17): each gets a 4xx in OpenAI's
shape, naming the field, decided before any Codex child starts; the install state is untouched
and the server keeps serving. A full disk is a 503 that says so."""

from __future__ import annotations

import httpx
import pytest

from conftest import chat_body


@pytest.fixture(params=["exec", "app-server"])
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


def assert_refused(response: httpx.Response, code: str, param: str | None,
                   status: int = 400) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["code"], error["param"]) == (code, param), error
    return error


async def assert_still_serving(proxy) -> None:
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200, response.text
    assert (await proxy.client.get("/healthz")).json()["codex"]["found"] is True


async def post_raw(proxy, body: str | bytes) -> httpx.Response:
    """POST a body as written: a JSON text an encoder would not produce (lone surrogates,
    nesting beyond what Python's json can write)."""
    return await proxy.client.post("/v1/chat/completions", content=body,
                                   headers={"content-type": "application/json"})


# -- 11: log injection ---------------------------------------------------------------------------


async def test_client_text_in_the_request_line_is_escaped(proxy, logs):
    # The path arrives percent-decoded: %0A is a newline, %1B an ANSI escape, %00 a NUL.
    response = await proxy.client.get("/v1/x%0AINFO%20forged%1B%5B2J%00")
    assert response.status_code == 404
    line = await logs.wait_for_line(r"^GET /v1/x")
    assert line.startswith("GET /v1/x\\nINFO forged\\x1b[2J\\x00 404 ")
    assert "\n" not in line and "\x1b" not in line and "\x00" not in line
