"""What an operator sees: one log line per request saying how its Codex child ended, and
Prometheus metrics at /metrics."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from functools import partial

import httpx
import pytest
import trio

from conftest import AUTH, chat_body, is_ready, listening_url, open_stream

REQUEST_LINE = r"^POST /v1/chat/completions "


async def test_one_line_per_request_with_model_engine_pid_outcome_and_usage(proxy, logs,
                                                                           fake_codex):
    async with open_stream(proxy.client, chat_body(stream_options={"include_usage": True})) as s:
        await s.read_to_end()
    line = await logs.wait_for_line(REQUEST_LINE)
    [run] = fake_codex.runs()
    assert re.match(
        r"POST /v1/chat/completions 200 \d+\.\d{3}s model=gpt-5 stream=true engine=exec "
        rf"pid={run['pid']} child=ok exit=-?\d+ usage=120/30/cached=20/reasoning=10$", line)
    assert len([r for r in logs.records if re.search(REQUEST_LINE, r.getMessage())]) == 1


@pytest.mark.parametrize(("scenario", "settings", "status", "ended"), [
    ("turn_failed", {}, "502", "failed"),
    ("hang", {"request_timeout_s": 0.5}, "504", "killed_on_timeout"),
])
async def test_the_line_says_how_the_child_ended(start_proxy, logs, scenario, settings, status,
                                                 ended):
    proxy = await start_proxy(scenario, **settings)
    await proxy.client.post("/v1/chat/completions", json=chat_body())
    line = await logs.wait_for_line(REQUEST_LINE)
    assert f" {status} " in line and f"child={ended} " in line


async def test_a_disconnect_is_logged_as_such(start_proxy, logs):
    proxy = await start_proxy("hang")
    async with open_stream(proxy.client) as s:
        await s.wait_for(is_ready)
    line = await logs.wait_for_line(REQUEST_LINE)
    assert "child=killed_on_disconnect" in line


async def test_a_shutdown_is_logged_as_such(start_proxy, logs):
    proxy = await start_proxy("hang")
    async with open_stream(proxy.client) as s:
        await s.wait_for(is_ready)
        proxy.server.shut_down()
        await s.read_to_end()
    line = await logs.wait_for_line(REQUEST_LINE)
    assert "child=killed_on_shutdown" in line


async def test_prompts_and_answers_are_not_logged_by_default(proxy, logs):
    await proxy.client.post("/v1/chat/completions", json=chat_body("my secret plan"))
    await logs.wait_for_line(REQUEST_LINE)
    assert "secret plan" not in logs.text()
    assert "Hello from fake Codex" not in logs.text()


async def test_prompts_are_logged_at_debug_when_asked(start_proxy, logs):
    proxy = await start_proxy(log_bodies=True)
    await proxy.client.post("/v1/chat/completions", json=chat_body("my secret plan"))
    await logs.wait_for_line(REQUEST_LINE)
    [record] = [r for r in logs.records if "secret plan" in r.getMessage()]
    assert record.levelno == logging.DEBUG


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format."""
    label_text = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = rf"^{re.escape(name)}{{{re.escape(label_text)}}} (\S+)$" if labels else \
        rf"^{re.escape(name)} (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"no sample {name}{{{label_text}}} in:\n{text}"
    return float(match.group(1))


async def test_metrics_need_the_key_unless_public(start_proxy):
    proxy = await start_proxy()
    assert (await proxy.client.get("/metrics", headers={"Authorization": ""})).status_code == 401
    assert (await proxy.client.get("/metrics")).status_code == 200
    public = await start_proxy(metrics_public=True)
    response = await public.client.get("/metrics", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")


async def test_metrics_after_real_requests(start_proxy, logs):
    proxy = await start_proxy("normal", max_concurrent=1, queue_timeout_s=20)
    await proxy.client.post("/v1/chat/completions", json=chat_body())
    await proxy.client.post("/v1/chat/completions", json={"messages": "nope"})
    await proxy.client.get("/v1/models")
    await logs.wait_for_line(r"^GET /v1/models 200")

    async with trio.open_nursery() as nursery, \
            open_stream(proxy.client, chat_body("fake-scenario:hang")) as hanging:
        await hanging.wait_for(is_ready)
        nursery.start_soon(partial(proxy.client.post, "/v1/chat/completions",
                                   json=chat_body()))
        await proxy.manager.wait_queued(1)
        busy = (await proxy.client.get("/metrics")).text
        assert metric(busy, "codex_proxy_children_running") == 1
        assert metric(busy, "codex_proxy_queue_length") == 1
        nursery.cancel_scope.cancel()

    await proxy.manager.wait_idle()
    text = (await proxy.client.get("/metrics")).text
    route = "/v1/chat/completions"
    assert metric(text, "codex_proxy_requests_total", route=route, status="200") >= 1
    assert metric(text, "codex_proxy_requests_total", route=route, status="400") == 1
    assert metric(text, "codex_proxy_requests_total", route="/v1/models", status="200") == 1
    assert metric(text, "codex_proxy_children_ended_total", reason="ok") == 1
    assert metric(text, "codex_proxy_children_ended_total", reason="killed_on_timeout") == 0
    assert metric(text, "codex_proxy_request_duration_seconds_count", route=route) >= 2
    assert metric(text, "codex_proxy_time_to_first_byte_seconds_count", route=route) >= 2
    assert metric(text, "codex_proxy_children_running") == 0
    assert metric(text, "codex_proxy_queue_length") == 0


async def test_unknown_paths_share_one_route_label(proxy):
    for path in ("/a", "/b", "/c"):
        await proxy.client.get(path)
    text = (await proxy.client.get("/metrics")).text
    assert metric(text, "codex_proxy_requests_total", route="other", status="404") == 3


async def test_a_request_line_reaches_the_cli_log(fake_codex):
    # Through the real command line: the line is in the process's stderr.
    env = {**os.environ, **fake_codex.env, "PORT": "0", "CODEX_ENGINE": "exec"}
    server = await trio.lowlevel.open_process(
        [sys.executable, "-m", "codex_openai_proxy"], env=env, stderr=subprocess.PIPE)
    try:
        url = await listening_url(server)
        async with httpx.AsyncClient(base_url=url, headers=AUTH) as client:
            await client.get("/v1/models")
        server.terminate()
        rest = b""
        with trio.fail_after(10):
            while data := await server.stderr.receive_some():
                rest += data
        assert re.search(rb"INFO codex_openai_proxy.requests: GET /v1/models 200 ", rest)
    finally:
        with trio.CancelScope(shield=True):
            server.kill()
            await server.wait()
