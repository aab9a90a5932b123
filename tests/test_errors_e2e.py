"""Every way a request can go wrong ends in an OpenAI-style error with the right status, and the
server keeps serving."""

from __future__ import annotations

import pytest

from conftest import chat_body, open_stream


@pytest.fixture(params=["exec", "app-server"])
def engine(request: pytest.FixtureRequest) -> str:
    """Every test here holds on both engines (the fake Codex plays both)."""
    return request.param

def assert_error(response, status, code=None, param=None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    assert error["param"] == param
    return error


async def assert_still_serving(proxy):
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200


BAD_BODIES = [
    ([], None),
    ("hello", None),
    ({}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": ["hi"]}, "messages[0]"),
    ({"messages": [{"content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]},
     "messages[0].content[0].text"),
    ({"messages": [{"role": "user", "content": "hi"}], "model": 3}, "model"),
    ({"messages": [{"role": "user", "content": "hi"}], "model": ""}, "model"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream_options": []}, "stream_options"),
    ({"messages": [{"role": "user", "content": "hi"}],
      "stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
    ({"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "extreme"},
     "reasoning_effort"),
    ({"messages": [{"role": "user", "content": "hi"}], "reasoning": {"effort": 2}},
     "reasoning.effort"),
    ({"messages": [{"role": "user", "content": "hi"}], "reasoning": "high"}, "reasoning"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]},
     "messages[0].content[0].image_url.url"),
]


@pytest.mark.parametrize(("body", "param"), BAD_BODIES)
async def test_bad_request_bodies_get_400_naming_the_param(proxy, fake_codex, body, param):
    response = await proxy.client.post("/v1/chat/completions", json=body)
    assert_error(response, 400, param=param)
    assert fake_codex.runs() == [], "a rejected request must not start Codex"


async def test_body_that_is_not_json(proxy):
    response = await proxy.client.post(
        "/v1/chat/completions", content=b"{not json",
        headers={"content-type": "application/json"})
    assert_error(response, 400, code="invalid_json")
    await assert_still_serving(proxy)


async def test_body_over_the_limit_gets_413(start_proxy):
    proxy = await start_proxy(max_body_mb=0.5)
    response = await proxy.client.post("/v1/chat/completions",
                                       json=chat_body("x" * (600 * 1024)))
    assert_error(response, 413, code="request_too_large")
    await assert_still_serving(proxy)


@pytest.mark.parametrize(("headers", "code"), [
    ({"Authorization": ""}, "missing_api_key"),
    ({"Authorization": "Bearer wrong"}, "invalid_api_key"),
    ({"Authorization": "Basic dGVzdC1rZXk="}, "invalid_api_key"),
])
async def test_api_key_is_required_on_v1(proxy, headers, code):
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions")):
        response = await proxy.client.request(method, path, headers=headers, json=chat_body())
        assert_error(response, 401, code=code)


async def test_unknown_route_and_wrong_method(proxy):
    assert_error(await proxy.client.get("/v1/nothing-here"), 404, code="unknown_url")
    assert_error(await proxy.client.get("/nothing-here"), 404, code="unknown_url")
    assert_error(await proxy.client.get("/v1/chat/completions"), 405)


CODEX_FAILURES = [
    ("auth_failure", "codex_not_logged_in", "codex login"),
    ("turn_failed", "codex_error", "high demand"),
    ("crash", "codex_error", "status 101"),  # the panic itself is the log's
    ("malformed", "codex_error", "not JSON"),
    ("exit_early", "codex_error", "without finishing"),
]


@pytest.mark.parametrize(("scenario", "code", "says"), CODEX_FAILURES)
async def test_codex_failure_non_stream_is_502(start_proxy, scenario, code, says):
    proxy = await start_proxy(scenario)
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    error = assert_error(response, 502, code=code)
    assert says in error["message"]
    # Retrying would only start another Codex run that fails the same way.
    assert response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize(("scenario", "code", "says"), CODEX_FAILURES)
async def test_codex_failure_in_a_stream_is_an_error_chunk_then_done(start_proxy, scenario,
                                                                     code, says):
    proxy = await start_proxy(scenario)
    async with open_stream(proxy.client) as s:
        assert s.response.status_code == 200
        events = await s.read_to_end()
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-1] == "[DONE]"
    error = events[-2]["error"]
    assert error["code"] == code and says in error["message"]


async def test_codex_missing_is_503_with_install_hint(start_proxy, fake_codex):
    proxy = await start_proxy(codex_bin="/nonexistent/codex")
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    error = assert_error(response, 503, code="codex_not_found")
    assert "npm i -g @openai/codex" in error["message"]
    health = (await proxy.client.get("/healthz")).json()
    assert health["ok"] is False and health["codex"]["found"] is False
    # Where it looked is for the operator, with the key.
    verbose = (await proxy.client.get("/healthz?verbose")).json()
    assert "/nonexistent/codex" in verbose["codex"]["problem"]


async def test_codex_installed_after_start_is_found_without_restart(start_proxy, fake_codex):
    late = fake_codex.bin.parent / "codex-late"
    proxy = await start_proxy(codex_bin=str(late))
    assert (await proxy.client.post("/v1/chat/completions", json=chat_body())).status_code == 503
    late.write_text(fake_codex.bin.read_text())
    late.chmod(0o755)
    assert (await proxy.client.post("/v1/chat/completions", json=chat_body())).status_code == 200


async def test_a_big_unread_body_does_not_stall_the_connection(proxy):
    # Refused before its body is read; the next request on the same client must still work.
    response = await proxy.client.post("/v1/chat/completions", json=chat_body("x" * 2_000_000),
                                       headers={"Authorization": "Bearer wrong"})
    assert_error(response, 401, code="invalid_api_key")
    await assert_still_serving(proxy)

