"""The proxy with the real, pinned Codex CLI (0.169.0 from npm), against the local mock of the
Responses API: what users run, minus the internet."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest

from conftest import (
    chat_body,
    children_of,
    choices,
    delta,
    open_stream,
    process_state,
    wait_dead,
)

pytestmark = pytest.mark.real_codex


@pytest.fixture(params=["exec", "app-server"])
def engine(request):
    return request.param

# A valid 1x1 PNG (Codex drops images it cannot decode).
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


async def test_stream_with_usage(start_real_proxy, mock_upstream, engine):
    proxy = await start_real_proxy(engine=engine)
    async with open_stream(proxy.client, chat_body(stream_options={"include_usage": True})) as s:
        events = await s.read_to_end()
    assert delta(events[0]) == {"role": "assistant", "content": ""}
    assert s.content == "Hello from the mock."
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["usage"] == {
        "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 1},
        "cache_read_input_tokens": 2,  # what Roo Code reads
    }
    assert events[-1] == "[DONE]"
    # Codex's "Model metadata for `gpt-5` not found" warning is operational: never sent.
    assert "metadata" not in json.dumps(events)


async def test_non_stream_with_reasoning(start_real_proxy, mock_upstream, engine):
    mock_upstream.scenario = "reasoning"
    proxy = await start_real_proxy(engine=engine)
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200, response.text
    message = response.json()["choices"][0]["message"]
    assert message["content"] == "Hello from the mock."
    assert message["reasoning_content"] == "Thinking it over."
    assert response.json()["usage"]["total_tokens"] == 15


async def test_model_effort_and_prompt_reach_the_upstream(start_real_proxy, mock_upstream, engine):
    proxy = await start_real_proxy(engine=engine)
    body = {"model": "gpt-5.5", "reasoning_effort": "low", "messages": [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "--help me count to 3"},
    ]}
    response = await proxy.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    [upstream] = mock_upstream.requests
    assert upstream.body["model"] == "gpt-5.5"
    assert upstream.body["reasoning"]["effort"] == "low"
    assert "--help me count to 3" in upstream.input_text()
    assert "Answer in French." in upstream.input_text()


@pytest.mark.parametrize("scenario", ["failure", "http500"])
async def test_upstream_failure_is_a_clean_error(start_real_proxy, mock_upstream, engine, scenario):
    mock_upstream.scenario = scenario
    proxy = await start_real_proxy(engine=engine)
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "codex_error"
    # Codex's own words reach the client: the upstream's message, or for a 500 Codex's
    # summary of it.
    expected = "upstream exploded" if scenario == "failure" else "high demand"
    assert expected in error["message"]
    async with open_stream(proxy.client) as s:
        events = await s.read_to_end()
    assert events[-1] == "[DONE]" and expected in events[-2]["error"]["message"]


def group_of(leader: int) -> list[int]:
    """Every live process in `leader`'s process group (the child's session), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[3]) == leader:
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("via", ["native", "node wrapper"])
async def test_disconnect_while_upstream_hangs_kills_every_codex_process(
        start_real_proxy, mock_upstream, engine, real_codex_bin, tmp_path, via):
    mock_upstream.scenario = "hang"
    codex_bin = real_codex_bin
    if via == "node wrapper":
        # A launcher the proxy cannot see through: Codex runs as Node's child, as npm's
        # wrapper runs it where the proxy finds no native binary.
        codex_bin = str(tmp_path / "codex-launcher")
        script = Path(real_codex_bin).resolve()
        Path(codex_bin).write_text(f'#!/bin/sh\nexec node "{script}" "$@"\n')
        Path(codex_bin).chmod(0o755)
    proxy = await start_real_proxy(engine=engine, codex_bin=codex_bin)
    async with open_stream(proxy.client) as s:
        await s.next_event()  # the role chunk: the run has started
        await mock_upstream.wait_for_request()  # Codex is now waiting on the upstream
        [run] = proxy.manager.active
        leader = run.pid
        exe = os.readlink(f"/proc/{leader}/exe")
        group = group_of(leader)
        if via == "native":
            # The proxy starts the native binary itself: no Node process per run.
            assert exe.endswith("/bin/codex") and "codex-linux" in exe
        else:
            assert os.path.basename(exe).startswith("node")
            assert children_of(leader), "Node runs the native binary as its child"
        # Only the leader is sure to be alive here: Codex runs short-lived commands of its
        # own (in the group too), which may end between the listing and the look.
        assert leader in group and process_state(leader)
    for pid in group:
        await wait_dead(pid)
    await proxy.manager.wait_idle()
    assert process_state(leader) is None


async def test_an_inline_image_reaches_the_upstream(start_real_proxy, mock_upstream, engine):
    proxy = await start_real_proxy(engine=engine)
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]}]}
    response = await proxy.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    [upstream] = mock_upstream.requests
    images = [part["image_url"] for item in upstream.body["input"] if isinstance(item, dict)
              for part in item.get("content") or [] if isinstance(part, dict)
              and part.get("type") == "input_image"]
    assert len(images) == 1
    assert base64.b64decode(images[0].split(",", 1)[1]) == PNG


def has_content(event) -> bool:
    return bool(choices(event)) and bool(delta(event).get("content"))


async def test_app_server_relays_tokens_as_the_model_writes_them(start_real_proxy, mock_upstream):
    mock_upstream.delta_delay_s = 0.2
    proxy = await start_real_proxy(engine="app-server")
    async with open_stream(proxy.client) as s:
        first = await s.wait_for(has_content)
        first_received = time.monotonic()
        await s.read_to_end()
    assert delta(first)["content"] == "Hello"
    assert s.content == "Hello from the mock."
    [upstream] = mock_upstream.requests
    # The first words were on the client's screen before the model had written its last.
    assert first_received < upstream.delta_times[-1]


async def test_exec_sends_a_message_only_once_it_is_complete(start_real_proxy, mock_upstream):
    mock_upstream.delta_delay_s = 0.2
    proxy = await start_real_proxy(engine="exec")
    async with open_stream(proxy.client) as s:
        first = await s.wait_for(has_content)
        first_received = time.monotonic()
        await s.read_to_end()
    assert delta(first)["content"] == "Hello from the mock."
    [upstream] = mock_upstream.requests
    assert first_received > upstream.delta_times[-1]


async def test_the_deadline_stops_a_run_waiting_on_a_hanging_upstream(start_real_proxy,
                                                                     mock_upstream, engine):
    mock_upstream.scenario = "hang"
    proxy = await start_real_proxy(engine=engine, request_timeout_s=2)
    async with open_stream(proxy.client) as s:
        events = await s.read_to_end()
    assert events[-2]["error"]["code"] == "timeout" and events[-1] == "[DONE]"
    response = await proxy.client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 504
    await proxy.manager.wait_idle()


async def test_models_come_from_the_real_codex_catalog(start_real_proxy, mock_upstream):
    proxy = await start_real_proxy()
    data = (await proxy.client.get("/v1/models")).json()["data"]
    ids = [model["id"] for model in data]
    assert ids[0] == "gpt-6.1-sol"  # Codex's own default, its catalog's first
    assert ids[1:] == ["gpt-6-astra", "gpt-6.1-terra", "gpt-6-sol", "gpt-6-luna",
                       "gpt-5.6-sol", "gpt-5.6-terra", "gpt-5.6-luna", "gpt-5.5"]
    response = await proxy.client.post(
        "/v1/chat/completions", json=chat_body(model="gpt-5.5", reasoning_effort="max"))
    assert response.status_code == 400
    response = await proxy.client.post(
        "/v1/chat/completions", json=chat_body(model="gpt-6-astra", reasoning_effort="max"))
    assert response.status_code == 200, response.text
    assert mock_upstream.requests[0].body["reasoning"]["effort"] == "max"
    # `ultra` is accepted too; Codex itself sends it upstream as xhigh plus its multi-agent
    # mode, which is Codex's business, not the proxy's.
    response = await proxy.client.post(
        "/v1/chat/completions", json=chat_body(model="gpt-6-astra", reasoning_effort="ultra"))
    assert response.status_code == 200, response.text
